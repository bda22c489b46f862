# OpenVINO GenAI's speculative_decoding_lm sample, written from its documented API with only the import changed,
# plus the speculative figures of extended_perf_metrics; a test runs it on the tiny model (test_python_samples.py).
import argparse

import tandem as openvino_genai


def streamer(subword):
    print(subword, end="", flush=True)
    return openvino_genai.StreamingStatus.RUNNING


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("draft_model_dir")
    parser.add_argument("prompt")
    args = parser.parse_args()
    main_device = draft_device = "CPU"
    draft_model = openvino_genai.draft_model(args.draft_model_dir, draft_device)
    pipe = openvino_genai.LLMPipeline(args.model_dir, main_device, draft_model=draft_model)
    config = openvino_genai.GenerationConfig()
    config.max_new_tokens = 100
    config.num_assistant_tokens = 5  # or config.assistant_confidence_threshold = 0.4
    result = pipe.generate(args.prompt, config, streamer)
    sd = result.extended_perf_metrics
    print(f"\naccepted draft tokens: {sd.get_num_accepted_tokens()}")
    print(f"main model iterations: {sd.main_model_metrics.num_iterations}")
    print(f"draft model tokens: {sd.draft_model_metrics.get_num_generated_tokens()}")


if "__main__" == __name__:
    main()
