"""test_tokenizer_gguf.py — the GGUF tokenizer path end to end: a vocab-only GGUF written by gguf-py from the real
Qwen3 tokenizer.json, tokenized by `tandem tokenize -m X.gguf --text T --json`, must give Hugging Face's ids.
The CLI and the tokenizer folder come from conftest's fixtures (tandem_bin, qwen3_tokenizer_dir).
"""
import json
import os

import pytest
from qwen3_gguf import byte_to_unicode

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests/golden/tokenizer/qwen3_corpus.jsonl")

# Corpus lines run through the CLI (one process each): languages, emoji, code, whitespace, special tokens, NFC.
CASES = ["english", "contractions_upper", "chinese", "japanese", "korean", "arabic", "hindi", "emoji_zwj",
         "emoji_flags", "code_python", "code_crlf", "spaces_runs", "long_digits", "nfc_decomposed", "ws_nbsp",
         "ws_nel", "ws_mongolian_space_bang", "special_chat", "special_think", "special_tool", "long_text"]

N_VOCAB_ROWS = 151936  # Qwen3's embedding rows: ids past the tokenizer are [PADn] fillers, as llama.cpp writes them


def write_vocab_gguf(path, tok_dir, model="gpt2", pre="qwen2"):
    """Writes the tokenizer the way llama.cpp's converter does (tokens in byte-level form, added tokens as text,
    CONTROL for special or <|...|>-shaped added tokens, USER_DEFINED for the others, UNUSED [PADn] fillers)."""
    import gguf

    with open(os.path.join(tok_dir, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    with open(os.path.join(tok_dir, "tokenizer_config.json"), encoding="utf-8") as f:
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
def vocab_gguf(tmp_path_factory, qwen3_tokenizer_dir):
    path = tmp_path_factory.mktemp("tok") / "qwen3-vocab.gguf"
    write_vocab_gguf(path, qwen3_tokenizer_dir)
    return path


@pytest.fixture(scope="module")
def corpus():
    with open(CORPUS, encoding="utf-8") as f:
        return {c["name"]: c for c in map(json.loads, f) if "text" in c}


def tandem_tokenize(run_tandem, model, text, *extra):
    return json.loads(run_tandem("tokenize", "-m", model, "--text", text, "--json", *extra).stdout.splitlines()[-1])["ids"]


@pytest.mark.parametrize("name", CASES)
def test_gguf_ids_match_hf(run_tandem, vocab_gguf, corpus, name):
    case = corpus[name]
    assert tandem_tokenize(run_tandem, vocab_gguf, case["text"]) == case["ids"]


def test_gguf_matches_live_hf(run_tandem, vocab_gguf, qwen3_tokenizer_dir):
    """A few strings not in the corpus, against the installed tokenizers package itself."""
    tokenizers = pytest.importorskip("tokenizers")
    hf = tokenizers.Tokenizer.from_file(os.path.join(qwen3_tokenizer_dir, "tokenizer.json"))
    for text in ["Tokenizers split 12345 digits one by one.", "  \t\u3000mixed\u00a0spaces\n\n",
                 "<|im_start|>assistant\n<think>\n\n</think>\n\nOK.<|im_end|>", "caf\u0065\u0301 na\u0308ive"]:
        assert tandem_tokenize(run_tandem, vocab_gguf, text) == hf.encode(text, add_special_tokens=False).ids, text


def test_gguf_unsupported_model_names_key(run_tandem, qwen3_tokenizer_dir, tmp_path):
    path = tmp_path / "llama-vocab.gguf"
    write_vocab_gguf(path, qwen3_tokenizer_dir, model="llama")
    r = run_tandem("tokenize", "-m", path, "--text", "hi", "--json", check=False)
    assert r.returncode != 0
    assert "tokenizer.ggml.model" in r.stderr and "llama-vocab.gguf" in r.stderr, r.stderr


def test_gguf_unknown_pre_names_key(run_tandem, qwen3_tokenizer_dir, tmp_path):
    path = tmp_path / "pre-vocab.gguf"
    write_vocab_gguf(path, qwen3_tokenizer_dir, pre="llama-bpe")
    r = run_tandem("tokenize", "-m", path, "--text", "hi", "--json", check=False)
    assert r.returncode != 0
    assert "tokenizer.ggml.pre" in r.stderr
