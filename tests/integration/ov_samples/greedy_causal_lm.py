# OpenVINO GenAI's greedy_causal_lm sample, written from its documented API with only the import changed:
# a test runs it on the tiny model (test_python_samples.py).
import argparse

import tandem as openvino_genai


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("prompt")
    args = parser.parse_args()
    device = "CPU"  # GPU can be used as well
    pipe = openvino_genai.LLMPipeline(args.model_dir, device)
    config = openvino_genai.GenerationConfig()
    config.max_new_tokens = 100
    print(pipe.generate(args.prompt, config))


if "__main__" == __name__:
    main()
