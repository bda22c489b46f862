#!/usr/bin/env python3
"""make_sparse_gguf.py — writes a sparse GGUF with the exact tensor shapes of Qwen3-8B, in Q4_0 (norms F32).

    python3 tests/gen/make_sparse_gguf.py OUT.gguf [--check]

Header, metadata (full qwen3 hyper-parameters + the tiny golden tokenizer padded with "[PAD{id}]" entries
to 151936) and tensor infos are written with gguf.GGUFWriter; the tensor data are never written: the file
is extended to its full size with truncate, so it is ~4.6 GB apparent size but almost nothing on disk and
every weight reads as zero. For testing loaders, mmap and size reporting on a real-sized model without a
real model. --check re-reads the file with gguf.GGUFReader (metadata only; data pages are not touched).
Needs only numpy and gguf. Takes a few seconds.
"""
import argparse
import os
import sys
import time

import numpy as np
import gguf

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import qwen3_gguf  # noqa: E402

TOKENIZER_DIR = os.path.join(HERE, "..", "golden", "models", "tied_gqa2")

QWEN3_8B = dict(
    num_hidden_layers=36, hidden_size=4096, num_attention_heads=32, num_key_value_heads=8, head_dim=128,
    intermediate_size=12288, vocab_size=151936, tie_word_embeddings=False, rope_theta=1e6, rms_norm_eps=1e-6,
    max_position_embeddings=40960,
)


def tensor_plan(hp):
    """[(gguf_name, pytorch_shape, type, nbytes)]"""
    plan = []
    for gname, _hname, shape in qwen3_gguf.tensor_layout(hp):
        if len(shape) == 1:
            qt = gguf.GGMLQuantizationType.F32
        else:
            qt = gguf.GGMLQuantizationType.Q4_0
        block, type_size = gguf.GGML_QUANT_SIZES[qt]
        n = int(np.prod(shape))
        assert shape[-1] % block == 0
        plan.append((gname, tuple(shape), qt, n // block * type_size))
    return plan


def write_sparse(path, hp=QWEN3_8B, name="tandem-sparse-qwen3-8b-shape"):
    tok_json = qwen3_gguf.load_json(os.path.join(TOKENIZER_DIR, "tokenizer.json"))
    tok_cfg = qwen3_gguf.load_json(os.path.join(TOKENIZER_DIR, "tokenizer_config.json"))
    w = gguf.GGUFWriter(path, "qwen3")
    qwen3_gguf.add_model_metadata(w, hp, name, "q4_0")
    qwen3_gguf.add_tokenizer_metadata(w, tok_json, tok_cfg, hp["vocab_size"])
    plan = tensor_plan(hp)
    for gname, shape, qt, nbytes in plan:
        # a non-uint8 dtype with raw_dtype keeps `shape` as the element shape
        w.add_tensor_info(gname, shape, np.dtype(np.float32), nbytes, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    align = w.data_alignment
    meta_end = w.fout[0].tell()
    w.close()
    data_start = gguf.GGUFWriter.ggml_pad(meta_end, align)
    data_size = sum(gguf.GGUFWriter.ggml_pad(nb, align) for _, _, _, nb in plan)
    os.truncate(path, data_start + data_size)
    return plan, data_start, data_size


def check(path, plan):
    r = gguf.GGUFReader(path)  # np.memmap; tensor data are views, never read here
    if len(r.tensors) != len(plan):
        raise SystemExit(f"check: {len(r.tensors)} tensors, expected {len(plan)}")
    for t, (gname, shape, qt, nbytes) in zip(r.tensors, plan):
        ne = tuple(int(x) for x in t.shape)
        if t.name != gname or ne != tuple(reversed(shape)) or t.tensor_type != qt or int(t.n_bytes) != nbytes:
            raise SystemExit(f"check: {t.name} {ne} {t.tensor_type.name} {t.n_bytes} != {gname} {shape} {qt.name}")
    last = r.tensors[-1]
    if last.data_offset + last.n_bytes > os.path.getsize(path):
        raise SystemExit("check: data run past the end of the file")
    f = r.fields
    got = {k: f[k].contents() for k in ("qwen3.block_count", "qwen3.embedding_length", "qwen3.attention.key_length")}
    n_tokens = len(f["tokenizer.ggml.tokens"].data)
    print(f"check: OK, {len(r.tensors)} tensors, {got}, {n_tokens} tokens")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--check", action="store_true", help="re-read the file with gguf.GGUFReader")
    args = ap.parse_args()
    t0 = time.time()
    plan, data_start, data_size = write_sparse(args.out)
    st = os.stat(args.out)
    print(f"{args.out}: {len(plan)} tensors, data at {data_start}, apparent {st.st_size / 2**30:.2f} GiB, "
          f"on disk {st.st_blocks * 512 / 2**20:.1f} MiB, {time.time() - t0:.1f} s")
    if args.check:
        check(args.out, plan)


if __name__ == "__main__":
    main()
