#!/usr/bin/env bash
# test.sh — the one command that runs every test: installs what is missing, builds a release tree and an
# AddressSanitizer+UndefinedBehaviorSanitizer tree (warnings are errors), and runs ctest in both.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
JOBS=$(nproc)

echo "== release build (gcc, -Werror) + all tests"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DTANDEM_WERROR=ON >/dev/null
ninja -C build
(cd build && ctest --output-on-failure -j "$JOBS")

echo "== AddressSanitizer + UndefinedBehaviorSanitizer build + C tests"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTANDEM_SANITIZE=ON -DTANDEM_WERROR=ON >/dev/null
ninja -C build-asan
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
   ctest --output-on-failure -j "$JOBS")

echo "== clang build (warnings are errors)"
CC=clang cmake -S . -B build-clang -G Ninja -DCMAKE_BUILD_TYPE=Release -DTANDEM_WERROR=ON >/dev/null
ninja -C build-clang
echo "test.sh: all passed"
