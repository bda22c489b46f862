# A structured-output sample in the shape of OpenVINO GenAI's, written from its documented API with only the import
# changed: the answer follows a JSON schema; a test runs it on the tiny model (test_python_samples.py).
import argparse
import json

import tandem as openvino_genai

SCHEMA = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 6},
                                           "age": {"type": "integer", "minimum": 0, "maximum": 99}},
          "required": ["name", "age"], "additionalProperties": False}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    args = parser.parse_args()
    pipe = openvino_genai.LLMPipeline(args.model_dir, "CPU")
    config = openvino_genai.GenerationConfig()
    config.max_new_tokens = 200
    config.do_sample = True
    config.rng_seed = 3
    config.structured_output_config = openvino_genai.StructuredOutputConfig(json_schema=json.dumps(SCHEMA))
    print(pipe.generate("Give me a person as JSON.", config))


if "__main__" == __name__:
    main()
