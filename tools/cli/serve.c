/* serve.c — `tandem serve`: the flags, then the OpenAI-compatible server of server/ on one model: bind, load the model,
 * its chat template and an engine of --parallel slots, serve until SIGTERM or SIGINT, drain. */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "server.h"
#include "tandem.h"

static const char SERVE_HELP[] =
    "usage: tandem serve -m MODEL [options]\n"
    "An OpenAI-compatible HTTP server: POST /v1/chat/completions and /v1/completions (streamed as server-sent\n"
    "events when asked), GET /v1/models, /health and /metrics (Prometheus). Requests share the model through an\n"
    "engine of --parallel slots; more wait in a queue of --queue (then 503). SIGTERM or Ctrl-C drains: running\n"
    "requests finish, new ones get 503, then the server exits; a second signal stops at once.\n"
    "  -m, --model PATH         GGUF file or Hugging Face checkpoint folder\n"
    "      --host ADDR          address to listen on (default 127.0.0.1: this machine only)\n"
    "      --port N             port (default 8080; 0 = a free one; the URL is printed on stderr)\n"
    "      --api-key KEY        require 'Authorization: Bearer KEY' on /v1 routes (default: $TANDEM_API_KEY)\n"
    "      --alias NAME         the model's id in /v1/models and answers (default: the file or folder name)\n"
    "      --parallel N         requests decoded together (engine slots, default 4)\n"
    "      --queue N            requests that may wait for a slot (default 64)\n"
    "  -c, --ctx N              context of each slot in tokens: prompt + answer (default min(model, 4096))\n"
    "      --kv-budget SIZE     most bytes of KV cache for all slots (e.g. 2G; default: every slot's)\n" KV_TYPE_HELP
    "      --exact              f32 activations and KV cache: the reference path, slower (as run --exact)\n"
    "      --no-think           enable_thinking=false unless a request asks for thinking\n"
    "      --chat-template-file FILE  this Jinja template instead of the model's\n"
    "      --mmproj FILE        a qwen3vl GGUF's vision tower (images in chat messages: image_url data: URIs)\n"
    "      --allow-local-files  image_url may also be a file:// URL or an absolute path on this machine\n"
    "      --image-min-tokens N, --image-max-tokens N  each image's token budget (as tandem run)\n"
    "      --max-images N       most images per request (default 16)\n"
    "      --image-cache SIZE   most bytes of encoded images kept for requests that resend them (default 256M;\n"
    "                           0 = none)\n"
    "      --max-body SIZE      largest request body (default 32M; larger: 413)\n"
    "      --max-tokens N       most tokens one request may generate (default 8192; also the default)\n"
    "  -t, --threads N          threads (default: all cores)\n"
    "      --http-threads N     threads answering HTTP (default 4)\n"
    "  -md, --draft MODEL       a draft model of the same vocabulary: speculative decoding in every request\n"
    "      --draft-max N        most tokens proposed per verification pass (default 8; adapted to the measured\n"
    "                           acceptance and cost)\n"
    "      --lookup N           also propose the continuation of the last N-gram seen earlier in the prompt and\n"
    "                           answer (prompt lookup; 0 = off, the default). A request's `prediction` (predicted\n"
    "                           output) is always proposed too\n";

/* SIZE: bytes, or a number with K, M, G or T (powers of 1024, an optional B or iB after it). */
static long long parse_size(args *a, const char *flag, const char *s) {
    char *end;
    double v = strtod(s, &end);
    const char *unit = end;
    long long mult = 1;
    switch (toupper((unsigned char)*unit)) {
    case 'K': mult = 1LL << 10, unit++; break;
    case 'M': mult = 1LL << 20, unit++; break;
    case 'G': mult = 1LL << 30, unit++; break;
    case 'T': mult = 1LL << 40, unit++; break;
    default: break;
    }
    if (mult > 1 && toupper((unsigned char)unit[0]) == 'I' && toupper((unsigned char)unit[1]) == 'B') unit += 2;
    else if (toupper((unsigned char)*unit) == 'B') unit++;
    if (end == s || *unit || !(v >= 1) || v * (double)mult > 9e18)
        die_usage(a->cmd, "%s: '%s' is not a size (bytes, or a number with K, M, G or T)", flag, s);
    return (long long)(v * (double)mult);
}

/* The model's id: the file or folder name, without a trailing '/' and a .gguf extension. */
static char *model_name(const char *path) {
    char *name = strdup(path);
    size_t n = strlen(name);
    while (n > 1 && name[n - 1] == '/') name[--n] = '\0';
    const char *slash = strrchr(name, '/');
    char *base = strdup(slash ? slash + 1 : name);
    free(name);
    n = strlen(base);
    if (n > 5 && !strcmp(base + n - 5, ".gguf")) base[n - 5] = '\0';
    return base;
}

int cmd_serve(int argc, char **argv) {
    args a = {"serve", argc, argv, 0};
    serve_http_params hp = serve_http_default_params();
    hp.api_key = getenv("TANDEM_API_KEY");
    serve_limits limits = serve_default_limits();
    const char *model_path = NULL, *draft_path = NULL, *template_path = NULL, *alias = NULL;
    int parallel = 4, n_ctx = 0, threads = 0;
    long long kv_budget = 0;
    tandem_type kv_type = TANDEM_TYPE_F16;
    bool no_think = false, exact = false, allow_local_files = false;
    const char *mmproj_path = NULL;
    tandem_image_params image = tandem_image_default_params();
    long long image_cache = -1;
    tandem_spec_params spec = tandem_spec_default_params();
    for (a.i = 1; a.i < argc; a.i++) {
        const char *f = argv[a.i];
        if (!strcmp(f, "-h") || !strcmp(f, "--help")) {
            fputs(SERVE_HELP, stdout);
            return 0;
        } else if (!strcmp(f, "-m") || !strcmp(f, "--model")) model_path = take_value(&a, f);
        else if (!strcmp(f, "-md") || !strcmp(f, "--draft")) draft_path = take_value(&a, f);
        else if (!strcmp(f, "--draft-max")) spec.draft_max = (int32_t)parse_int(&a, f, take_value(&a, f), 1, 64);
        else if (!strcmp(f, "--lookup")) spec.lookup_ngram = (int32_t)parse_int(&a, f, take_value(&a, f), 0, 64);
        else if (!strcmp(f, "--host")) hp.host = take_value(&a, f);
        else if (!strcmp(f, "--port")) hp.port = (int)parse_int(&a, f, take_value(&a, f), 0, 65535);
        else if (!strcmp(f, "--api-key")) hp.api_key = take_value(&a, f);
        else if (!strcmp(f, "--alias")) alias = take_value(&a, f);
        else if (!strcmp(f, "--parallel")) parallel = (int)parse_int(&a, f, take_value(&a, f), 1, 1024);
        else if (!strcmp(f, "--queue")) hp.queue_max = (int)parse_int(&a, f, take_value(&a, f), 0, 1 << 20);
        else if (!strcmp(f, "-c") || !strcmp(f, "--ctx") || !strcmp(f, "--ctx-size"))
            n_ctx = (int)parse_int(&a, f, take_value(&a, f), 1, 1 << 24);
        else if (!strcmp(f, "--kv-budget")) kv_budget = parse_size(&a, f, take_value(&a, f));
        else if (!strcmp(f, "--kv-type")) kv_type = parse_kv_type(&a, f);
        else if (!strcmp(f, "--no-think")) no_think = true;
        else if (!strcmp(f, "--exact")) exact = true;
        else if (!strcmp(f, "--chat-template-file")) template_path = take_value(&a, f);
        else if (!strcmp(f, "--mmproj")) mmproj_path = take_value(&a, f);
        else if (!strcmp(f, "--allow-local-files")) allow_local_files = true;
        else if (!strcmp(f, "--image-min-tokens"))
            image.min_tokens = (int32_t)parse_int(&a, f, take_value(&a, f), 1, 1 << 20);
        else if (!strcmp(f, "--image-max-tokens"))
            image.max_tokens = (int32_t)parse_int(&a, f, take_value(&a, f), 1, 1 << 20);
        else if (!strcmp(f, "--max-images")) limits.max_images = (int32_t)parse_int(&a, f, take_value(&a, f), 0, 4096);
        else if (!strcmp(f, "--image-cache")) {
            const char *v = take_value(&a, f);
            image_cache = strcmp(v, "0") ? parse_size(&a, f, v) : 0;
        } else if (!strcmp(f, "--max-body")) limits.max_body_bytes = (size_t)parse_size(&a, f, take_value(&a, f));
        else if (!strcmp(f, "--max-tokens"))
            limits.max_tokens = (int32_t)parse_int(&a, f, take_value(&a, f), 1, INT_MAX);
        else if (!strcmp(f, "-t") || !strcmp(f, "--threads")) threads = parse_threads(&a, f);
        else if (!strcmp(f, "--http-threads")) hp.n_threads = (int)parse_int(&a, f, take_value(&a, f), 1, 256);
        else die_usage("serve", "unknown option '%s'", f);
    }
    if (!model_path) die_usage("serve", "missing -m MODEL");

    char err[512];
    serve_server *srv = serve_server_start(&hp, err, sizeof err);
    if (!srv) {
        fprintf(stderr, "tandem serve: error: --host/--port: %s\n", err);
        return EXIT_FAILED;
    }
    const int port = serve_server_port(srv);
    fprintf(stderr, "tandem serve: listening on http://%s%s%s:%d\n", strchr(hp.host, ':') ? "[" : "", hp.host,
            strchr(hp.host, ':') ? "]" : "", port);

    tandem_model_params mp = tandem_model_default_params();
    mp.n_threads = threads;
    mp.mmproj_path = mmproj_path;
    tandem_model *model;
    tandem_status st = tandem_model_load(model_path, &mp, &model);
    if (st) die_status("serve", st);
    mp.mmproj_path = NULL; /* the draft is a text model */
    const tandem_tokenizer *tok = tandem_model_tokenizer(model);
    tandem_model *draft = NULL;
    if (draft_path) {
        if ((st = tandem_model_load(draft_path, &mp, &draft))) die_status("serve", st);
        if ((st = tandem_model_check_draft(model, draft))) die_status("serve", st);
    }

    tandem_chat_template *tmpl = NULL;
    size_t source_len = 0;
    char *source = template_path ? read_file("serve", template_path, &source_len) : NULL;
    const char *text = source ? source : tandem_tokenizer_chat_template(tok);
    if (text) {
        if ((st = tandem_chat_template_parse(text, strlen(text), template_path ? template_path : model_path, &tmpl)))
            die_status("serve", st);
    } else {
        fprintf(stderr,
                "tandem serve: warning: %s has no chat template: /v1/chat/completions is refused (pass "
                "--chat-template-file FILE); /v1/completions works\n",
                model_path);
    }
    free(source);
    /* named templates (HF's list, GGUF's tokenizer.chat_template.NAME): requests with tools use "tool_use" */
    tandem_chat_template *tmpl_tools = NULL;
    const char *tools_text = template_path ? NULL : tandem_tokenizer_chat_template_for(tok, true);
    if (tools_text && text && strcmp(tools_text, text) != 0 &&
        (st = tandem_chat_template_parse(tools_text, strlen(tools_text), "tool_use template", &tmpl_tools)))
        die_status("serve", st);

    tandem_model_info info;
    tandem_model_get_info(model, &info);
    if (n_ctx == 0) n_ctx = info.context_length < 4096 ? info.context_length : 4096;
    warn_beyond_trained_context("serve", model, n_ctx);
    tandem_engine_params ep = tandem_engine_default_params();
    ep.n_slots = parallel;
    ep.n_ctx = n_ctx;
    ep.n_batch = parallel > 64 ? parallel : 64;
    ep.kv_type = kv_type;
    ep.kv_budget_bytes = kv_budget;
    ep.draft_model = draft;
    ep.exact = exact;
    if (image_cache >= 0) ep.image_cache_bytes = image_cache;
    tandem_engine *engine;
    if ((st = tandem_engine_create(model, &ep, &engine))) die_status("serve", st);

    char *name = alias ? strdup(alias) : model_name(model_path);
    serve_model sm = {.name = name,
                      .model = model,
                      .tok = tok,
                      .chat_template = tmpl,
                      .chat_template_tools = tmpl_tools,
                      .n_ctx = n_ctx,
                      .no_think = no_think,
                      .has_draft = draft != NULL,
                      .spec = spec,
                      .has_vision = tandem_model_has_vision(model),
                      .allow_local_files = allow_local_files,
                      .image = image};
    if (!serve_server_ready(srv, &sm, &limits, engine, parallel)) {
        fprintf(stderr, "tandem serve: error: cannot start the engine thread\n");
        return EXIT_FAILED;
    }
    fprintf(stderr, "tandem serve: model %s (%s, %d layers), %d slots of %d tokens, KV %s, %d threads%s%s\n", name,
            model_path, info.n_layers, parallel, n_ctx, tandem_type_name(kv_type), tandem_model_threads(model),
            draft ? ", draft " : "", draft ? draft_path : "");

    const int rc = serve_server_run(srv);
    serve_server_free(srv);
    tandem_engine_free(engine);
    tandem_chat_template_free(tmpl);
    tandem_chat_template_free(tmpl_tools);
    tandem_model_free(draft);
    tandem_model_free(model);
    free(name);
    return rc;
}
