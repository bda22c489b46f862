/* vit_bench.c — the Qwen3-VL vision tower's encode time (src/vision/vit.c) on a random-weight tower of a released
 * shape (4B's by default), written as an HF folder in a temporary directory and loaded as a checkpoint would be.
 *
 *   vit_bench [--tokens N] [--depth D] [--hidden E] [--heads H] [--ffn F] [--out O] [--type bf16|f16|f32]
 *             [--mmproj f32|f16|bf16|q8_0] [--threads T] [--runs R]
 *
 * --mmproj TYPE converts the folder to an mmproj GGUF of that type (tandem convert's writer) and encodes with the
 * tower vit_load_gguf reads from it.
 *
 * N image tokens (merged 2 x 2 patches) in one square-ish image; prints per run the wall time, image tokens/s, the
 * arithmetic rate of the products and attention, and the same per second of CPU time (the figure that still means
 * something on a shared host). Not a test. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "convert.h"
#include "kernels.h"
#include "tandem_base.h"
#include "vit.h"

/* CPU time of the whole process (every thread), in ms: on a shared host, what the encode cost whatever else ran. */
static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

typedef struct bench_shape {
    int tokens, depth, hidden, heads, ffn, out, threads, runs;
    tandem_type type;
    const char *mmproj; /* NULL: the HF folder; else an mmproj GGUF of this type */
} bench_shape;

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

typedef struct tensor_spec {
    char name[128];
    int n_dims;
    int64_t shape[5];
    float mean, scale; /* values mean + scale·U(-1, 1) */
} tensor_spec;

static int add(tensor_spec *t, int n, const char *name, int n_dims, const int64_t *shape, float mean, float scale) {
    snprintf(t[n].name, sizeof t[n].name, "model.visual.%s", name);
    t[n].n_dims = n_dims;
    memcpy(t[n].shape, shape, sizeof(int64_t) * (size_t)n_dims);
    t[n].mean = mean, t[n].scale = scale;
    return n + 1;
}

static int64_t elements(const tensor_spec *t) {
    int64_t n = 1;
    for (int i = 0; i < t->n_dims; i++) n *= t->shape[i];
    return n;
}

/* The tower's tensors, weights scaled by 1/√fan_in so the activations stay O(1) over the blocks. */
static int tower_tensors(const bench_shape *s, int n_deepstack, tensor_spec *t) {
    const int64_t E = s->hidden, F = s->ffn, W = 4 * E, O = s->out;
    int n = 0;
    char name[96];
    n = add(t, n, "patch_embed.proj.weight", 5, (int64_t[]){E, 3, 2, 16, 16}, 0, 1.0f / sqrtf(1536));
    n = add(t, n, "patch_embed.proj.bias", 1, (int64_t[]){E}, 0, 0.1f);
    n = add(t, n, "pos_embed.weight", 2, (int64_t[]){2304, E}, 0, 0.5f);
    for (int l = 0; l < s->depth; l++) {
#define BLK(suffix, nd, mean, scale, ...)                    \
    (snprintf(name, sizeof name, "blocks.%d.%s", l, suffix), \
     n = add(t, n, name, nd, (int64_t[]){__VA_ARGS__}, mean, scale))
        BLK("norm1.weight", 1, 1, 0.1f, E);
        BLK("norm1.bias", 1, 0, 0.1f, E);
        BLK("norm2.weight", 1, 1, 0.1f, E);
        BLK("norm2.bias", 1, 0, 0.1f, E);
        BLK("attn.qkv.weight", 2, 0, 1.0f / sqrtf((float)E), 3 * E, E);
        BLK("attn.qkv.bias", 1, 0, 0.1f, 3 * E);
        BLK("attn.proj.weight", 2, 0, 1.0f / sqrtf((float)E), E, E);
        BLK("attn.proj.bias", 1, 0, 0.1f, E);
        BLK("mlp.linear_fc1.weight", 2, 0, 1.0f / sqrtf((float)E), F, E);
        BLK("mlp.linear_fc1.bias", 1, 0, 0.1f, F);
        BLK("mlp.linear_fc2.weight", 2, 0, 1.0f / sqrtf((float)F), E, F);
        BLK("mlp.linear_fc2.bias", 1, 0, 0.1f, E);
#undef BLK
    }
    for (int j = -1; j < n_deepstack; j++) {
        char prefix[64];
        if (j < 0) snprintf(prefix, sizeof prefix, "merger");
        else snprintf(prefix, sizeof prefix, "deepstack_merger_list.%d", j);
        const int64_t norm = j < 0 ? E : W;
#define MRG(suffix, nd, mean, scale, ...)                  \
    (snprintf(name, sizeof name, "%s.%s", prefix, suffix), \
     n = add(t, n, name, nd, (int64_t[]){__VA_ARGS__}, mean, scale))
        MRG("norm.weight", 1, 1, 0.1f, norm);
        MRG("norm.bias", 1, 0, 0.1f, norm);
        MRG("linear_fc1.weight", 2, 0, 1.0f / sqrtf((float)W), W, W);
        MRG("linear_fc1.bias", 1, 0, 0.1f, W);
        MRG("linear_fc2.weight", 2, 0, 1.0f / sqrtf((float)W), O, W);
        MRG("linear_fc2.bias", 1, 0, 0.1f, O);
#undef MRG
    }
    return n;
}

/* model.safetensors with random values of type s->type: an 8-byte header length, the JSON header, the data. */
static bool write_safetensors(const char *path, const bench_shape *s, const tensor_spec *t, int n) {
    const char *dtype = s->type == TANDEM_TYPE_F32 ? "F32" : s->type == TANDEM_TYPE_F16 ? "F16" : "BF16";
    const size_t elem = s->type == TANDEM_TYPE_F32 ? 4 : 2;
    size_t cap = 1 << 20, len = 0;
    char *header = malloc(cap);
    len += (size_t)snprintf(header, cap, "{");
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        if (cap - len < 512) header = realloc(header, cap *= 2);
        len += (size_t)snprintf(header + len, cap - len, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "",
                                t[i].name, dtype);
        for (int d = 0; d < t[i].n_dims; d++)
            len += (size_t)snprintf(header + len, cap - len, "%s%lld", d ? "," : "", (long long)t[i].shape[d]);
        const uint64_t bytes = (uint64_t)elements(&t[i]) * elem;
        len += (size_t)snprintf(header + len, cap - len, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                                (unsigned long long)(offset + bytes));
        offset += bytes;
    }
    len += (size_t)snprintf(header + len, cap - len, "}");
    while (len % 8) header[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    const uint64_t hlen = len;
    bool ok = fwrite(&hlen, 8, 1, f) == 1 && fwrite(header, 1, len, f) == len;
    free(header);
    for (int i = 0; ok && i < n; i++) {
        const int64_t count = elements(&t[i]);
        uint8_t *buf = malloc((size_t)count * elem);
        for (int64_t k = 0; k < count; k++) {
            const float v = t[i].mean + t[i].scale * frand();
            if (elem == 4) memcpy(buf + 4 * k, &v, 4);
            else {
                const uint16_t h = s->type == TANDEM_TYPE_F16 ? f32_to_f16(v) : f32_to_bf16(v);
                memcpy(buf + 2 * k, &h, 2);
            }
        }
        ok = fwrite(buf, elem, (size_t)count, f) == (size_t)count;
        free(buf);
    }
    return fclose(f) == 0 && ok;
}

int main(int argc, char **argv) {
    bench_shape s = {.tokens = 1024,
                     .depth = 24,
                     .hidden = 1024,
                     .heads = 16,
                     .ffn = 4096,
                     .out = 2560,
                     .threads = cpu_count(),
                     .runs = 3,
                     .type = TANDEM_TYPE_BF16};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--tokens")) s.tokens = atoi(v);
        else if (!strcmp(k, "--depth")) s.depth = atoi(v);
        else if (!strcmp(k, "--hidden")) s.hidden = atoi(v);
        else if (!strcmp(k, "--heads")) s.heads = atoi(v);
        else if (!strcmp(k, "--ffn")) s.ffn = atoi(v);
        else if (!strcmp(k, "--out")) s.out = atoi(v);
        else if (!strcmp(k, "--threads")) s.threads = atoi(v);
        else if (!strcmp(k, "--runs")) s.runs = atoi(v);
        else if (!strcmp(k, "--mmproj")) s.mmproj = v;
        else if (!strcmp(k, "--type"))
            s.type = !strcmp(v, "f32") ? TANDEM_TYPE_F32 : !strcmp(v, "f16") ? TANDEM_TYPE_F16 : TANDEM_TYPE_BF16;
        else {
            fprintf(stderr, "vit_bench: unknown option %s\n", k);
            return 2;
        }
    }
    /* deepstack taps as 4B's [5, 11, 17] scaled to the depth */
    const int n_ds = s.depth >= 4 ? 3 : 0, taps[3] = {5 * s.depth / 24, 11 * s.depth / 24, 17 * s.depth / 24};
    char dir[] = "/tmp/vit_bench_XXXXXX", path[256];
    if (!mkdtemp(dir)) return 1;
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fprintf(f,
            "{\"model_type\": \"qwen3_vl\", \"vision_config\": {\"depth\": %d, \"hidden_size\": %d, \"num_heads\": %d, "
            "\"intermediate_size\": %d, \"out_hidden_size\": %d, \"num_position_embeddings\": 2304, "
            "\"deepstack_visual_indexes\": [",
            s.depth, s.hidden, s.heads, s.ffn, s.out);
    for (int j = 0; j < n_ds; j++) fprintf(f, "%s%d", j ? ", " : "", taps[j]);
    fprintf(f, "]}}\n");
    fclose(f);
    const int max_tensors = 3 + 12 * s.depth + 6 * (1 + n_ds);
    tensor_spec *t = malloc(sizeof *t * (size_t)max_tensors);
    const int n = tower_tensors(&s, n_ds, t);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    const bool written = write_safetensors(path, &s, t, n);
    free(t);
    vit_model *m = NULL;
    thread_pool *pool = NULL;
    tandem_status st = written ? TANDEM_OK : TANDEM_ERR_IO;
    if (!st) st = thread_pool_create(s.threads, &pool);
    char mmproj[300] = "";
    if (!st && s.mmproj) {
        tandem_convert_params cp = tandem_convert_default_params();
        st_set *set = NULL;
        snprintf(mmproj, sizeof mmproj, "%s/mmproj.gguf", dir);
        st = tandem_ftype_parse(s.mmproj, false, &cp.mmproj_ftype);
        if (!st) st = safetensors_open_dir(dir, &set);
        if (!st) st = convert_vl_write_mmproj(dir, set, pool, mmproj, &cp);
        safetensors_close(set);
        if (!st) st = vit_load_gguf(mmproj, &m);
    } else if (!st) {
        st = vit_load(dir, &m);
    }
    if (st) {
        fprintf(stderr, "vit_bench: %s\n", written ? tandem_last_error() : "cannot write the weights");
        return 1;
    }
    /* one image of ~N tokens: a grid of (2·gh) x (2·gw) patches */
    const int gh = (int)sqrt((double)s.tokens), gw = (s.tokens + gh - 1) / gh;
    vision_pixels px = {
        .n_patches = (int64_t)4 * gh * gw, .patch_dim = 1536, .grid_t = 1, .grid_h = 2 * gh, .grid_w = 2 * gw};
    px.pixel_values = malloc(sizeof(float) * (size_t)(px.n_patches * px.patch_dim));
    for (int64_t i = 0; i < px.n_patches * px.patch_dim; i++) px.pixel_values[i] = frand();
    const int64_t tokens = vit_image_tokens(vit_model_config(m), &px), N = px.n_patches;
    float *embeds = malloc(sizeof(float) * (size_t)tokens * (size_t)s.out);
    float *ds = malloc(sizeof(float) * (size_t)tokens * (size_t)s.out * (size_t)(n_ds ? n_ds : 1));
    /* multiply-adds: qkv, proj, fc1, fc2 per patch and block; q·k and p·v per patch pair and head dim; the mergers */
    const double E = s.hidden, W = 4.0 * s.hidden;
    const double macs = s.depth * (N * (4 * E * E + 2 * E * s.ffn) + 2.0 * N * N * E) + 1536.0 * E * N +
                        (1 + n_ds) * tokens * (W * W + W * s.out);
    printf(
        "vit_bench: %d blocks, hidden %d, %d heads, ffn %d, out %d, %s weights%s%s; %lld patches (%d x %d), %lld "
        "tokens; %d threads (kernels %s)\n",
        s.depth, s.hidden, s.heads, s.ffn, s.out, tandem_type_name(s.type), s.mmproj ? " as an mmproj GGUF of " : "",
        s.mmproj ? s.mmproj : "", (long long)N, px.grid_h, px.grid_w, (long long)tokens, s.threads, kernel_isa_name());
    for (int r = 0; r < s.runs; r++) {
        const double t0 = now_ms(), c0 = cpu_ms();
        st = vit_encode(m, pool, &px, 1, embeds, n_ds ? ds : NULL);
        const double ms = now_ms() - t0, cpu = cpu_ms() - c0;
        if (st) {
            fprintf(stderr, "vit_bench: %s\n", tandem_last_error());
            return 1;
        }
        printf("run %d: %.0f ms, %.0f image tokens/s, %.1f GFLOP/s; %.0f ms of CPU time (%.1f GFLOP per CPU second)\n",
               r, ms, tokens / (ms / 1000), 2 * macs / (ms * 1e6), cpu, 2 * macs / (cpu * 1e6));
    }
    free(px.pixel_values);
    free(embeds);
    free(ds);
    vit_free(m);
    thread_pool_free(pool);
    if (mmproj[0]) unlink(mmproj);
    unlink(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
    return 0;
}
