"""tiny_tokenizer.py — the tiny byte-level BPE tokenizer shared by tandem's tiny golden models.

Built like Qwen3's tokenizer (NFC normalizer, qwen2 Split regex + ByteLevel pre-tokenizer, ByteLevel decoder
and post-processor, BPE without unk/byte-fallback) but trained on the small text below to ~400 regular tokens;
the 26 Qwen3 added tokens follow with the same contents and flags as in Qwen3 (ids N_REGULAR … N_REGULAR+25).

Only `build_tokenizer()` needs the `tokenizers` package; the file writers need nothing but the stdlib.
Used by make_golden.py.
"""
import json
import os

# The qwen2 pre-tokenizer pattern (HF PRETOKENIZE_REGEX / Qwen3 tokenizer.json).
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
                 r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

N_REGULAR = 400  # byte alphabet (256) + 144 merges

# (content, special) in Qwen3 id order (151643 … 151668 there).
QWEN3_ADDED_TOKENS = [
    ("<|endoftext|>", True), ("<|im_start|>", True), ("<|im_end|>", True),
    ("<|object_ref_start|>", True), ("<|object_ref_end|>", True), ("<|box_start|>", True),
    ("<|box_end|>", True), ("<|quad_start|>", True), ("<|quad_end|>", True),
    ("<|vision_start|>", True), ("<|vision_end|>", True), ("<|vision_pad|>", True),
    ("<|image_pad|>", True), ("<|video_pad|>", True),
    ("<tool_call>", False), ("</tool_call>", False), ("<|fim_prefix|>", False), ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False), ("<|fim_pad|>", False), ("<|repo_name|>", False), ("<|file_sep|>", False),
    ("<tool_response>", False), ("</tool_response>", False), ("<think>", False), ("</think>", False),
]

# A short ChatML template (the Qwen2.5-style core of Qwen3's; no tools, no thinking handling).
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Training text, written for this file (English prose, a little code, numbers and punctuation).
TRAINING_TEXT = r"""
The small model reads one token at a time and writes the next one. It keeps what it has seen in a cache,
so the second step is much cheaper than the first. When the cache is full, the runtime stops and reports
that the context has no more room. A good runtime never copies the weights: it maps the file into memory
and reads the numbers where they lie.

Every layer of the model does the same two things. First it looks back over the sequence with attention,
then it mixes each position on its own with a small feed-forward network. Between the two there is a
residual connection, and before each of them the values are scaled by a root-mean-square norm. The last
norm feeds the output projection, which gives one score for every token in the vocabulary.

To test the runtime we build tiny models with random weights. They say nothing useful, but they are
exact: the same input gives the same scores on every machine, and a correct program must agree with the
reference to four or five decimal places. If it does not, we compare the hidden states layer by layer
and find the first place where the numbers drift apart.

Quantized files store the weights in blocks of thirty-two values. Each block has a scale and a list of
small integers; the reader multiplies them back together. The eight-bit format keeps almost all of the
detail, while the four-bit format is smaller and noisier. Both are fine for a test, as long as the
reference is computed from the same numbers the file holds.

The tokenizer splits text into pieces with a regular expression, turns each byte into a printable
character, and then merges the most frequent pairs, in the order they were learned. Numbers are split one
digit at a time: 2025, 1024, 4096 and 151936 all become single digits. Words keep the space in front of
them, so " the" and "the" are different tokens. Punctuation such as commas, dots, colons; brackets (like
these) and quotes "like these" is kept apart from the words around it.

Questions and answers:
Q: What is the capital of France? A: Paris.
Q: How many days are there in a week? A: Seven.
Q: What do you call a program that runs other programs? A: An interpreter, or a runtime.
Q: Is this text long enough to train a tokenizer? A: For a tiny one, yes.

def greedy(model, prompt, steps):
    tokens = list(prompt)
    cache = model.new_cache()
    logits = model.forward(tokens, cache)
    for _ in range(steps):
        next_id = int(logits[-1].argmax())
        tokens.append(next_id)
        logits = model.forward([next_id], cache)
    return tokens

class Counter:
    def __init__(self, start=0):
        self.value = start

    def add(self, amount=1):
        self.value += amount
        return self.value

for i in range(10):
    if i % 2 == 0:
        print("even", i)
    else:
        print("odd", i)

static float rms_norm(float *y, const float *x, const float *w, int n, float eps) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += (double)x[i] * x[i];
    float scale = 1.0f / sqrtf((float)(sum / n) + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
    return scale;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE\n", argv[0]);
        return 1;
    }
    return run(argv[1]) == 0 ? 0 : 2;
}

{"role": "user", "content": "Write a short poem about the sea."}
{"role": "assistant", "content": "The sea is wide, the sea is deep; it sings the shore to sleep."}

The weather was cold in the morning and warm in the afternoon. We walked along the river, talked about
the books we had read this year, and stopped for tea at a little place near the bridge. It's the kind of
day you'd like to remember: nothing happened, and that was the best part. They've said they'll come back
next spring; we're sure they'd enjoy it again.

Numbers and units: 3.14, 2.718, 42, 100%, 7 km, 12:30, 2025-06-01, $19.99, x = y + 1, a[i] = b[j] * 2;
Mixed text: café, naïve, résumé, Zürich, 東京, 北京, 😀 and — dashes — too.
"""


def build_tokenizer():
    """Trains the BPE and adds the Qwen3 added tokens; returns a tokenizers.Tokenizer (deterministic)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, fuse_unk=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=N_REGULAR, min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    # Train on lines (the pre-tokenizer never lets a piece cross a newline-separated word anyway).
    tok.train_from_iterator(TRAINING_TEXT.splitlines(keepends=True), trainer=trainer)
    if tok.get_vocab_size(with_added_tokens=False) != N_REGULAR:
        raise RuntimeError(f"BPE training gave {tok.get_vocab_size(with_added_tokens=False)} tokens, "
                           f"expected {N_REGULAR}: make TRAINING_TEXT longer")
    specials = [AddedToken(c, single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)
                for c, s in QWEN3_ADDED_TOKENS if s]
    others = [AddedToken(c, single_word=False, lstrip=False, rstrip=False, normalized=False, special=False)
              for c, s in QWEN3_ADDED_TOKENS if not s]
    tok.add_special_tokens(specials)
    tok.add_tokens(others)
    for i, (c, _) in enumerate(QWEN3_ADDED_TOKENS):
        if tok.token_to_id(c) != N_REGULAR + i:
            raise RuntimeError(f"added token {c} got id {tok.token_to_id(c)}, expected {N_REGULAR + i}")
    return tok


def token_id(content):
    for i, (c, _) in enumerate(QWEN3_ADDED_TOKENS):
        if c == content:
            return N_REGULAR + i
    raise KeyError(content)


ENDOFTEXT_ID = N_REGULAR + 0
IM_END_ID = N_REGULAR + 2


def tokenizer_config(model_max_length):
    """tokenizer_config.json in the layout of Qwen3's (post-trained: eos <|im_end|>)."""
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(N_REGULAR + i): {"content": c, "lstrip": False, "normalized": False, "rstrip": False,
                                 "single_word": False, "special": s}
            for i, (c, s) in enumerate(QWEN3_ADDED_TOKENS)
        },
        "additional_special_tokens": [c for c, s in QWEN3_ADDED_TOKENS[1:] if s],
        "bos_token": None,
        "chat_template": CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": model_max_length,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def generation_config():
    return {
        "bos_token_id": ENDOFTEXT_ID,
        "do_sample": False,
        "eos_token_id": [IM_END_ID, ENDOFTEXT_ID],
        "pad_token_id": ENDOFTEXT_ID,
    }


def write_json(path, obj):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def write_tokenizer_files(tok_json_text, folder, model_max_length):
    """Writes tokenizer.json (given as text), tokenizer_config.json and generation_config.json."""
    with open(os.path.join(folder, "tokenizer.json"), "w", encoding="utf-8", newline="\n") as f:
        f.write(tok_json_text)
    write_json(os.path.join(folder, "tokenizer_config.json"), tokenizer_config(model_max_length))
    write_json(os.path.join(folder, "generation_config.json"), generation_config())
