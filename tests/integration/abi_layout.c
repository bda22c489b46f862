/* abi_layout.c — prints the size and field offsets of the tandem.h structs that python/tandem/_lib.py mirrors with
 * ctypes, as one JSON object, so test_python_abi.py can catch a struct changed in C but not in Python. */
#include <stddef.h>
#include <stdio.h>

#include "tandem.h"

#define FIELD(T, f) printf("%s\"%s\": %zu", first ? "" : ", ", #f, offsetof(T, f)), first = 0
#define BEGIN(T)       \
    do {               \
        int first = 1; \
        printf("%s\"%s\": {\"size\": %zu, \"fields\": {", n_structs++ ? ", " : "", #T, sizeof(T));
#define END()     \
    printf("}}"); \
    }             \
    while (0)

int main(void) {
    int n_structs = 0;
    printf("{");
    BEGIN(tandem_sampler_params);
    FIELD(tandem_sampler_params, temperature);
    FIELD(tandem_sampler_params, top_k);
    FIELD(tandem_sampler_params, top_p);
    FIELD(tandem_sampler_params, min_p);
    FIELD(tandem_sampler_params, repeat_penalty);
    FIELD(tandem_sampler_params, repeat_last_n);
    FIELD(tandem_sampler_params, presence_penalty);
    FIELD(tandem_sampler_params, frequency_penalty);
    FIELD(tandem_sampler_params, seed);
    END();
    BEGIN(tandem_spec_params);
    FIELD(tandem_spec_params, draft_max);
    FIELD(tandem_spec_params, draft_min);
    FIELD(tandem_spec_params, draft_p_min);
    FIELD(tandem_spec_params, adaptive);
    FIELD(tandem_spec_params, lookup_ngram);
    END();
    BEGIN(tandem_spec_stats);
    FIELD(tandem_spec_stats, n_rounds);
    FIELD(tandem_spec_stats, draft_ms);
    FIELD(tandem_spec_stats, predicted_speedup);
    FIELD(tandem_spec_stats, n_rounds_draft_off);
    END();
    BEGIN(tandem_gen_params);
    FIELD(tandem_gen_params, max_tokens);
    FIELD(tandem_gen_params, sampling);
    FIELD(tandem_gen_params, stop);
    FIELD(tandem_gen_params, n_stop);
    FIELD(tandem_gen_params, ignore_eos);
    FIELD(tandem_gen_params, on_text);
    FIELD(tandem_gen_params, user);
    FIELD(tandem_gen_params, draft);
    FIELD(tandem_gen_params, spec);
    FIELD(tandem_gen_params, grammar);
    FIELD(tandem_gen_params, prediction);
    FIELD(tandem_gen_params, n_prediction);
    FIELD(tandem_gen_params, images);
    FIELD(tandem_gen_params, n_images);
    FIELD(tandem_gen_params, logprobs);
    FIELD(tandem_gen_params, top_logprobs);
    FIELD(tandem_gen_params, on_token);
    FIELD(tandem_gen_params, min_new_tokens);
    END();
    BEGIN(tandem_token_logprob);
    FIELD(tandem_token_logprob, id);
    FIELD(tandem_token_logprob, logprob);
    FIELD(tandem_token_logprob, n_top);
    FIELD(tandem_token_logprob, top_ids);
    FIELD(tandem_token_logprob, top_logprobs);
    END();
    BEGIN(tandem_model_info);
    FIELD(tandem_model_info, architecture);
    FIELD(tandem_model_info, name);
    FIELD(tandem_model_info, source);
    FIELD(tandem_model_info, n_layers);
    FIELD(tandem_model_info, dim);
    FIELD(tandem_model_info, n_heads);
    FIELD(tandem_model_info, n_kv_heads);
    FIELD(tandem_model_info, head_dim);
    FIELD(tandem_model_info, ffn_dim);
    FIELD(tandem_model_info, vocab_size);
    FIELD(tandem_model_info, context_length);
    FIELD(tandem_model_info, rope_theta);
    FIELD(tandem_model_info, rms_eps);
    FIELD(tandem_model_info, tied_embeddings);
    FIELD(tandem_model_info, n_params);
    FIELD(tandem_model_info, weight_bytes);
    FIELD(tandem_model_info, step_bytes);
    FIELD(tandem_model_info, n_tensors);
    END();
    BEGIN(tandem_download_progress);
    FIELD(tandem_download_progress, file);
    FIELD(tandem_download_progress, n_files_done);
    FIELD(tandem_download_progress, n_files);
    FIELD(tandem_download_progress, bytes_done);
    FIELD(tandem_download_progress, bytes_total);
    FIELD(tandem_download_progress, bytes_start);
    END();
    BEGIN(tandem_download_params);
    FIELD(tandem_download_params, repo_id);
    FIELD(tandem_download_params, revision);
    FIELD(tandem_download_params, file);
    FIELD(tandem_download_params, include);
    FIELD(tandem_download_params, n_include);
    FIELD(tandem_download_params, cache_dir);
    FIELD(tandem_download_params, local_dir);
    FIELD(tandem_download_params, token);
    FIELD(tandem_download_params, endpoint);
    FIELD(tandem_download_params, n_parallel);
    FIELD(tandem_download_params, progress);
    FIELD(tandem_download_params, user);
    END();
    BEGIN(tandem_timings);
    FIELD(tandem_timings, prompt_ms);
    FIELD(tandem_timings, n_prompt);
    FIELD(tandem_timings, n_prompt_reused);
    FIELD(tandem_timings, n_image_tokens);
    FIELD(tandem_timings, n_image_tokens_cached);
    FIELD(tandem_timings, image_ms);
    END();
    BEGIN(tandem_gen_result);
    FIELD(tandem_gen_result, ids);
    FIELD(tandem_gen_result, text);
    FIELD(tandem_gen_result, finish);
    FIELD(tandem_gen_result, timings);
    FIELD(tandem_gen_result, speculative);
    FIELD(tandem_gen_result, spec_stats);
    FIELD(tandem_gen_result, logprobs);
    END();
    BEGIN(tandem_model_params);
    FIELD(tandem_model_params, n_threads);
    FIELD(tandem_model_params, mmproj_path);
    END();
    BEGIN(tandem_image_params);
    FIELD(tandem_image_params, min_tokens);
    FIELD(tandem_image_params, max_tokens);
    END();
    BEGIN(tandem_ctx_params);
    FIELD(tandem_ctx_params, n_ctx);
    FIELD(tandem_ctx_params, n_batch);
    FIELD(tandem_ctx_params, exact);
    FIELD(tandem_ctx_params, kv_type);
    END();
    BEGIN(tandem_chat_render_params);
    FIELD(tandem_chat_render_params, add_generation_prompt);
    FIELD(tandem_chat_render_params, enable_thinking);
    FIELD(tandem_chat_render_params, tools_json);
    FIELD(tandem_chat_render_params, extra_context_json);
    FIELD(tandem_chat_render_params, bos_token);
    FIELD(tandem_chat_render_params, eos_token);
    FIELD(tandem_chat_render_params, now_unix);
    FIELD(tandem_chat_render_params, max_output_bytes);
    FIELD(tandem_chat_render_params, special_tokens_json);
    END();
    BEGIN(tandem_engine_params);
    FIELD(tandem_engine_params, n_slots);
    FIELD(tandem_engine_params, n_ctx);
    FIELD(tandem_engine_params, n_batch);
    FIELD(tandem_engine_params, kv_type);
    FIELD(tandem_engine_params, kv_budget_bytes);
    FIELD(tandem_engine_params, exact);
    FIELD(tandem_engine_params, draft_model);
    FIELD(tandem_engine_params, image_cache_bytes);
    END();
    printf("}\n");
    return 0;
}
