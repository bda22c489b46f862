# OpenVINO GenAI's prompt_lookup_decoding_lm sample, written from its documented API with only the import changed:
# a test runs it on the tiny model (test_python_samples.py).
import argparse

import tandem as openvino_genai


def streamer(subword):
    print(subword, end="", flush=True)
    return openvino_genai.StreamingStatus.RUNNING


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("prompt")
    args = parser.parse_args()
    pipe = openvino_genai.LLMPipeline(args.model_dir, "CPU", prompt_lookup=True)
    config = openvino_genai.GenerationConfig()
    config.max_new_tokens = 100
    config.num_assistant_tokens = 5  # candidates proposed per step
    config.max_ngram_size = 3        # the n-gram looked up in the prompt
    pipe.generate(args.prompt, config, streamer)
    print()


if "__main__" == __name__:
    main()
