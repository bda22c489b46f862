# A continuous-batching sample in the shape of OpenVINO GenAI's, written from its documented API with only the import
# changed: requests added, stepped together, read as they go; a test runs it on the tiny model.
import argparse

import tandem as openvino_genai


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model_dir")
    parser.add_argument("prompts", nargs="+")
    args = parser.parse_args()
    scheduler_config = openvino_genai.SchedulerConfig()
    scheduler_config.max_num_seqs = 2
    scheduler_config.max_num_batched_tokens = 32
    scheduler_config.cache_size = 1
    pipe = openvino_genai.ContinuousBatchingPipeline(args.model_dir, scheduler_config, "CPU")
    config = openvino_genai.GenerationConfig()
    config.max_new_tokens = 10
    handles = [pipe.add_request(i, prompt, config) for i, prompt in enumerate(args.prompts)]
    tokens = {i: [] for i in range(len(handles))}
    while pipe.has_non_finished_requests():
        pipe.step()
        for i, handle in enumerate(handles):
            if handle.can_read():
                for output in handle.read().values():
                    tokens[i] += output.generated_ids
    tokenizer = pipe.get_tokenizer()
    for i, handle in enumerate(handles):
        print(f"{i}: {handle.get_status().name}: {tokenizer.decode(tokens[i])!r}")


if "__main__" == __name__:
    main()
