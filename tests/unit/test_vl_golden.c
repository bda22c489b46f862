/* test_vl_golden.c — Qwen3-VL end to end against transformers (tests/gen/make_vl_text_golden.py): the chat prompt
 * with images, its ids and M-RoPE positions, every position's logits of the full model and greedy tokens. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "golden.h"
#include "runtime.h"
#include "test.h"

/* Tolerance: both sides compute in float32 (tandem on its exact path), summing in different orders, so logits of
 * magnitude ~4 end ~1e-5 apart. Mistakes are far larger; tried by hand against this bound when it was set: chunked
 * instead of interleaved M-RoPE sections, DeepStack left out, an image advancing the positions by its token count
 * instead of max(gh, gw): each moves the logits by more than 0.05. */
#define MAX_ABS_DIFF 2e-4

/* The golden case's user message ({"type": "image"} parts, then the text) rendered with the model's template. */
static char *render(const tandem_model *m, const json_t *c, size_t *len) {
    json_t *parts = json_array();
    for (size_t i = 0; i < json_array_size(json_object_get(c, "images")); i++)
        json_array_append_new(parts, json_pack("{s:s}", "type", "image"));
    json_array_append_new(parts, json_pack("{s:s, s:O}", "type", "text", "text", json_object_get(c, "text")));
    json_t *msgs = json_pack("[{s:s, s:o}]", "role", "user", "content", parts);
    char *msgs_json = json_dumps(msgs, JSON_COMPACT);
    json_decref(msgs);
    const tandem_tokenizer *tok = tandem_model_tokenizer(m);
    const char *source = tandem_tokenizer_chat_template(tok);
    CHECK(source != NULL);
    tandem_chat_template *t = NULL;
    char *text = NULL;
    CHECK_OK(tandem_chat_template_parse(source, strlen(source), "vl model", &t));
    tandem_chat_render_params p = tandem_chat_render_default_params();
    p.add_generation_prompt = true;
    p.special_tokens_json = tandem_tokenizer_special_tokens_json(tok);
    if (t) CHECK_OK(tandem_chat_render(t, msgs_json, strlen(msgs_json), &p, &text, len));
    tandem_chat_template_free(t);
    free(msgs_json);
    return text;
}

static void check_case(const char *golden, tandem_model *m, const json_t *c) {
    const char *name = json_string_value(json_object_get(c, "case"));
    const json_t *files = json_object_get(c, "images");
    const int32_t n_images = (int32_t)json_array_size(files);
    tandem_image *images[4] = {0};
    char path[2200];
    for (int32_t i = 0; i < n_images && i < 4; i++) {
        const char *f = json_string_value(json_array_get(files, i));
        snprintf(path, sizeof path, strncmp(f, "checker", 7) ? "%s/images/%s" : "%s/vision_chat/%s", golden, f);
        CHECK_OK(tandem_image_load(m, path, NULL, &images[i]));
        if (!images[i]) return;
        const json_t *thw = json_array_get(json_object_get(c, "image_grid_thw"), (size_t)i);
        CHECK(tandem_image_tokens(images[i]) ==
              json_integer_value(json_array_get(thw, 1)) * json_integer_value(json_array_get(thw, 2)) / 4);
    }

    /* the prompt: the template's text, then the processor's ids */
    size_t len = 0;
    char *text = render(m, c, &len);
    const char *want_text = json_string_value(json_object_get(c, "rendered"));
    CHECK_MSG(text && !strcmp(text, want_text), "%s: rendered %s", name, text ? text : "(null)");
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (text) CHECK_OK(tandem_vl_prompt(m, text, len, (const tandem_image *const *)images, n_images, &ids, &n_ids));
    const json_t *want_ids = json_object_get(c, "input_ids");
    bool same = ids && n_ids == json_array_size(want_ids);
    for (size_t i = 0; same && i < n_ids; i++) same = ids[i] == json_integer_value(json_array_get(want_ids, i));
    CHECK_MSG(same, "%s: input_ids differ from the processor's", name);
    free(text);
    if (!same) goto done;

    /* positions and every position's logits, in one pass on the exact path */
    tandem_ctx_params cp = tandem_ctx_default_params();
    cp.exact = true;
    cp.n_batch = (int32_t)n_ids;
    cp.n_ctx = 256;
    tandem_ctx *ctx = NULL;
    CHECK_OK(tandem_ctx_init(m, &cp, &ctx));
    vl_prompt *vp = NULL;
    if (ctx) CHECK_OK(vl_prompt_init(ctx, ids, n_ids, (const tandem_image *const *)images, n_images, &vp));
    if (vp) {
        const int32_t *pos = vl_prompt_positions(vp);
        const json_t *want_pos = json_object_get(c, "positions");
        bool same_pos = true;
        for (size_t a = 0; a < 3; a++)
            for (size_t i = 0; i < n_ids; i++)
                same_pos &= pos[i * 3 + a] == json_integer_value(json_array_get(json_array_get(want_pos, a), i));
        CHECK_MSG(same_pos, "%s: M-RoPE positions differ from get_rope_index's", name);
        const size_t V = (size_t)m->qwen.cfg.vocab_size;
        float *logits = malloc(n_ids * V * sizeof(float));
        CHECK_OK(vl_prompt_eval(ctx, vp, 0, (int32_t)n_ids, logits));
        snprintf(path, sizeof path, "%s/vision_chat/%s.logits.f32", golden, name);
        size_t size = 0;
        float *want = read_golden_file(path, &size);
        CHECK_MSG(want && size == n_ids * V * sizeof(float), "%s: missing or of the wrong size", path);
        if (want && size == n_ids * V * sizeof(float)) {
            const double d = max_abs_diff(logits, want, n_ids * V);
            CHECK_MSG(d <= MAX_ABS_DIFF, "%s: logits differ from transformers' by %g", name, d);
        }
        free(want);
        free(logits);
        /* the rows after the prompt continue from the images' positions */
        CHECK(ctx->pos_delta == json_integer_value(json_object_get(c, "rope_delta")));
    }
    vl_prompt_free(vp);
    tandem_ctx_free(ctx);

    /* text alone: one position per token (plain RoPE) gives what three equal M-RoPE components give */
    if (n_images == 0) {
        ctx = NULL;
        CHECK_OK(tandem_ctx_init(m, &cp, &ctx));
        const size_t V = (size_t)m->qwen.cfg.vocab_size;
        float *logits = malloc(n_ids * V * sizeof(float));
        if (ctx) CHECK_OK(tandem_ctx_eval(ctx, ids, (int32_t)n_ids, logits));
        snprintf(path, sizeof path, "%s/vision_chat/%s.logits.f32", golden, name);
        size_t size = 0;
        float *want = read_golden_file(path, &size);
        if (ctx && want && size == n_ids * V * sizeof(float))
            CHECK_MSG(max_abs_diff(logits, want, n_ids * V) <= MAX_ABS_DIFF, "%s: tandem_ctx_eval's logits differ",
                      name);
        free(want);
        free(logits);
        tandem_ctx_free(ctx);
    }

    /* greedy generation through tandem_generate, prompt in chunks of 8 (a chunk ends inside an image) */
    cp.n_batch = 8;
    ctx = NULL;
    CHECK_OK(tandem_ctx_init(m, &cp, &ctx));
    tandem_gen_params gp = tandem_gen_default_params(m);
    gp.sampling.temperature = 0;
    const json_t *greedy = json_object_get(c, "greedy");
    gp.max_tokens = (int32_t)json_array_size(greedy);
    gp.images = (const tandem_image *const *)images;
    gp.n_images = n_images;
    tandem_gen_result r = {0};
    if (ctx) CHECK_OK(tandem_generate(ctx, ids, n_ids, &gp, &r));
    bool same_gen = r.n_ids == json_array_size(greedy);
    for (size_t i = 0; same_gen && i < r.n_ids; i++)
        same_gen = r.ids[i] == json_integer_value(json_array_get(greedy, i));
    CHECK_MSG(same_gen, "%s: greedy tokens differ from model.generate's (%zu tokens)", name, r.n_ids);
    tandem_gen_result_free(&r);
    /* cut between two images (keeping the first), then the rest of the prompt with the second image again: the
     * same answer, so the kept rows' positions survive the cut */
    if (n_images == 2 && ctx) {
        const int32_t pad = tandem_model_image_token(m);
        size_t k = 0;
        while (k < n_ids && ids[k] != pad) k++;
        while (k < n_ids && ids[k] == pad) k++; /* k: the first token after the first image */
        const int32_t n_keep = (int32_t)k + 1;
        CHECK_OK(tandem_ctx_truncate(ctx, n_keep));
        gp.images = (const tandem_image *const *)images + 1;
        gp.n_images = 1;
        memset(&r, 0, sizeof r);
        CHECK_OK(tandem_generate(ctx, ids + n_keep, n_ids - (size_t)n_keep, &gp, &r));
        same_gen = r.n_ids == json_array_size(greedy);
        for (size_t i = 0; same_gen && i < r.n_ids; i++)
            same_gen = r.ids[i] == json_integer_value(json_array_get(greedy, i));
        CHECK_MSG(same_gen, "%s: after a cut between the images, greedy tokens differ from model.generate's", name);
        tandem_gen_result_free(&r);
    }
    tandem_ctx_free(ctx);
done:
    free(ids);
    for (int32_t i = 0; i < n_images && i < 4; i++) tandem_image_free(images[i]);
}

/* Wrong input gives errors that say what is wrong, never a crash. */
static void check_errors(const char *golden, tandem_model *m, tandem_model *text_model) {
    char path[2200];
    tandem_image *img = NULL;
    snprintf(path, sizeof path, "%s/vision_chat/checker_64x96.png", golden);
    CHECK_FAILS(tandem_image_load(text_model, path, NULL, &img), TANDEM_ERR_UNSUPPORTED, "no vision tower");
    CHECK(img == NULL);
    snprintf(path, sizeof path, "%s/vision_chat/cases.json", golden);
    CHECK_FAILS(tandem_image_load(m, path, NULL, &img), TANDEM_ERR_UNSUPPORTED, "cases.json");
    snprintf(path, sizeof path, "%s/images/bomb_70000x70000.png", golden);
    CHECK_FAILS(tandem_image_load(m, path, NULL, &img), TANDEM_ERR_FORMAT, "bomb_70000x70000.png");
    size_t size = 0;
    snprintf(path, sizeof path, "%s/images/jpeg_444.jpg", golden);
    uint8_t *jpeg = read_golden_file(path, &size);
    CHECK(jpeg != NULL);
    if (jpeg)
        CHECK_FAILS(tandem_image_from_bytes(m, "cut.jpg", jpeg, size / 2, NULL, &img), TANDEM_ERR_FORMAT, "cut.jpg");
    free(jpeg);
    CHECK_FAILS(tandem_image_load(m, "/nonexistent/x.png", NULL, &img), TANDEM_ERR_IO, "/nonexistent/x.png");

    /* a token budget: min_tokens raises a small image's size */
    snprintf(path, sizeof path, "%s/vision_chat/checker_64x96.png", golden);
    tandem_image_params ip = tandem_image_default_params();
    ip.min_tokens = 12;
    ip.max_tokens = 24;
    CHECK_OK(tandem_image_load(m, path, &ip, &img));
    CHECK(img && tandem_image_tokens(img) >= 12 && tandem_image_tokens(img) <= 24);

    /* placeholders that do not match the images */
    int32_t *ids = NULL;
    size_t n = 0;
    const char *two = "<|vision_start|><|image_pad|><|vision_end|><|vision_start|><|image_pad|><|vision_end|>hi";
    const tandem_image *one[1] = {img};
    CHECK_FAILS(tandem_vl_prompt(m, two, strlen(two), one, 1, &ids, &n), TANDEM_ERR_INVALID_ARG,
                "2 image placeholders");
    CHECK_OK(tandem_vl_prompt(m, two + 43, strlen(two + 43), one, 1, &ids, &n));
    /* a run of the wrong length, an image too many, images for a text model */
    tandem_ctx *ctx = NULL;
    CHECK_OK(tandem_ctx_init(m, NULL, &ctx));
    tandem_gen_params gp = tandem_gen_default_params(m);
    gp.max_tokens = 1;
    gp.images = one;
    gp.n_images = 1;
    tandem_gen_result r = {0};
    if (ctx && ids) {
        CHECK_FAILS(tandem_generate(ctx, ids, 4, &gp, &r), TANDEM_ERR_INVALID_ARG, "its <|image_pad|> run");
        CHECK_FAILS(tandem_generate(ctx, ids, 1, &gp, &r), TANDEM_ERR_INVALID_ARG, "the prompt places 0");
    }
    tandem_ctx_free(ctx);
    ctx = NULL;
    CHECK_OK(tandem_ctx_init(text_model, NULL, &ctx));
    if (ctx && ids) CHECK_FAILS(tandem_generate(ctx, ids, 1, &gp, &r), TANDEM_ERR_UNSUPPORTED, "no vision tower");
    tandem_ctx_free(ctx);
    free(ids);
    tandem_image_free(img);
}

/* A qwen3vl GGUF (llama.cpp's text-model file of Qwen3-VL): the golden Qwen3 GGUF with its qwen3.* keys renamed
 * and the two VL keys added. It loads as a text model whose M-RoPE sections and DeepStack count are read; text
 * gives the same logits as the qwen3 file (equal position components); images are refused. */
static void check_qwen3vl_gguf(const char *golden) {
    char src_path[2200], path[2200];
    snprintf(src_path, sizeof src_path, "%s/models/tied_gqa2/model-f32.gguf", golden);
    snprintf(path, sizeof path, "/tmp/test_vl_golden-%d.gguf", (int)getpid());
    gguf_file *f = NULL;
    gguf_writer *w = NULL;
    CHECK_OK(gguf_open(src_path, &f));
    CHECK_OK(gguf_writer_init(&w));
    if (!f || !w) return;
    for (int64_t i = 0; i < f->n_kv; i++) {
        gguf_kv kv = f->kv[i];
        char key[256];
        if (!strcmp(kv.key, "general.architecture")) {
            CHECK_OK(gguf_writer_set_str(w, kv.key, "qwen3vl", 7));
            continue;
        }
        if (!strncmp(kv.key, "qwen3.", 6)) {
            snprintf(key, sizeof key, "qwen3vl.%s", kv.key + 6);
            kv.key = key;
        }
        CHECK_OK(gguf_writer_copy_kv(w, &kv));
    }
    const int32_t sections[4] = {8, 4, 4, 0};
    CHECK_OK(gguf_writer_set_arr_i32(w, "qwen3vl.rope.dimension_sections", sections, 4));
    CHECK_OK(gguf_writer_set_u32(w, "qwen3vl.n_deepstack_layers", 2));
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        CHECK_OK(gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data));
    }
    CHECK_OK(gguf_writer_write(w, path));
    gguf_writer_free(w);
    gguf_close(f);

    tandem_model_params mp = tandem_model_default_params();
    mp.n_threads = 2;
    tandem_model *vl = NULL, *text = NULL;
    CHECK_OK(tandem_model_load(path, &mp, &vl));
    CHECK_OK(tandem_model_load(src_path, &mp, &text));
    if (vl && text) {
        const qwen3_config *c = &vl->qwen.cfg;
        CHECK(c->rope_sections[0] == 8 && c->rope_sections[1] == 4 && c->rope_sections[2] == 4 && c->n_deepstack == 2);
        CHECK(!tandem_model_has_vision(vl));
        const int32_t ids[5] = {1, 20, 300, 7, 42};
        tandem_ctx *a = NULL, *b = NULL;
        tandem_ctx_params cp = tandem_ctx_default_params();
        cp.exact = true;
        CHECK_OK(tandem_ctx_init(vl, &cp, &a));
        CHECK_OK(tandem_ctx_init(text, &cp, &b));
        if (a && b) {
            CHECK_OK(tandem_ctx_eval(a, ids, 5, NULL));
            CHECK_OK(tandem_ctx_eval(b, ids, 5, NULL));
            CHECK(memcmp(tandem_ctx_logits(a), tandem_ctx_logits(b), (size_t)c->vocab_size * sizeof(float)) == 0);
            tandem_image *img = NULL;
            snprintf(src_path, sizeof src_path, "%s/vision_chat/checker_64x96.png", golden);
            CHECK_FAILS(tandem_image_load(vl, src_path, NULL, &img), TANDEM_ERR_UNSUPPORTED, "mmproj");
        }
        tandem_ctx_free(a);
        tandem_ctx_free(b);
    }
    tandem_model_free(vl);
    tandem_model_free(text);
    unlink(path);
}

int main(int argc, char **argv) {
    const char *golden = argc > 1 ? argv[1] : "tests/golden";
    char path[1024];
    snprintf(path, sizeof path, "%s/vision_chat/cases.json", golden);
    json_error_t err;
    json_t *doc = json_load_file(path, 0, &err);
    CHECK_MSG(doc != NULL, "%s: %s", path, err.text);
    snprintf(path, sizeof path, "%s/vision_chat/model", golden);
    tandem_model_params mp = tandem_model_default_params();
    mp.n_threads = 2;
    tandem_model *m = NULL;
    CHECK_OK(tandem_model_load(path, &mp, &m));
    if (!m || !doc) return test_summary();
    CHECK(tandem_model_has_vision(m));
    CHECK(m->qwen.cfg.rope_sections[0] == 4 && m->qwen.cfg.rope_sections[1] == 2 && m->qwen.cfg.rope_sections[2] == 2);
    CHECK(m->qwen.cfg.n_deepstack == 2);
    const json_t *cases = json_object_get(doc, "cases");
    CHECK(json_array_size(cases) == 3);
    for (size_t i = 0; i < json_array_size(cases); i++) check_case(golden, m, json_array_get(cases, i));
    check_qwen3vl_gguf(golden);
    tandem_model *text_model = load_golden_model(golden, "tied_gqa2");
    if (text_model) check_errors(golden, m, text_model);
    tandem_model_free(text_model);
    tandem_model_free(m);
    json_decref(doc);
    return test_summary();
}
