/* train.h — full-parameter training of the Qwen3 architecture in FP32: parameters, gradients, Adam moments and
 * saved activations as single blocks (llm.c), the forward/backward pass, AdamW, checkpoints and GGUF export.
 * Depends on model (config, weight binding), kernels, io, tokenizer and base. */
#ifndef TANDEM_TRAIN_H
#define TANDEM_TRAIN_H

#include "checkpoint.h"
#include "names.h"
#include "qwen3.h"
#include "train_ops.h"

/* One parameter tensor of the model, in GGUF order (token_embd, blk.0 … blk.L-1, output_norm, output). */
typedef struct train_tensor {
    char name[64];      /* GGUF name, e.g. "blk.0.attn_q.weight" */
    char hf_name[96];   /* Hugging Face name, e.g. "model.layers.0.self_attn.q_proj.weight" */
    int32_t n_dims;     /* 1 (norm vectors) or 2 (matrices) */
    int64_t shape[2];   /* PyTorch order (rows = out, cols = in) */
    size_t offset;      /* into the parameter block, in floats */
    size_t numel;
    bool decay;         /* AdamW weight decay applies (matrices; never norms) */
} train_tensor;

/* Pointers into one block (parameters, gradients, or an Adam moment), per tensor. */
typedef struct train_layer_weights {
    float *input_layernorm;           /* (dim) */
    float *q_proj;                    /* (n_heads*head_dim, dim) */
    float *k_proj;                    /* (n_kv_heads*head_dim, dim) */
    float *v_proj;                    /* (n_kv_heads*head_dim, dim) */
    float *q_norm;                    /* (head_dim) */
    float *k_norm;                    /* (head_dim) */
    float *o_proj;                    /* (dim, n_heads*head_dim) */
    float *post_attention_layernorm;  /* (dim) */
    float *gate_proj;                 /* (ffn_dim, dim) */
    float *up_proj;                   /* (ffn_dim, dim) */
    float *down_proj;                 /* (dim, ffn_dim) */
} train_layer_weights;

typedef struct train_weights {
    float *embed_tokens;           /* (vocab_size, dim) */
    train_layer_weights *layers;   /* (n_layers) */
    float *norm;                   /* (dim) */
    float *lm_head;                /* (vocab_size, dim); == embed_tokens when tied */
} train_weights;

/* Activations saved by the forward pass for the backward pass, one slice per layer; N = B·T. */
typedef struct train_acts {
    float *res;        /* (n_layers+1, N, dim) residual stream entering each layer; last = leaving the stack */
    float *res_mid;    /* (n_layers, N, dim) residual after the attention block */
    float *ln1;        /* (n_layers, N, dim) input_layernorm output */
    float *ln1_rstd;   /* (n_layers, N) */
    float *q_raw;      /* (n_layers, N, n_heads*head_dim) q_proj output, before QK-norm */
    float *k_raw;      /* (n_layers, N, n_kv_heads*head_dim) */
    float *v;          /* (n_layers, N, n_kv_heads*head_dim) */
    float *q_rstd;     /* (n_layers, N*n_heads) QK-norm statistics */
    float *k_rstd;     /* (n_layers, N*n_kv_heads) */
    float *q_rot;      /* (n_layers, N, n_heads*head_dim) after QK-norm and RoPE */
    float *k_rot;      /* (n_layers, N, n_kv_heads*head_dim) */
    float *att;        /* (n_layers, B, n_heads, T, T) attention probabilities */
    float *atty;       /* (n_layers, N, n_heads*head_dim) attention output, concatenated heads */
    float *ln2;        /* (n_layers, N, dim) post_attention_layernorm output */
    float *ln2_rstd;   /* (n_layers, N) */
    float *gate;       /* (n_layers, N, ffn_dim) */
    float *up;         /* (n_layers, N, ffn_dim) */
    float *hmlp;       /* (n_layers, N, ffn_dim) silu(gate)·up */
    float *lnf;        /* (N, dim) final norm output */
    float *lnf_rstd;   /* (N) */
    float *logits;     /* (N, vocab_size); the backward pass turns it into dlogits in place */
    float *losses;     /* (N) per-position cross-entropy */
    float *kl_losses;  /* (N) per-position KL to the teacher (distillation) */
    float *zrow;       /* (vocab_size) one row of logits, kept while its gradient is written over it */
    /* backward scratch, reused by every layer */
    float *dres;       /* (N, dim) gradient of the residual stream */
    float *dln;        /* (N, dim) */
    float *branch;     /* (N, dim) output of o_proj / down_proj before the residual add (forward) */
    float *dq;         /* (N, n_heads*head_dim) */
    float *dq2;        /* (N, n_heads*head_dim) */
    float *dk;         /* (N, n_kv_heads*head_dim) */
    float *dk2;        /* (N, n_kv_heads*head_dim) */
    float *dv;         /* (N, n_kv_heads*head_dim) */
    float *datty;      /* (N, n_heads*head_dim) */
    float *datt;       /* (B, n_heads, T, T) */
    float *dgate;      /* (N, ffn_dim) */
    float *dup;        /* (N, ffn_dim) */
    float *dh;         /* (N, ffn_dim) */
} train_acts;

typedef struct train_model {
    qwen3_config cfg;
    train_tensor *tensors;   /* (n_tensors) */
    int32_t n_tensors;
    size_t n_params;         /* floats in each of params, grads, adam_m, adam_v */
    float *params, *grads, *adam_m, *adam_v;  /* one block each, laid out by tensors[] */
    train_weights w, g;      /* named views of params and grads */
    float *inv_freq;         /* (head_dim/2) rotary frequencies */
    int32_t max_B, max_T;    /* activation capacity */
    train_acts a;
    void *acts_block;
    /* the last forward pass */
    int32_t B, T;
    const int32_t *inputs, *targets;  /* borrowed (B, T) until backward */
    int32_t n_counted;                /* non-ignored targets */
    const struct train_teacher *teacher;  /* borrowed until backward, or NULL */
    int32_t n_kl;                     /* positions with a teacher distribution */
    float loss_scale;                 /* backward differentiates loss_scale · loss (1; 1/A when accumulating A batches) */
    thread_pool *pool;                /* borrowed: the threads of the pass and the optimiser; NULL = the caller's */
} train_model;

/* A teacher's top-k next-token logits per position, for distillation: loss = (1 − kl_weight)·CE + kl_weight·KL,
 * each a mean (CE over counted targets, KL over positions whose first teacher id is ≥ 0). */
typedef struct train_teacher {
    const int32_t *ids;     /* (B, T, K) top-k token ids; −1 marks an unused slot */
    const float *logits;    /* (B, T, K) the teacher's logits for those ids */
    int32_t K;              /* 1 … TRAIN_MAX_TOPK */
    float temp;             /* softmax temperature of both distributions */
    float kl_weight;        /* 0 … 1 */
} train_teacher;

/* Allocates parameters (zeroed), gradients, moments and activations for batches up to max_B × max_T.
 * cfg is checked (dims positive, heads divisible, head_dim even). */
tandem_status train_model_init(train_model *m, const qwen3_config *cfg, int32_t max_B, int32_t max_T);
void train_model_free(train_model *m);  /* accepts a zeroed or half-built model */

/* The counter-based random source of initialisation (and of anything stochastic later); saved in checkpoints. */
typedef struct train_rng { uint64_t state; } train_rng;
uint64_t train_rng_next(train_rng *r);
float train_rng_normal(train_rng *r);
/* HF _init_weights: matrices and embeddings ~ N(0, std), norm weights 1. */
void train_model_init_random(train_model *m, train_rng *rng, float std);
/* Copies (dequantizing to f32) every weight of a loaded model whose config equals m->cfg. */
tandem_status train_model_copy_from(train_model *m, const qwen3_model *src, const char *path);

/* ---- the pass ---- */

/* Forward over inputs (B, T) (B ≤ max_B, T ≤ max_T). With targets (B, T) (negative = ignored) returns the mean
 * cross-entropy over counted targets; without, 0 and only logits. inputs/targets stay borrowed until backward. */
float train_forward(train_model *m, const int32_t *inputs, const int32_t *targets, int32_t B, int32_t T);
/* The same with a teacher (may be NULL; targets may then be NULL with kl_weight 1): returns the mixed loss above. */
float train_forward_distill(train_model *m, const int32_t *inputs, const int32_t *targets,
                            const train_teacher *teacher, int32_t B, int32_t T);
void train_zero_grad(train_model *m);
/* Accumulates into grads the gradient of the mean loss of the last forward (which had targets). */
void train_backward(train_model *m);

/* ---- optimisation ---- */

typedef struct train_adamw {
    float lr, beta1, beta2, eps, weight_decay;
} train_adamw;
/* Global L2 norm of all gradients; if above max_norm (> 0) scales them by max_norm / (norm + 1e-6) as
 * torch.nn.utils.clip_grad_norm_. Returns the norm before clipping. */
float train_clip_grad_norm(train_model *m, float max_norm);
/* One AdamW step (torch.optim.AdamW: decoupled decay p −= lr·wd·p on tensors with decay; bias-corrected
 * moments); step is 1 for the first update. */
void train_adamw_update(train_model *m, const train_adamw *opt, int64_t step);
/* Linear warm-up over `warmup` steps to lr_max, then cosine decay to lr_min at step `total`; step is 0-based. */
float train_lr_schedule(int64_t step, int64_t warmup, int64_t total, float lr_max, float lr_min);

/* ---- checkpoints (weights + Adam moments + step + RNG + data position), written to a temp file + rename ---- */

typedef struct train_progress {
    int64_t step;        /* completed optimiser steps */
    uint64_t rng_state;
    int64_t data_pos;    /* next token offset of the training loader */
    uint64_t run_hash;   /* hash of the options that must match on resume */
} train_progress;
tandem_status train_checkpoint_save(const train_model *m, const train_progress *p, const char *path);
/* Reads a checkpoint into m (same config and sizes, else TANDEM_ERR_MISMATCH naming the field). */
tandem_status train_checkpoint_load(train_model *m, train_progress *p, const char *path);
/* Fails now, not after the training, if no file can be created next to path (missing folder, no permission);
 * `what` names the file in the message ("output", "checkpoint"). */
tandem_status train_check_writable(const char *path, const char *what);
/* FNV-1a over n bytes, continuing from h (start: 0xCBF29CE484222325): what a resumed run must share with the one
 * that wrote its checkpoint. */
uint64_t train_fnv1a(uint64_t h, const void *data, size_t n);

/* ---- export ---- */

/* Writes m as a Qwen3 GGUF (tensor names, shapes and qwen3.* metadata that config.c / weights.c load):
 * matrices as `type` (F32, F16 or BF16; norms always F32). tokenizer_source: a GGUF whose tokenizer.* keys are
 * copied, or a tokenizer.json folder/file converted to tokenizer.ggml.* keys; NULL writes no tokenizer. */
tandem_status train_export_gguf(const train_model *m, const char *path, tandem_type type, const char *name,
                                const char *tokenizer_source);

/* tokenizer.* keys: copied from a GGUF, or converted from a tokenizer.json folder/file (padded to vocab_size). */
tandem_status train_write_tokenizer(gguf_writer *w, const char *source, int32_t vocab_size);
/* general.file_type (llama.cpp LlamaFileType) of a file whose matrices are mostly of type t. */
uint32_t train_gguf_file_type(tandem_type t);

/* The whole file into a malloc'd buffer (*out, *len; may be empty). */
tandem_status train_read_text(const char *path, char **out, size_t *len);

/* ---- samples (train_data.c) ---- */

/* Whole samples packed into windows: window w's inputs (T) and targets (T; −1 = not counted). */
typedef struct train_windows {
    int32_t *inputs, *targets; /* (n, T) */
    int64_t n;
    int T;
} train_windows;
/* JSONL data (path names it in messages): each line {"prompt": s, "completion": s} (only the completion's tokens
 * are targets) or {"text": s} (every token but the first); both parts tokenized with special tokens. Samples are
 * packed in file order into windows of T+1 tokens, never across two (a longer one keeps its last T+1 tokens); the
 * rest of a window is pad_id with no targets. */
tandem_status train_windows_from_jsonl(const char *path, const char *data, size_t len, const tandem_tokenizer *tok,
                                       int T, int32_t pad_id, train_windows *out);
void train_windows_free(train_windows *w);
/* order: a permutation of 0..n−1 for pass `pass` over the windows, from seed. */
void train_windows_order(int64_t *order, int64_t n, uint64_t seed, int64_t pass);

/* ---- depth pruning (prune.c) ---- */

/* dist_sum[l·L + n−1] += Σ_t arccos(cos(h_l[t], h_{l+n}[t])) / π for every block (l, n), l+n ≤ L.
 * states (L+1, n_tok, dim): the residual stream entering each layer, last = leaving the final layer;
 * norms: scratch of (L+1)·n_tok doubles. */
void prune_block_distances(double *dist_sum, const float *states, int L, int n_tok, int dim, double *norms);

/* ---- a model opened for its weights (GGUF file or HF folder), as training init or pruning source ---- */

typedef struct model_source {
    gguf_file *gguf;    /* one of gguf / st is set */
    st_set *st;
    qwen3_model model;  /* config + weights bound to the maps */
} model_source;
tandem_status model_source_open(model_source *s, const char *path);
void model_source_close(model_source *s);  /* accepts a zeroed struct */

/* ---- a teacher for online distillation (teacher.c) ---- */

typedef struct train_teacher_model {
    model_source src;
    thread_pool *pool;
    qwen3_kv_cache *cache;  /* n_ctx = T: one sequence at a time */
    qwen3_scratch *scratch; /* n_batch = T */
    float *logits;        /* (T, vocab_size) one sequence's logits */
    int32_t *ids;         /* (B, T, K) top-k ids of the last batch */
    float *top;           /* (B, T, K) their logits */
    int32_t K;
} train_teacher_model;
/* Opens the teacher (same vocab_size as the student, else TANDEM_ERR_MISMATCH) for batches up to B × T. */
tandem_status train_teacher_open(train_teacher_model *t, const char *path, const qwen3_config *student, int B, int T,
                                 int K, int n_threads);
void train_teacher_close(train_teacher_model *t);  /* accepts a zeroed struct */
/* The teacher's top-K logits at every position of inputs (B, T) into t->ids / t->top, best first (top_k_f32). */
void train_teacher_run(train_teacher_model *t, const int32_t *inputs, int B, int T);

#endif
