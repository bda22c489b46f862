/* test_engine_images.c — tandem_engine with images (Qwen3-VL, the tiny folder of tests/golden/vision_chat) against
 * tandem_generate: requests with one, two or no images running together (prompt chunks that end inside an image,
 * image rows beside other sequences' tokens) give each request's ids alone; the encoded-image cache (a hit gives the
 * same ids); prefix reuse keeps an image's rows only for the same image; lookup and a draft model stay lossless. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"

enum { N_CTX = 160, MAX_NEW = 8 };

static tandem_model *model;
static char golden[2048];

/* A user message of n_images {"type": "image"} parts and text, rendered with the model's template (the processor's
 * layout, as tandem run --image), then expanded by tandem_vl_prompt. system: a system message first, or NULL. */
static int32_t *vl_ids(const char *system, tandem_image **images, int32_t n_images, const char *text, size_t *n_ids) {
    json_t *parts = json_array();
    for (int32_t i = 0; i < n_images; i++) json_array_append_new(parts, json_pack("{s:s}", "type", "image"));
    json_array_append_new(parts, json_pack("{s:s, s:s}", "type", "text", "text", text));
    json_t *msgs = json_array();
    if (system) json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", system));
    json_array_append_new(msgs, json_pack("{s:s, s:o}", "role", "user", "content", parts));
    char *msgs_json = json_dumps(msgs, JSON_COMPACT);
    json_decref(msgs);
    const tandem_tokenizer *tok = tandem_model_tokenizer(model);
    const char *source = tandem_tokenizer_chat_template(tok);
    tandem_chat_template *t = NULL;
    char *rendered = NULL;
    size_t len = 0;
    CHECK_OK(tandem_chat_template_parse(source, strlen(source), "vl model", &t));
    tandem_chat_render_params p = tandem_chat_render_default_params();
    p.add_generation_prompt = true;
    p.special_tokens_json = tandem_tokenizer_special_tokens_json(tok);
    CHECK_OK(tandem_chat_render(t, msgs_json, strlen(msgs_json), &p, &rendered, &len));
    int32_t *ids = NULL;
    CHECK_OK(tandem_vl_prompt(model, rendered, len, (const tandem_image *const *)images, n_images, &ids, n_ids));
    tandem_free(rendered);
    tandem_chat_template_free(t);
    free(msgs_json);
    return ids;
}

static tandem_image *load_image(const char *name) {
    char path[2200];
    snprintf(path, sizeof path, strncmp(name, "checker", 7) ? "%s/images/%s" : "%s/vision_chat/%s", golden, name);
    tandem_image *img = NULL;
    CHECK_OK(tandem_image_load(model, path, NULL, &img));
    if (!img) exit(1);
    return img;
}

typedef struct request {
    const char *name;
    int32_t *ids;
    size_t n_ids;
    tandem_image *images[2];
    int32_t n_images;
    tandem_gen_params gp;
    tandem_gen_result want; /* tandem_generate's alone */
} request;

static void make(request *q, const char *name, const char *system, tandem_image *a, tandem_image *b, const char *text) {
    q->name = name;
    q->images[0] = a;
    q->images[1] = b;
    q->n_images = (a != NULL) + (b != NULL);
    q->ids = vl_ids(system, q->images, q->n_images, text, &q->n_ids);
    q->gp = tandem_gen_default_params(model);
    q->gp.sampling.temperature = 0;
    q->gp.max_tokens = MAX_NEW;
    q->gp.ignore_eos = true;
    q->gp.images = q->n_images ? (const tandem_image *const *)q->images : NULL;
    q->gp.n_images = q->n_images;
    tandem_ctx_params cp = tandem_ctx_default_params();
    cp.n_ctx = N_CTX;
    tandem_ctx *ctx = NULL;
    CHECK_OK(tandem_ctx_init(model, &cp, &ctx));
    CHECK_OK(tandem_generate(ctx, q->ids, q->n_ids, &q->gp, &q->want));
    tandem_ctx_free(ctx);
}

static tandem_engine *open_engine(int32_t n_slots, int32_t n_batch, int64_t cache_bytes, tandem_model *draft) {
    tandem_engine_params ep = tandem_engine_default_params();
    ep.n_slots = n_slots;
    ep.n_ctx = N_CTX;
    ep.n_batch = n_batch;
    ep.image_cache_bytes = cache_bytes;
    ep.draft_model = draft;
    tandem_engine *e = NULL;
    CHECK_OK(tandem_engine_create(model, &ep, &e));
    return e;
}

/* Runs the requests together (all added, then steps until idle); out: each one's result. */
static void run(tandem_engine *e, request *const *qs, int n, const tandem_gen_params *override,
                tandem_gen_result *out) {
    int64_t ids[8];
    for (int i = 0; i < n; i++)
        CHECK_OK(tandem_engine_add(e, qs[i]->ids, qs[i]->n_ids, override ? &override[i] : &qs[i]->gp, &ids[i]));
    for (bool idle = false; !idle;) CHECK_OK(tandem_engine_step(e, &idle));
    for (int i = 0; i < n; i++) CHECK_OK(tandem_engine_result(e, ids[i], &out[i]));
}

static void check_same(const char *scenario, const request *q, const tandem_gen_result *got) {
    const tandem_gen_result *want = &q->want;
    CHECK_MSG(want->n_ids == got->n_ids && memcmp(want->ids, got->ids, want->n_ids * sizeof *want->ids) == 0,
              "%s, %s: the engine's ids differ from tandem_generate's", scenario, q->name);
    CHECK_MSG(got->timings.n_prompt == (int32_t)q->n_ids, "%s, %s: n_prompt %d", scenario, q->name,
              got->timings.n_prompt);
    int32_t tokens = 0;
    for (int32_t i = 0; i < q->n_images; i++) tokens += tandem_image_tokens(q->images[i]);
    CHECK_MSG(got->timings.n_image_tokens == tokens, "%s, %s: n_image_tokens %d, want %d", scenario, q->name,
              got->timings.n_image_tokens, tokens);
}

int main(int argc, char **argv) {
    snprintf(golden, sizeof golden, "%s", argc > 1 ? argv[1] : "tests/golden");
    char path[2200];
    snprintf(path, sizeof path, "%s/vision_chat/model", golden);
    tandem_model_params mp = tandem_model_default_params();
    mp.n_threads = 2;
    CHECK_OK(tandem_model_load(path, &mp, &model));
    if (!model) return test_summary();
    tandem_image *checker = load_image("checker_64x96.png"), *large = load_image("large_150x100.png");
    tandem_image *o1 = load_image("jpeg_orient1.jpg"), *o2 = load_image("jpeg_orient2.jpg");
    CHECK(tandem_image_tokens(o1) == tandem_image_tokens(o2)); /* same size, other pixels */

    request one, two, other, text, first, mirrored;
    make(&one, "one image", NULL, checker, NULL, "Describe this image.");
    make(&two, "two images", NULL, checker, large, "What differs between them?");
    make(&other, "the second image alone", "Be brief.", large, NULL, "And this one?");
    make(&text, "text", NULL, NULL, NULL, "Hello, who are you?");
    make(&first, "orientation 1", NULL, o1, NULL, "Describe this image.");
    make(&mirrored, "orientation 2", NULL, o2, NULL, "Describe this image.");
    CHECK(first.n_ids == mirrored.n_ids && !memcmp(first.ids, mirrored.ids, first.n_ids * sizeof *first.ids));

    /* together, prompts read 8 tokens a step at most (chunks end inside images), beside the others' decoding */
    tandem_gen_result got[8];
    {
        tandem_engine *e = open_engine(4, 8, 0, NULL);
        request *qs[] = {&one, &two, &other, &text};
        run(e, qs, 4, NULL, got);
        for (int i = 0; i < 4; i++) {
            check_same("together", qs[i], &got[i]);
            CHECK(got[i].timings.n_image_tokens_cached == 0); /* no cache */
            tandem_gen_result_free(&got[i]);
        }
        tandem_engine_free(e);
    }

    /* the cache: the second image of `two` is found again for `other` (another prefix, another place) */
    {
        tandem_engine *e = open_engine(1, 64, 64 << 20, NULL);
        request *qs[] = {&two, &other, &one};
        for (int i = 0; i < 3; i++) run(e, &qs[i], 1, NULL, &got[i]);
        check_same("cache", &two, &got[0]);
        check_same("cache", &other, &got[1]);
        check_same("cache", &one, &got[2]);
        CHECK_MSG(got[0].timings.n_image_tokens_cached == 0, "first sight: %d cached",
                  got[0].timings.n_image_tokens_cached);
        CHECK_MSG(got[1].timings.n_image_tokens_cached == tandem_image_tokens(large), "other: %d cached, want %d",
                  got[1].timings.n_image_tokens_cached, tandem_image_tokens(large));
        tandem_engine_usage u;
        tandem_engine_get_usage(e, &u);
        CHECK(u.image_cache_entries == 2 && u.image_cache_hits >= 1 && u.image_cache_misses == 2 &&
              u.image_cache_bytes > 0);
        for (int i = 0; i < 3; i++) tandem_gen_result_free(&got[i]);
        tandem_engine_free(e);
    }

    /* the cache's bound: a block larger than the budget is not kept; a new one drops the least recently used */
    {
        int64_t bytes[2]; /* of checker's block, of large's */
        request *alone[] = {&one, &other};
        for (int i = 0; i < 2; i++) {
            tandem_engine *e = open_engine(1, 64, 64 << 20, NULL);
            run(e, &alone[i], 1, NULL, &got[0]);
            tandem_gen_result_free(&got[0]);
            tandem_engine_usage u;
            tandem_engine_get_usage(e, &u);
            bytes[i] = u.image_cache_bytes;
            tandem_engine_free(e);
        }
        CHECK(bytes[0] > 0 && bytes[1] > 0);
        tandem_engine *e = open_engine(1, 64, bytes[0] - 1, NULL); /* too small for any */
        run(e, alone, 1, NULL, &got[0]);
        tandem_gen_result_free(&got[0]);
        tandem_engine_usage u;
        tandem_engine_get_usage(e, &u);
        CHECK(u.image_cache_entries == 0 && u.image_cache_bytes == 0 && u.image_cache_misses == 1);
        tandem_engine_free(e);
        /* two: both encoded, large's block drops checker's; other (another prefix): large from the cache; one (no
         * prefix shared with other): checker encoded again, dropping large's */
        request *qs[] = {&two, &other, &one};
        e = open_engine(1, 64, bytes[0] + bytes[1] - 1, NULL);
        for (int i = 0; i < 3; i++) run(e, &qs[i], 1, NULL, &got[i]);
        for (int i = 0; i < 3; i++) check_same("bounded cache", qs[i], &got[i]);
        CHECK(got[1].timings.n_image_tokens_cached == tandem_image_tokens(large));
        CHECK(got[2].timings.n_image_tokens_cached == 0);
        tandem_engine_get_usage(e, &u);
        CHECK_MSG(u.image_cache_entries == 1 && u.image_cache_bytes == bytes[0] && u.image_cache_hits == 1 &&
                      u.image_cache_misses == 3,
                  "bounded cache: %d entries, %lld bytes, %lld hits, %lld misses", u.image_cache_entries,
                  (long long)u.image_cache_bytes, (long long)u.image_cache_hits, (long long)u.image_cache_misses);
        for (int i = 0; i < 3; i++) tandem_gen_result_free(&got[i]);
        tandem_engine_free(e);
    }

    /* prefix reuse: the same prompt again reuses all but its last token; the same ids with another image (same
     * size) only up to the image */
    {
        tandem_engine *e = open_engine(1, 64, 0, NULL);
        request *qs[] = {&first, &first, &mirrored};
        for (int i = 0; i < 3; i++) run(e, &qs[i], 1, NULL, &got[i]);
        size_t at = 0;
        while (first.ids[at] != tandem_model_image_token(model)) at++;
        CHECK(got[0].timings.n_prompt_reused == 0);
        CHECK_MSG(got[1].timings.n_prompt_reused == (int32_t)first.n_ids - 1, "same prompt: %d reused",
                  got[1].timings.n_prompt_reused);
        CHECK_MSG(got[2].timings.n_prompt_reused == (int32_t)at, "another image: %d reused, want %zu",
                  got[2].timings.n_prompt_reused, at);
        check_same("reuse", &first, &got[0]);
        check_same("reuse", &first, &got[1]);
        check_same("reuse", &mirrored, &got[2]);
        for (int i = 0; i < 3; i++) tandem_gen_result_free(&got[i]);
        tandem_engine_free(e);
    }

    /* speculative: lookup and predictions propose in image requests; a draft model (text only) is skipped for them */
    {
        tandem_model *draft = NULL;
        CHECK_OK(tandem_model_load(path, &mp, &draft));
        tandem_engine *e = open_engine(3, 64, 0, draft);
        request *qs[] = {&two, &one, &text};
        tandem_gen_params gp[3];
        for (int i = 0; i < 3; i++) {
            gp[i] = qs[i]->gp;
            gp[i].spec = tandem_spec_default_params();
            gp[i].spec.draft_max = 4;
            gp[i].spec.lookup_ngram = i == 1 ? 1 : 0;
        }
        gp[1].prediction = one.want.ids; /* proposals for sure: its own answer, less its last token */
        gp[1].n_prediction = (int32_t)one.want.n_ids - 1;
        run(e, qs, 3, gp, got);
        for (int i = 0; i < 3; i++) check_same("speculative", qs[i], &got[i]);
        CHECK_MSG(!got[0].speculative, "an image request without lookup decodes plainly (the draft sees no images)");
        CHECK_MSG(got[1].speculative && got[1].spec_stats.n_drafted > 0, "lookup: speculative %d, %d drafted",
                  got[1].speculative, got[1].spec_stats.n_drafted);
        CHECK(got[2].speculative && got[2].spec_stats.n_drafted > 0); /* text drafts */
        for (int i = 0; i < 3; i++) tandem_gen_result_free(&got[i]);
        tandem_engine_free(e);
        tandem_model_free(draft);
    }

    /* refusals: images that do not match the prompt, and images for a text model */
    {
        tandem_engine *e = open_engine(1, 64, 0, NULL);
        int64_t id;
        tandem_gen_params gp = one.gp;
        gp.images = (const tandem_image *const *)two.images;
        gp.n_images = 2;
        CHECK(tandem_engine_add(e, one.ids, one.n_ids, &gp, &id) == TANDEM_ERR_INVALID_ARG);
        CHECK(strstr(tandem_last_error(), "tandem_engine_add:") != NULL);
        tandem_engine_free(e);
        snprintf(path, sizeof path, "%s/models/tied_gqa2", golden);
        tandem_model *txt = NULL;
        CHECK_OK(tandem_model_load(path, &mp, &txt));
        tandem_engine_params ep = tandem_engine_default_params();
        ep.n_ctx = N_CTX;
        CHECK_OK(tandem_engine_create(txt, &ep, &e));
        const int32_t ids[] = {1, 2, 3};
        CHECK(tandem_engine_add(e, ids, 3, &one.gp, &id) == TANDEM_ERR_UNSUPPORTED);
        CHECK(strstr(tandem_last_error(), "no vision tower") != NULL);
        tandem_engine_free(e);
        tandem_model_free(txt);
    }

    request *all[] = {&one, &two, &other, &text, &first, &mirrored};
    for (int i = 0; i < 6; i++) {
        tandem_free(all[i]->ids);
        tandem_gen_result_free(&all[i]->want);
    }
    tandem_image_free(checker);
    tandem_image_free(large);
    tandem_image_free(o1);
    tandem_image_free(o2);
    tandem_model_free(model);
    return test_summary();
}
