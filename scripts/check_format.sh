#!/usr/bin/env bash
# check_format.sh [--fix] — fails, printing the diff, when a C line written since .clang-format was added is not as
# clang-format-14 would write it; --fix rewrites those lines instead. Older lines are left as they are.
#
# "Written since" is what git blame (-M -C: moved code keeps its age) attributes to the commit that added
# .clang-format or to a commit descending from it, plus uncommitted lines and untracked C files. A plain diff
# against that commit would also flag the lines of branches forked before it and merged after it.
set -euo pipefail
cd "$(dirname "$0")/.."

fix=false
[ "${1:-}" = "--fix" ] && fix=true

CLANG_FORMAT=$(command -v clang-format-14 || command -v clang-format || true)
if [ -z "$CLANG_FORMAT" ]; then
  echo "check_format: clang-format-14 not found (bash scripts/setup.sh installs it)" >&2
  exit 1
fi
"$CLANG_FORMAT" --version | grep -q 'version 14\.' ||
  echo "check_format: warning: $("$CLANG_FORMAT" --version) is not clang-format 14; its layout may differ" >&2

base=""
if git rev-parse --git-dir >/dev/null 2>&1; then
  base=$(git log --diff-filter=A --format=%H -- .clang-format | tail -1)
fi
# In a shallow clone the oldest commit present seems to add every file: unless its parent is here, do not trust it.
if [ -n "$base" ] && ! git cat-file -e "$base^" 2>/dev/null; then
  base=""
fi
if [ -z "$base" ]; then
  echo "check_format: no commit that adds .clang-format is in this clone (not a git clone, or a shallow one):" \
       "nothing checked"
  exit 0
fi
new_commits=$(mktemp)
trap 'rm -f "$new_commits"' EXIT
{ echo "$base"; git rev-list --ancestry-path "$base..HEAD"; echo 0000000000000000000000000000000000000000; } \
  >"$new_commits"

C_FILES=('*.c' '*.h')
failed=0
checked=0
check() {  # check FILE --lines=A:B...: clang-format only those lines
  local f=$1
  shift
  checked=$((checked + 1))
  if $fix; then
    "$CLANG_FORMAT" -i --style=file "$@" "$f"
  elif ! "$CLANG_FORMAT" --style=file "$@" "$f" | diff -u --label "a/$f" --label "b/$f" "$f" -; then
    failed=$((failed + 1))
  fi
}

# Tracked files changed since the base's parent: only the lines blame gives to the base or later (a file not yet
# in HEAD, only staged, is new in every line).
while IFS= read -r f; do
  if ! git cat-file -e "HEAD:$f" 2>/dev/null; then
    check "$f"
    continue
  fi
  mapfile -t ranges < <(git blame -M -C --porcelain -- "$f" | awk -v list="$new_commits" '
    BEGIN { while ((getline c < list) > 0) new[c] = 1 }
    /^[0-9a-f]/ && length($1) == 40 && NF >= 3 {  # a line header: commit, original line, final line
      if (!($1 in new)) next
      if ($3 == last + 1 && start) { last = $3; next }
      if (start) print "--lines=" start ":" last
      start = $3; last = $3
    }
    END { if (start) print "--lines=" start ":" last }')
  if [ ${#ranges[@]} -gt 0 ]; then
    check "$f" "${ranges[@]}"
  fi
done < <(git diff --name-only --diff-filter=AMR "$base^" -- "${C_FILES[@]}")

# Untracked C files (not ignored) are new in every line.
while IFS= read -r f; do
  check "$f"
done < <(git ls-files --others --exclude-standard -- "${C_FILES[@]}")

if $fix; then
  echo "check_format: reformatted the new lines of $checked file(s)"
elif [ "$failed" -gt 0 ]; then
  echo "check_format: $failed file(s) have new lines clang-format would change (diff above: - yours," \
       "+ clang-format's); bash scripts/check_format.sh --fix rewrites them" >&2
  exit 1
else
  echo "check_format: the new lines of $checked file(s) since ${base:0:12} are formatted"
fi
