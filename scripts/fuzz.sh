#!/usr/bin/env bash
# fuzz.sh [SECONDS_PER_TARGET] [TARGET...] — builds the libFuzzer targets (build-fuzz: clang, -DTANDEM_FUZZ=ON,
# ASan+UBSan) and runs each target for SECONDS_PER_TARGET (default 60), at most FUZZ_JOBS (default 2) at a time.
# fuzz.sh --report [TARGET...] prints the summary of the last runs again without fuzzing.
# Targets: gguf safetensors safetensors_index config_json tokenizer_json tokenize model_load hf_folder
# quant_rows convert chat_parse chat_template image preprocessor_config grammar_schema hub_info
# serve_request mmproj (default: all).
#
# Each target starts from a working copy of tests/fuzz/corpus/<t>/ + tests/fuzz/regression/<t>/ in
# build-fuzz/fuzz-work/<t>/corpus (the committed corpus is never grown; FUZZ_KEEP=1 continues from the previous
# working corpus instead of a fresh copy). Crashes, leaks, timeouts and OOMs are copied to
# build-fuzz/crashes/<t>/; a summary table (seconds, executions, exec/s, cov, ft, corpus units, findings) ends
# the output and is written to build-fuzz/fuzz-summary.txt. Exit status 1 if any target found something.
# Safe to run again.
set -euo pipefail

ALL_TARGETS=(gguf safetensors safetensors_index config_json tokenizer_json tokenize model_load hf_folder
             quant_rows convert chat_parse chat_template image preprocessor_config grammar_schema hub_info serve_request
             mmproj)
declare -A MAX_LEN=([gguf]=16384 [safetensors]=16384 [safetensors_index]=16384 [config_json]=4096
                    [tokenizer_json]=32768 [tokenize]=4096 [model_load]=100000 [hf_folder]=8192
                    [quant_rows]=2400 [convert]=32768 [chat_parse]=4096 [chat_template]=16384 [image]=4096
                    [preprocessor_config]=4096 [grammar_schema]=4096 [hub_info]=16384
                    [serve_request]=8192 [mmproj]=65536)
BUILD=build-fuzz
WORK=$BUILD/fuzz-work

usage() {
  echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...] | --report [TARGET...]" >&2
  echo "targets: ${ALL_TARGETS[*]}" >&2
  exit 2
}

# Removes the scratch folders of fuzz processes that died without cleaning up (a crash skips atexit).
clean_scratch() {
  local d pid
  for d in /dev/shm/tandem-fuzz-* "${TMPDIR:-/tmp}"/tandem-fuzz-*; do
    [ -d "$d" ] || continue
    pid=${d##*/tandem-fuzz-}
    pid=${pid%%-*}
    if [[ "$pid" =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then rm -rf "$d"; fi
  done
}

run_target() {
  local t=$1 secs=$2 dir=$WORK/$1
  rm -rf "$dir/artifacts" "$dir/log"
  [ "${FUZZ_KEEP:-0}" = 1 ] || rm -rf "$dir/corpus"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  cp -n tests/fuzz/corpus/"$t"/* "$dir/corpus/" 2>/dev/null || true
  if [ -d tests/fuzz/regression/"$t" ]; then cp -n tests/fuzz/regression/"$t"/* "$dir/corpus/" 2>/dev/null || true; fi
  local dict=()
  [ -f tests/fuzz/dict/"$t".dict ] && dict=(-dict=tests/fuzz/dict/"$t".dict)
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$BUILD/tests/fuzz/fuzz_$t" "$dir/corpus" "${dict[@]}" -max_total_time="$secs" -max_len="${MAX_LEN[$t]}" \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$dir/artifacts/" \
    >"$dir/log" 2>&1 || true
}

# Prints the table for the given targets from their logs; copies findings to build-fuzz/crashes/<t>/.
# Returns 1 if any target found something.
report() {
  local found=0 t dir log execs rate secs last cov ft units what a
  local summary=$BUILD/fuzz-summary.txt
  {
    printf "%-17s %7s %12s %8s %6s %6s %7s  %s\n" target seconds executions exec/s cov ft corpus findings
    for t in "$@"; do
      dir=$WORK/$t
      log=$dir/log
      if [ ! -f "$log" ]; then
        printf "%-17s (no log)\n" "$t"
        continue
      fi
      execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
      rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
      secs=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
      last=$(grep -E '^#[0-9]+' "$log" | grep -E 'cov: [0-9]+' | tail -1 || true)
      cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
      ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
      units=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
      local findings=()
      for a in "$dir"/artifacts/*; do
        [ -f "$a" ] || continue
        case "${a##*/}" in crash-*|leak-*|timeout-*|oom-*) ;; *) continue ;; esac
        mkdir -p "$BUILD/crashes/$t"
        cp "$a" "$BUILD/crashes/$t/"
        findings+=("${a##*/}")
      done
      if [ ${#findings[@]} -gt 0 ]; then
        found=1
        what="${#findings[@]}: ${findings[*]} (copied to $BUILD/crashes/$t/)"
      elif grep -qE '^==[0-9]+==ERROR|^SUMMARY: |fuzz check failed|deadly signal' "$log"; then
        found=1
        what="error without an artifact, see $log"
      else
        what="none"
      fi
      printf "%-17s %7s %12s %8s %6s %6s %7s  %s\n" "$t" "${secs:-?}" "${execs:-?}" "${rate:-?}" "${cov:-?}" \
        "${ft:-?}" "${units:-?}" "$what"
    done
  } | tee "$summary"
  echo "(summary in $summary; logs in $WORK/<target>/log)"
  return "$found"
}

main() {
  cd "$(dirname "$0")/.."
  local report_only=0 secs=60
  if [ "${1:-}" = "--report" ]; then
    report_only=1
    shift
  elif [ $# -gt 0 ]; then
    secs=$1
    shift
    if ! [[ "$secs" =~ ^[0-9]+$ ]] || [ "$secs" -lt 1 ]; then usage; fi
  fi
  local targets=("$@") t
  [ ${#targets[@]} -eq 0 ] && targets=("${ALL_TARGETS[@]}")
  for t in "${targets[@]}"; do
    if [ -z "${MAX_LEN[$t]+x}" ]; then
      echo "fuzz.sh: unknown target '$t'" >&2
      usage
    fi
  done
  if [ "$report_only" = 1 ]; then
    report "${targets[@]}"
    return
  fi

  local jobs=${FUZZ_JOBS:-2}
  command -v clang >/dev/null || { echo "fuzz.sh: clang not found (run scripts/setup.sh)" >&2; exit 1; }
  echo "== configure + build $BUILD (clang, TANDEM_FUZZ=ON)"
  CC=clang cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTANDEM_FUZZ=ON >/dev/null
  ninja -C "$BUILD" "${targets[@]/#/fuzz_}"
  clean_scratch

  echo "== fuzzing ${targets[*]} for ${secs}s each, $jobs at a time (logs: $WORK/<target>/log)"
  local running=0
  for t in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
      wait -n || true
      running=$((running - 1))
    fi
    echo "   start $t ($(date +%H:%M:%S))"
    run_target "$t" "$secs" &
    running=$((running + 1))
  done
  wait || true
  clean_scratch
  report "${targets[@]}"
}

main "$@"
exit
