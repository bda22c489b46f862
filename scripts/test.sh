#!/usr/bin/env bash
# test.sh — the one command that runs every test: installs what is missing, checks the formatting of the C lines
# written since .clang-format, builds a release tree and an AddressSanitizer+UndefinedBehaviorSanitizer tree
# (warnings are errors), and runs ctest in both (the release one includes layer_rule: the build rejects a call to
# a higher layer); then the C tests that use threads again under ThreadSanitizer, and a clang build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
JOBS=$(nproc)

echo "== formatting of the C lines written since .clang-format (clang-format-14)"
bash scripts/check_format.sh

echo "== release build (gcc, -Werror) + all tests"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTANDEM_WERROR=ON >/dev/null
ninja -C build
(cd build && ctest --output-on-failure -j "$JOBS")

echo "== AddressSanitizer + UndefinedBehaviorSanitizer build + C tests"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTANDEM_SANITIZE=ON -DTANDEM_WERROR=ON >/dev/null
ninja -C build-asan
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   ctest --output-on-failure -j "$JOBS")

echo "== the CLI's usage and bad-input tests (run, convert, quantize, perplexity) against the sanitizer build"
TANDEM_BIN=build-asan/tandem ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1 \
  python3 -m pytest -q tests/integration/test_cli.py tests/integration/test_train.py tests/integration/test_synth.py \
    -k "bad or usage or error or missing"
TANDEM_BIN=build-asan/tandem ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1 \
  python3 -m pytest -q tests/integration/test_convert.py -k "bad or force or progress or short"
TANDEM_BIN=build-asan/tandem ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1 \
  python3 -m pytest -q tests/integration/test_pull.py  # tandem pull against the fake hub: every failure path

echo "== tandem serve against the sanitizer build (each server drains on SIGTERM: LeakSanitizer checks its exit)"
TANDEM_BIN=build-asan/tandem ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1 \
  python3 -m pytest -q tests/integration/test_serve.py tests/integration/test_serve_images.py

echo "== ThreadSanitizer build + the C tests that use threads, and tandem serve's threads"
TSAN_TESTS=(test_kernels test_golden_models test_api test_threadpool test_prune_golden test_convert test_batch test_engine
            test_vit_golden test_engine_spec test_engine_images)
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTANDEM_SANITIZE_THREAD=ON -DTANDEM_WERROR=ON >/dev/null
ninja -C build-tsan "${TSAN_TESTS[@]}" tandem_cli
(cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
   ctest --output-on-failure -j "$JOBS" -R "^($(IFS='|'; echo "${TSAN_TESTS[*]}"))\$")
TANDEM_BIN=build-tsan/tandem TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
  python3 -m pytest -q tests/integration/test_serve.py tests/integration/test_serve_images.py \
    -k "concurrent or disconnect or drain or queue"

echo "== clang build (warnings are errors)"
CC=clang cmake -S . -B build-clang -G Ninja -DCMAKE_BUILD_TYPE=Release -DTANDEM_WERROR=ON >/dev/null
ninja -C build-clang
echo "test.sh: all passed"
