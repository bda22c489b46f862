# OpenVINO GenAI's benchmark_genai sample, written from its documented API with only the import changed: warm-up,
# timed iterations summed with PerfMetrics' +; a test runs it on the tiny model (test_python_samples.py).
import argparse

import tandem as openvino_genai


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("-m", "--model", required=True)
    parser.add_argument("-p", "--prompt", default="The Sky is blue because")
    parser.add_argument("-nw", "--num_warmup", type=int, default=1)
    parser.add_argument("-n", "--num_iter", type=int, default=2)
    parser.add_argument("-mt", "--max_new_tokens", type=int, default=20)
    args = parser.parse_args()
    pipe = openvino_genai.LLMPipeline(args.model, "CPU")
    config = openvino_genai.GenerationConfig()
    config.max_new_tokens = args.max_new_tokens
    for _ in range(args.num_warmup):
        pipe.generate(args.prompt, config)
    res = pipe.generate(args.prompt, config)
    perf_metrics = res.perf_metrics
    for _ in range(args.num_iter - 1):
        res = pipe.generate(args.prompt, config)
        perf_metrics += res.perf_metrics
    print(f"Load time: {perf_metrics.get_load_time():.2f} ms")
    print(f"Generate time: {perf_metrics.get_generate_duration().mean:.2f} ± "
          f"{perf_metrics.get_generate_duration().std:.2f} ms")
    print(f"TTFT: {perf_metrics.get_ttft().mean:.2f} ± {perf_metrics.get_ttft().std:.2f} ms")
    print(f"TPOT: {perf_metrics.get_tpot().mean:.2f} ± {perf_metrics.get_tpot().std:.2f} ms/token")
    print(f"Throughput: {perf_metrics.get_throughput().mean:.2f} ± {perf_metrics.get_throughput().std:.2f} tokens/s")
    print(f"Generated tokens: {perf_metrics.get_num_generated_tokens()}")


if __name__ == "__main__":
    main()
