#!/bin/sh
# layer_link.sh — the link launcher of the layer checks (CMakeLists.txt, tandem_layer_check_<layer>): runs the
# link and, when it fails, says which rule an undefined reference breaks. Usage: layer_link.sh LAYER BELOW CMD...
layer=$1 below=$2
shift 2
"$@" && exit 0
rc=$?
allowed=$(printf '%s' "$below" | sed 's|[^,][^,]*|src/&|g; s|,|, |g')
echo "layer rule: src/$layer may call only ${allowed:+$allowed, }libc and the external libraries; an undefined" \
     "symbol named above is a call from src/$layer to a layer it may not depend on (see docs/architecture.md)" >&2
exit $rc
