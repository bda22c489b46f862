# OpenVINO GenAI's visual_language_chat sample, written from its documented API with only the import changed (and
# ov.Tensor(array) left as the numpy array, which VLMPipeline takes as it is): a test runs it (test_python_samples.py).
import argparse
from pathlib import Path

import numpy as np
from PIL import Image

import tandem as openvino_genai


def streamer(subword):
    print(subword, end="", flush=True)
    return openvino_genai.StreamingStatus.RUNNING


def read_image(path):
    pic = Image.open(path).convert("RGB")
    return np.array(pic)[None]  # 1 x H x W x 3 uint8


def read_images(path):
    entry = Path(path)
    if entry.is_dir():
        return [read_image(file) for file in sorted(entry.iterdir())]
    return [read_image(path)]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("image_dir")
    parser.add_argument("device", nargs="?", default="CPU")
    args = parser.parse_args()
    rgbs = read_images(args.image_dir)
    pipe = openvino_genai.VLMPipeline(args.model_dir, args.device)
    config = openvino_genai.GenerationConfig()
    config.max_new_tokens = 30
    pipe.start_chat()
    prompt = input("question:\n")
    pipe.generate(prompt, images=rgbs, generation_config=config, streamer=streamer)
    while True:
        try:
            prompt = input("\n----------\nquestion:\n")
        except EOFError:
            break
        pipe.generate(prompt, generation_config=config, streamer=streamer)
    pipe.finish_chat()


if "__main__" == __name__:
    main()
