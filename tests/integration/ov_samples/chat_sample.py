# OpenVINO GenAI's chat_sample, written from its documented API with only the import changed: questions from stdin,
# answers streamed; a test runs it on the tiny model (test_python_samples.py).
import argparse

import tandem as openvino_genai


def streamer(subword):
    print(subword, end="", flush=True)
    return openvino_genai.StreamingStatus.RUNNING


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    args = parser.parse_args()
    pipe = openvino_genai.LLMPipeline(args.model_dir, "CPU")
    config = openvino_genai.GenerationConfig()
    config.max_new_tokens = 12
    pipe.start_chat()
    while True:
        try:
            prompt = input("question:\n")
        except EOFError:
            break
        pipe.generate(prompt, config, streamer)
        print("\n----------")
    pipe.finish_chat()


if "__main__" == __name__:
    main()
