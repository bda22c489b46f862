#!/usr/bin/env bash
# make_family.sh — the toy family, rebuilt from nothing but this machine's CPython standard library: data and BPE
# tokenizer (make_data.py), a target and a draft trained by `tandem train`, the draft pruned, synth data, healing.
# Usage: bash bench/toy/make_family.sh [STAGE...]   stages: data target draft prune synth heal publish (default: all)
# (publish copies the four models to bench/toy/models/, where test_toy_family.py finds them; table runs spec_table.py)
# The wide target (stages wide wide-synth wide-heal wide-table, not in the default list: about an hour of training)
# is a 4 x 1024 model whose 55 MB of Q8_0 weights do not fit in the CPU's caches, so that its decoding, like an 8B
# model's, is bound by memory bandwidth; the same draft, pruned, is healed on its answers.
# Environment: TARGET_STEPS (900), DRAFT_STEPS (1200), WIDE_STEPS (400), TEMP (wide-table's temperature, 0),
#              THREADS (1 per model: target and draft train side by side),
#              SYNTH_N (prompts for synth, 400), TANDEM (./build/tandem). Outputs go to bench/toy/build/.
set -euo pipefail
cd "$(dirname "$0")/../.."
TANDEM=${TANDEM:-./build/tandem}
B=bench/toy/build
TARGET_STEPS=${TARGET_STEPS:-900}
DRAFT_STEPS=${DRAFT_STEPS:-1200}
WIDE_STEPS=${WIDE_STEPS:-400}
THREADS=${THREADS:-1}
SYNTH_N=${SYNTH_N:-400}
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(data target draft prune synth heal publish table)
mkdir -p $B

for stage in "${stages[@]}"; do
  case $stage in
  data)
    nice -n 19 python3 bench/toy/make_data.py --out $B ;;
  target|draft)
    steps=$TARGET_STEPS; [ "$stage" = draft ] && steps=$DRAFT_STEPS
    nice -n 19 $TANDEM train --config bench/toy/$stage.json --data $B/train.txt --tokenizer $B/tokenizer \
      -o $B/$stage.gguf --type q8_0 --steps "$steps" --threads "$THREADS" --checkpoint $B/$stage.ckpt --resume \
      --force 2>&1 | tee $B/$stage.log ;;
  prune)
    # the calibration text is the validation split: the perplexities are validation perplexities
    nice -n 19 $TANDEM prune -m $B/target.gguf -f $B/valid.txt --analyze --csv $B/target_prune.csv \
      --max-tokens 8192 --threads "$THREADS" | tee $B/target_prune.log
    nice -n 19 $TANDEM prune -m $B/draft.gguf -f $B/valid.txt --remove 1 -o $B/draft_pruned.gguf --analyze \
      --csv $B/draft_prune.csv --max-tokens 8192 --threads "$THREADS" --force | tee $B/draft_prune.log ;;
  synth)
    # prompts: the first lines of functions in the training split (continuations: the toy models are base models)
    nice -n 19 python3 bench/toy/make_prompts.py $B/train.txt "$SYNTH_N" > $B/prompts.jsonl
    nice -n 19 $TANDEM synth -m $B/target.gguf -md $B/draft.gguf -f $B/prompts.jsonl -o $B/synth.jsonl \
      --raw -n 96 --topk 16 --threads "$THREADS" ;;
  heal)
    nice -n 19 $TANDEM distill --student $B/draft_pruned.gguf --teacher $B/target.gguf --data $B/synth.jsonl \
      -o $B/draft_healed.gguf --type q8_0 --steps 200 --batch 8 --lr 1e-3 --threads "$THREADS" --force \
      2>&1 | tee $B/heal.log
    nice -n 19 $TANDEM prune -m $B/draft_healed.gguf -f $B/valid.txt --analyze --max-tokens 8192 \
      --threads "$THREADS" | tee $B/draft_healed_ppl.log ;;
  publish)
    mkdir -p bench/toy/models
    cp $B/target.gguf bench/toy/models/target-q8_0.gguf
    cp $B/draft.gguf bench/toy/models/draft-q8_0.gguf
    cp $B/draft_pruned.gguf bench/toy/models/draft-pruned-q8_0.gguf
    cp $B/draft_healed.gguf bench/toy/models/draft-pruned-healed-q8_0.gguf ;;
  table)
    nice -n 19 python3 bench/toy/spec_table.py $B --tandem "$TANDEM" --threads "$THREADS" | tee $B/spec_table.md ;;
  wide)
    nice -n 19 $TANDEM train --config bench/toy/target_wide.json --data $B/train.txt --tokenizer $B/tokenizer \
      -o $B/target_wide.gguf --type q8_0 --steps "$WIDE_STEPS" --threads "${WIDE_THREADS:-2}" \
      --checkpoint $B/target_wide.ckpt --resume --force 2>&1 | tee $B/target_wide.log
    nice -n 19 $TANDEM prune -m $B/target_wide.gguf -f $B/valid.txt --analyze --csv $B/target_wide_prune.csv \
      --max-tokens 8192 --threads "${WIDE_THREADS:-2}" | tee $B/target_wide_prune.log ;;
  wide-synth)
    [ -f $B/prompts.jsonl ] || nice -n 19 python3 bench/toy/make_prompts.py $B/train.txt "$SYNTH_N" > $B/prompts.jsonl
    nice -n 19 $TANDEM synth -m $B/target_wide.gguf -md $B/draft.gguf -f $B/prompts.jsonl -o $B/synth_wide.jsonl \
      --raw -n 96 --topk 16 --threads "${WIDE_THREADS:-2}" ;;
  wide-heal)
    nice -n 19 $TANDEM distill --student $B/draft_pruned.gguf --teacher $B/target_wide.gguf \
      --data $B/synth_wide.jsonl -o $B/draft_healed_wide.gguf --type q8_0 --steps 200 --batch 8 --lr 1e-3 \
      --threads "${WIDE_THREADS:-2}" --force 2>&1 | tee $B/heal_wide.log ;;
  wide-table)
    nice -n 19 python3 bench/toy/spec_table.py $B --tandem "$TANDEM" --threads "$THREADS" --target target_wide.gguf \
      --healed draft_healed_wide.gguf --temp "${TEMP:-0}" | tee $B/spec_table_wide.md ;;
  *) echo "make_family.sh: unknown stage '$stage'" >&2; exit 2 ;;
  esac
done
