/* test_checkpoint.c — the checkpoint resolver (which file of an HF folder is found, the chat template's sources,
 * config.json with text_config, a safetensors file given for its folder, shards, GGUF) and the tensor-name table
 * (every name of a layer and the globals both ways, unknown names refused), against names written out here. */
#include <jansson.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "names.h"
#include "test.h"
#include "tokenizer.h"

static char tmp_root[1024];
static const char *golden; /* tests/golden */

static const char *tmp_path(const char *rel) {
    static char path[4][2048];
    static int i;
    i = (i + 1) % 4;
    snprintf(path[i], sizeof path[i], "%s/%s", tmp_root, rel);
    return path[i];
}

static void write_text(const char *rel, const char *text) {
    FILE *f = fopen(tmp_path(rel), "wb");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void link_golden(const char *model, const char *file, const char *rel) {
    char target[2048];
    snprintf(target, sizeof target, "%s/models/%s/%s", golden, model, file);
    CHECK(symlink(target, tmp_path(rel)) == 0);
}

/* ---- which files are found ---- */

typedef struct expected_file {
    const char *name;
    size_t offset; /* of its path in checkpoint_files */
} expected_file;

static const expected_file HF_LAYOUT[] = {
    {"config.json", offsetof(checkpoint_files, config)},
    {"model.safetensors", offsetof(checkpoint_files, safetensors)},
    {"model.safetensors.index.json", offsetof(checkpoint_files, safetensors_index)},
    {"generation_config.json", offsetof(checkpoint_files, generation_config)},
    {"tokenizer.json", offsetof(checkpoint_files, tokenizer)},
    {"tokenizer_config.json", offsetof(checkpoint_files, tokenizer_config)},
    {"chat_template.json", offsetof(checkpoint_files, chat_template_json)},
    {"chat_template.jinja", offsetof(checkpoint_files, chat_template_jinja)},
    {"preprocessor_config.json", offsetof(checkpoint_files, preprocessor_config)},
};
enum { N_LAYOUT = sizeof HF_LAYOUT / sizeof HF_LAYOUT[0] };

static const char *field(const checkpoint_files *f, int i) {
    return *(char *const *)((const char *)f + HF_LAYOUT[i].offset);
}

/* Each file alone in a folder: exactly its field is set, to its path; then all of them together. */
static void test_each_file_found_or_absent(void) {
    mkdir(tmp_path("each"), 0700);
    checkpoint_files f;
    CHECK_OK(checkpoint_find(tmp_path("each"), &f));
    CHECK(!f.is_gguf && f.path && !strcmp(f.path, tmp_path("each")));
    for (int i = 0; i < N_LAYOUT; i++) CHECK_MSG(field(&f, i) == NULL, "empty folder: %s found", HF_LAYOUT[i].name);
    checkpoint_files_free(&f);
    char rel[256];
    for (int k = 0; k < N_LAYOUT; k++) {
        snprintf(rel, sizeof rel, "each/%s", HF_LAYOUT[k].name);
        write_text(rel, "{}");
        CHECK_OK(checkpoint_find(tmp_path("each"), &f));
        for (int i = 0; i < N_LAYOUT; i++) {
            if (i == k) CHECK_MSG(field(&f, i) && !strcmp(field(&f, i), tmp_path(rel)), "%s not found", rel);
            else CHECK_MSG(field(&f, i) == NULL, "with only %s: %s found", rel, HF_LAYOUT[i].name);
        }
        checkpoint_files_free(&f);
        if (k < N_LAYOUT - 1) unlink(tmp_path(rel));
    }
    for (int k = 0; k < N_LAYOUT - 1; k++) {
        snprintf(rel, sizeof rel, "each/%s", HF_LAYOUT[k].name);
        write_text(rel, "{}");
    }
    CHECK_OK(checkpoint_find(tmp_path("each"), &f));
    for (int i = 0; i < N_LAYOUT; i++) CHECK_MSG(field(&f, i) != NULL, "all present: %s not found", HF_LAYOUT[i].name);
    checkpoint_files_free(&f);

    /* a file is taken for a GGUF (present or not: opening it says what is wrong) */
    CHECK_OK(checkpoint_find(tmp_path("each/config.json"), &f));
    CHECK(f.is_gguf && !strcmp(f.path, tmp_path("each/config.json")));
    for (int i = 0; i < N_LAYOUT; i++) CHECK(field(&f, i) == NULL);
    checkpoint_files_free(&f);

    /* the tokenizer's files: of the folder, or of the folder of a tokenizer file of any name */
    write_text("each/my-tokenizer.json", "{}");
    CHECK_OK(tokenizer_files_of(tmp_path("each/my-tokenizer.json"), &f));
    CHECK(f.tokenizer && !strcmp(f.tokenizer, tmp_path("each/my-tokenizer.json")));
    CHECK(f.tokenizer_config && !strcmp(f.tokenizer_config, tmp_path("each/tokenizer_config.json")));
    CHECK(f.chat_template_jinja && !strcmp(f.chat_template_jinja, tmp_path("each/chat_template.jinja")));
    checkpoint_files_free(&f);
}

/* The tokenizer's chat template, in transformers' order: chat_template.jinja, else tokenizer_config.json's, else
 * chat_template.json's (a processor's file). */
static void test_chat_template_sources(void) {
    mkdir(tmp_path("tmpl"), 0700);
    link_golden("tied_gqa2", "tokenizer.json", "tmpl/tokenizer.json");
    tandem_tokenizer *tok = NULL;
    const char *expect[] = {NULL, "from-json", "from-config", "from-jinja"};
    for (int step = 0; step < 4; step++) {
        if (step == 1) write_text("tmpl/chat_template.json", "{\"chat_template\": \"from-json\"}");
        if (step == 2) write_text("tmpl/tokenizer_config.json", "{\"chat_template\": \"from-config\"}");
        if (step == 3) write_text("tmpl/chat_template.jinja", "from-jinja");
        CHECK_OK(tandem_tokenizer_load(tmp_path("tmpl"), &tok));
        const char *t = tandem_tokenizer_chat_template(tok);
        CHECK_MSG(expect[step] ? t && !strcmp(t, expect[step]) : t == NULL, "step %d: %s", step, t ? t : "(none)");
        tandem_tokenizer_free(tok);
        tok = NULL;
    }
    unlink(tmp_path("tmpl/tokenizer_config.json"));
    unlink(tmp_path("tmpl/chat_template.jinja"));
    write_text("tmpl/chat_template.json", "{\"chat_template\": 3}");
    CHECK_FAILS(tandem_tokenizer_load(tmp_path("tmpl"), &tok), TANDEM_ERR_FORMAT, "chat_template.json: chat_template");
    tandem_tokenizer_free(tok);
}

/* ---- config.json and text_config ---- */

static bool same_config(const qwen3_config *a, const qwen3_config *b) {
    return a->n_layers == b->n_layers && a->dim == b->dim && a->ffn_dim == b->ffn_dim && a->n_heads == b->n_heads &&
           a->n_kv_heads == b->n_kv_heads && a->head_dim == b->head_dim && a->vocab_size == b->vocab_size &&
           a->context_length == b->context_length && a->rope_theta == b->rope_theta && a->rms_eps == b->rms_eps &&
           a->tied_embeddings == b->tied_embeddings;
}

/* The golden flat config rewritten as Qwen3-VL writes its config.json: the text model under text_config
 * (model_type qwen3_vl_text), tie_word_embeddings at the top level, a vision_config beside it. */
static char *nested_config(const json_t *flat, bool with_vision) {
    json_t *text = json_deep_copy(flat);
    json_object_set_new(text, "model_type", json_string("qwen3_vl_text"));
    json_t *tie = json_incref(json_object_get(text, "tie_word_embeddings"));
    json_object_del(text, "tie_word_embeddings");
    json_t *root = json_pack("{s:s, s:o, s:o}", "model_type", "qwen3_vl", "text_config", text, "tie_word_embeddings",
                             tie);
    if (with_vision) json_object_set_new(root, "vision_config", json_pack("{s:i, s:i}", "depth", 2, "hidden_size", 32));
    char *s = json_dumps(root, JSON_INDENT(1));
    json_decref(root);
    return s;
}

static void test_text_config(void) {
    char flat_path[2048];
    snprintf(flat_path, sizeof flat_path, "%s/models/tied_gqa2/config.json", golden);
    qwen3_config flat, nested;
    CHECK_OK(qwen3_config_from_json(flat_path, &flat));
    json_t *flat_json = NULL;
    CHECK_OK(json_load_path(flat_path, &flat_json));
    if (!flat_json) return;

    /* the same hyperparameters, nested */
    char *text = nested_config(flat_json, false);
    write_text("nested.json", text);
    free(text);
    memset(&nested, 0x5a, sizeof nested);
    CHECK_OK(qwen3_config_from_json(tmp_path("nested.json"), &nested));
    CHECK(same_config(&flat, &nested));
    CHECK(nested.n_layers == 2 && nested.dim == 64 && nested.tied_embeddings);

    /* a folder with it opens and binds like the flat one, with a vision_config too (its text model) */
    mkdir(tmp_path("vl"), 0700);
    link_golden("tied_gqa2", "model.safetensors", "vl/model.safetensors");
    for (int vision = 0; vision < 2; vision++) {
        text = nested_config(flat_json, vision);
        write_text("vl/config.json", text);
        free(text);
        checkpoint ck;
        CHECK_OK(checkpoint_open(tmp_path("vl"), &ck));
        CHECK(same_config(&ck.cfg, &flat) && ck.files.text_config && ck.files.vision_config == (vision == 1));
        qwen3_model m = {0};
        CHECK_OK(checkpoint_bind(&ck, &m));
        CHECK(m.layers && m.cfg.n_layers == 2);
        /* a vision_config without deepstack_visual_indexes: transformers' default taps, 3 of them */
        CHECK(m.cfg.n_deepstack == (vision ? 3 : 0));
        qwen3_model_release(&m);
        checkpoint_close(&ck);
    }

    /* errors name text_config and the field */
    json_t *bad = json_deep_copy(flat_json);
    json_object_del(bad, "hidden_size");
    json_t *root = json_pack("{s:s, s:o}", "model_type", "qwen3_vl", "text_config", bad);
    json_dump_file(root, tmp_path("nested-bad.json"), 0);
    json_decref(root);
    CHECK_FAILS(qwen3_config_from_json(tmp_path("nested-bad.json"), &nested), TANDEM_ERR_FORMAT, "(text_config)");
    CHECK(strstr(tandem_last_error(), "hidden_size") != NULL);
    write_text("nested-bad.json", "{\"model_type\": \"qwen3\", \"text_config\": [1]}");
    CHECK_FAILS(qwen3_config_from_json(tmp_path("nested-bad.json"), &nested), TANDEM_ERR_FORMAT, "text_config");
    /* qwen3_vl_text is the text model of a nested config only */
    json_t *vl_flat = json_deep_copy(flat_json);
    json_object_set_new(vl_flat, "model_type", json_string("qwen3_vl_text"));
    json_dump_file(vl_flat, tmp_path("vl-flat.json"), 0);
    json_decref(vl_flat);
    CHECK_FAILS(qwen3_config_from_json(tmp_path("vl-flat.json"), &nested), TANDEM_ERR_UNSUPPORTED, "qwen3_vl_text");
    json_decref(flat_json);
}

/* ---- opening: the errors tandem_model_load gives, shards, GGUF ---- */

static void test_open(void) {
    char path[2048];
    checkpoint ck;
    snprintf(path, sizeof path, "%s/models/tied_gqa2/model.safetensors", golden);
    CHECK_FAILS(checkpoint_open(path, &ck), TANDEM_ERR_INVALID_ARG, "is a safetensors file: give the folder");
    CHECK(strstr(tandem_last_error(), path) != NULL);

    mkdir(tmp_path("tok-only"), 0700);
    link_golden("tied_gqa2", "tokenizer.json", "tok-only/tokenizer.json");
    CHECK_FAILS(checkpoint_open(tmp_path("tok-only"), &ck), TANDEM_ERR_IO, "no config.json in this folder");
    CHECK(strstr(tandem_last_error(), "tokenizer-only") && strstr(tandem_last_error(), tmp_path("tok-only")));
    mkdir(tmp_path("empty"), 0700);
    CHECK_FAILS(checkpoint_open(tmp_path("empty"), &ck), TANDEM_ERR_IO, "no config.json in this folder");
    CHECK(strstr(tandem_last_error(), "Hugging Face checkpoint folder") && strstr(tandem_last_error(), "empty"));
    mkdir(tmp_path("no-weights"), 0700);
    link_golden("tied_gqa2", "config.json", "no-weights/config.json");
    CHECK_FAILS(checkpoint_open(tmp_path("no-weights"), &ck), TANDEM_ERR_IO,
                "no model.safetensors or model.safetensors.index.json");
    CHECK(strstr(tandem_last_error(), "no-weights") != NULL);
    CHECK(checkpoint_open(tmp_path("does-not-exist"), &ck) == TANDEM_ERR_IO);

    /* shards: the index wins, every shard is mapped, and the weights bind */
    snprintf(path, sizeof path, "%s/models/sharded", golden);
    CHECK_OK(checkpoint_open(path, &ck));
    CHECK(ck.files.safetensors_index && !ck.files.safetensors && ck.st && ck.st->n_shards == 3 && !ck.gguf);
    CHECK(ck.config_json && json_is_object(ck.config_json) && !ck.files.text_config && !ck.files.vision_config);
    CHECK(ck.files.tokenizer && ck.files.tokenizer_config && ck.files.generation_config &&
          !ck.files.chat_template_jinja);
    qwen3_model m = {0};
    CHECK_OK(checkpoint_bind(&ck, &m));
    CHECK(m.layers != NULL);
    qwen3_model_release(&m);
    checkpoint_close(&ck);

    /* a GGUF: the same config as its HF folder */
    qwen3_config hf;
    snprintf(path, sizeof path, "%s/models/tied_gqa2/config.json", golden);
    CHECK_OK(qwen3_config_from_json(path, &hf));
    snprintf(path, sizeof path, "%s/models/tied_gqa2/model-f32.gguf", golden);
    CHECK_OK(checkpoint_open(path, &ck));
    CHECK(ck.files.is_gguf && ck.gguf && !ck.st && !ck.config_json && !ck.files.config && !ck.files.tokenizer);
    CHECK(ck.cfg.n_layers == hf.n_layers && ck.cfg.dim == hf.dim && ck.cfg.vocab_size == hf.vocab_size &&
          ck.cfg.tied_embeddings == hf.tied_embeddings);
    CHECK_OK(checkpoint_bind(&ck, &m));
    qwen3_model_release(&m);
    checkpoint_close(&ck);
    checkpoint_close(&ck); /* twice: the struct is zeroed */
}

/* ---- the name table ---- */

/* Written out here as llama.cpp's convert_hf_to_gguf.py maps them (layer 7). */
static const char *const LAYER7[][2] = {
    {"blk.7.attn_norm.weight", "model.layers.7.input_layernorm.weight"},
    {"blk.7.attn_q.weight", "model.layers.7.self_attn.q_proj.weight"},
    {"blk.7.attn_k.weight", "model.layers.7.self_attn.k_proj.weight"},
    {"blk.7.attn_v.weight", "model.layers.7.self_attn.v_proj.weight"},
    {"blk.7.attn_q_norm.weight", "model.layers.7.self_attn.q_norm.weight"},
    {"blk.7.attn_k_norm.weight", "model.layers.7.self_attn.k_norm.weight"},
    {"blk.7.attn_output.weight", "model.layers.7.self_attn.o_proj.weight"},
    {"blk.7.ffn_norm.weight", "model.layers.7.post_attention_layernorm.weight"},
    {"blk.7.ffn_gate.weight", "model.layers.7.mlp.gate_proj.weight"},
    {"blk.7.ffn_up.weight", "model.layers.7.mlp.up_proj.weight"},
    {"blk.7.ffn_down.weight", "model.layers.7.mlp.down_proj.weight"},
};
static const char *const GLOBALS[][2] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};

static void check_pair(const char *gguf, const char *hf, int layer) {
    char out[128];
    CHECK_MSG(qwen3_tensor_rename(gguf, NAMING_GGUF, out, sizeof out) && !strcmp(out, hf), "%s -> %s", gguf, out);
    CHECK_MSG(qwen3_tensor_rename(hf, NAMING_HF, out, sizeof out) && !strcmp(out, gguf), "%s -> %s", hf, out);
    qwen3_tensor t, t2;
    int l = -2, l2 = -2;
    CHECK(qwen3_tensor_parse(gguf, NAMING_GGUF, &t, &l) && l == layer);
    CHECK(qwen3_tensor_parse(hf, NAMING_HF, &t2, &l2) && l2 == layer && t2 == t);
    CHECK(qwen3_tensor_in_block(t) == (layer >= 0));
    /* and back from the kind */
    CHECK(qwen3_tensor_name(t, layer, NAMING_GGUF, out, sizeof out) && !strcmp(out, gguf));
    CHECK(qwen3_tensor_name(t, layer, NAMING_HF, out, sizeof out) && !strcmp(out, hf));
    CHECK(qwen3_layer_of_name(gguf, NAMING_GGUF) == layer && qwen3_layer_of_name(hf, NAMING_HF) == layer);
    /* a name in one naming is not a name in the other */
    CHECK(!qwen3_tensor_parse(gguf, NAMING_HF, &t, &l) && !qwen3_tensor_parse(hf, NAMING_GGUF, &t, &l));
}

static void test_names(void) {
    bool seen[QWEN3_N_TENSORS] = {false};
    for (size_t i = 0; i < sizeof LAYER7 / sizeof LAYER7[0]; i++) {
        check_pair(LAYER7[i][0], LAYER7[i][1], 7);
        qwen3_tensor t;
        int l;
        if (qwen3_tensor_parse(LAYER7[i][0], NAMING_GGUF, &t, &l)) seen[t] = true;
    }
    for (size_t i = 0; i < sizeof GLOBALS / sizeof GLOBALS[0]; i++) {
        check_pair(GLOBALS[i][0], GLOBALS[i][1], -1);
        qwen3_tensor t;
        int l;
        if (qwen3_tensor_parse(GLOBALS[i][0], NAMING_GGUF, &t, &l)) {
            seen[t] = true;
            CHECK(!strcmp(qwen3_global_name(t, NAMING_GGUF), GLOBALS[i][0]));
            CHECK(!strcmp(qwen3_global_name(t, NAMING_HF), GLOBALS[i][1]));
        }
    }
    for (int t = 0; t < QWEN3_N_TENSORS; t++) CHECK_MSG(seen[t], "tensor kind %d has no name in the reference", t);
    CHECK(QWEN3_BLOCK_TENSORS == 11);
    check_pair("blk.0.ffn_up.weight", "model.layers.0.mlp.up_proj.weight", 0);
    check_pair("blk.123.attn_k.weight", "model.layers.123.self_attn.k_proj.weight", 123);

    /* unknown names are reported (false), never mapped to something */
    static const char *const UNKNOWN_HF[] = {
        "model.layers.7.self_attn.q_proj.bias",
        "model.layers.7.mlp.gate.weight",
        "model.layers.07.mlp.up_proj.weight",
        "model.layers.-1.mlp.up_proj.weight",
        "model.layers..mlp.up_proj.weight",
        "model.layers.7",
        "model.rotary_emb.inv_freq",
        "model.visual.blocks.0.attn.qkv.weight",
        "model.language_model.embed_tokens.weight",
        "lm_head.weight.x",
        "",
        "model.layers.7.input_layernorm.weight ",
    };
    static const char *const UNKNOWN_GGUF[] = {"blk.7.attn_qkv.weight", "blk.7.attn_q",
                                               "blk.x.attn_q.weight",   "token_embd",
                                               "blk.7.output.weight",   "output_norm.bias"};
    char out[128] = "untouched";
    qwen3_tensor t;
    int l;
    for (size_t i = 0; i < sizeof UNKNOWN_HF / sizeof *UNKNOWN_HF; i++) {
        CHECK_MSG(!qwen3_tensor_parse(UNKNOWN_HF[i], NAMING_HF, &t, &l), "'%s' parsed", UNKNOWN_HF[i]);
        CHECK(!qwen3_tensor_rename(UNKNOWN_HF[i], NAMING_HF, out, sizeof out));
    }
    for (size_t i = 0; i < sizeof UNKNOWN_GGUF / sizeof *UNKNOWN_GGUF; i++) {
        CHECK_MSG(!qwen3_tensor_parse(UNKNOWN_GGUF[i], NAMING_GGUF, &t, &l), "'%s' parsed", UNKNOWN_GGUF[i]);
        CHECK(!qwen3_tensor_rename(UNKNOWN_GGUF[i], NAMING_GGUF, out, sizeof out));
    }
    /* a name that does not fit the buffer is refused, not cut */
    CHECK(!qwen3_tensor_rename("blk.7.attn_q.weight", NAMING_GGUF, out, 20));
    CHECK(!qwen3_tensor_name(QWEN3_ATTN_Q, 7, NAMING_GGUF, out, strlen("blk.7.attn_q.weight")));
    CHECK(qwen3_tensor_name(QWEN3_ATTN_Q, 7, NAMING_GGUF, out, strlen("blk.7.attn_q.weight") + 1));
    /* the layer of any block name, even one the table does not know (the loader reports layers beyond the config) */
    CHECK(qwen3_layer_of_name("blk.12.something_new", NAMING_GGUF) == 12);
    CHECK(qwen3_layer_of_name("model.layers.3.mlp.experts.0.weight", NAMING_HF) == 3);
    CHECK(qwen3_layer_of_name("model.norm.weight", NAMING_HF) == -1 && qwen3_layer_of_name("blk.3", NAMING_GGUF) == -1);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s GOLDEN_DIR\n", argv[0]);
        return 2;
    }
    static char golden_abs[4096]; /* symlinks in the scratch folder need an absolute target */
    golden = realpath(argv[1], golden_abs) ? golden_abs : argv[1];
    snprintf(tmp_root, sizeof tmp_root, "%s/tandem_ckpt_XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return 2;
    }
    test_each_file_found_or_absent();
    test_chat_template_sources();
    test_text_config();
    test_open();
    test_names();
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    return test_summary();
}
