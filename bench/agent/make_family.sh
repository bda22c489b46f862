#!/usr/bin/env bash
# make_family.sh — the toy agent family, rebuilt from nothing but what scripts/setup.sh installs: transcripts and BPE
# tokenizer (make_data.py), a target and a draft trained by `tandem train`, the draft pruned, synth data, healing.
# Usage: bash bench/agent/make_family.sh [STAGE...]
#   stages: data target draft prune synth heal eval publish (default: all but eval)
#   data     make_data.py: copy.jsonl (copy-only samples, for curriculum runs), train.jsonl (one model call a prompt/completion
#            sample, and copying drills), prompts.jsonl, calib.txt, probe.jsonl, the tokenizer
#   target   4 x 1024 (52 M parameters, ~56 MB Q8_0: beyond the L3 cache, so its decoding is memory-bound)
#   draft    4 x 256 (~4.4 M parameters, over 10x cheaper per token)
#   prune    the draft's layer closest to the identity (angular distance on calib.txt) removed
#   synth    the target's greedy answers to prompts.jsonl, with top-k logits
#   heal     the pruned draft distilled on them
#   eval     eval_agent.py: held-out success rate of the target through tandem serve and smolagents
#   publish  the four GGUFs to bench/agent/models/ and their sha256 to bench/agent/family.sha256
# Environment: TARGET_STEPS (600), DRAFT_STEPS (300), HEAL_STEPS (150), THREADS (2), EPISODES (1500),
#              TANDEM (./build/tandem). Everything but the published files goes to bench/agent/build/ (gitignored).
set -euo pipefail
cd "$(dirname "$0")/../.."
TANDEM=${TANDEM:-./build/tandem}
A=bench/agent
B=$A/build
THREADS=${THREADS:-2}
stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(data target draft prune synth heal publish)
mkdir -p $B

train() {  # name config steps: the agent's prompt/completion samples (copying drills among them)
  nice -n 19 stdbuf -oL $TANDEM train --config $A/$2.json --data $B/train.jsonl --tokenizer $B/tokenizer \
    -o $B/$1.gguf --type q8_0 --steps "$3" --batch 1 --seq 1024 --lr 2e-3 --warmup 50 --val-every 250 \
    --threads "$THREADS" --checkpoint $B/$1.ckpt --checkpoint-every 50 --resume --force 2>&1 | tr '\r' '\n' | tee $B/$1.log
}

for stage in "${stages[@]}"; do
  case $stage in
  data)
    nice -n 19 python3 $A/make_data.py --out $B --episodes "${EPISODES:-1500}" | tee $B/data.log ;;
  target) train target target "${TARGET_STEPS:-600}" ;;
  draft) train draft draft "${DRAFT_STEPS:-300}" ;;
  prune)
    nice -n 19 $TANDEM prune -m $B/draft.gguf -f $B/calib.txt --remove 1 -o $B/draft_pruned.gguf --analyze \
      --csv $B/draft_prune.csv --max-tokens 16384 --threads "$THREADS" --force | tee $B/draft_prune.log ;;
  synth)
    # the prompts are whole rendered requests: a template that prints the prompt as it is (special tokens parsed)
    nice -n 19 $TANDEM synth -m $B/target.gguf -md $B/draft.gguf -f $B/prompts.jsonl -o $B/synth.jsonl \
      --chat-template-file $A/passthrough.jinja -n 400 --topk 16 -c 2048 --threads "$THREADS" ;;
  heal)
    nice -n 19 $TANDEM distill --student $B/draft_pruned.gguf --teacher $B/target.gguf --data $B/synth.jsonl \
      -o $B/draft_healed.gguf --type q8_0 --steps "${HEAL_STEPS:-150}" --batch 4 --seq 1536 --lr 1e-3 \
      --threads "$THREADS" --force 2>&1 | tr '\r' '\n' | tee $B/heal.log ;;
  eval)
    nice -n 19 python3 $A/eval_agent.py $B/target.gguf --tandem "$TANDEM" --temps 0,0.7 --threads "$THREADS" \
      | tee $B/eval_target.log ;;
  publish)
    mkdir -p $A/models
    cp $B/target.gguf $A/models/target-q8_0.gguf
    cp $B/draft.gguf $A/models/draft-q8_0.gguf
    cp $B/draft_pruned.gguf $A/models/draft-pruned-q8_0.gguf
    cp $B/draft_healed.gguf $A/models/draft-pruned-healed-q8_0.gguf
    (cd $A && sha256sum models/*.gguf > family.sha256) && cat $A/family.sha256 ;;
  *) echo "make_family.sh: unknown stage '$stage'" >&2; exit 2 ;;
  esac
done
