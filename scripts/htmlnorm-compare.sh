#!/bin/sh
# Compare moat's HTML normaliser with ClamAV's, byte for byte, on many files:
# `sigtool --html-normalise=FILE` writes ClamAV's nocomment.html and
# notags.html into the current directory; examples/htmlnorm writes moat's.
# Usage: scripts/htmlnorm-compare.sh [FILE...]   (default: /usr/share/doc/**/*.html)
# Prints one line per differing file and a summary.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ $# -eq 0 ]; then
    find /usr/share/doc -name '*.html' -type f -size -2M | sort > "$work/list"
else
    printf '%s\n' "$@" > "$work/list"
fi
(cd "$root" && cargo build -q --release -p moat-builtin --example htmlnorm)
bin="${CARGO_TARGET_DIR:-$root/target}/release/examples/htmlnorm"
tr '\n' '\0' < "$work/list" | xargs -0 "$bin" "$work/moat"
i=0 same=0 diff=0 unsup=0
while IFS= read -r f; do
    d="$work/clam/$i"
    mkdir -p "$d"
    (cd "$d" && sigtool --html-normalise="$f" >/dev/null 2>&1 || true)
    ok=1
    for o in nocomment.html notags.html; do
        if ! cmp -s "$d/$o" "$work/moat/$i/$o"; then ok=0; fi
    done
    if [ $ok = 1 ]; then
        same=$((same + 1))
    else
        diff=$((diff + 1))
        if [ -e "$work/moat/$i/unsupported" ]; then unsup=$((unsup + 1)); fi
        echo "DIFF $f"
    fi
    i=$((i + 1))
done < "$work/list"
echo "files=$i identical=$same different=$diff (of which flagged unsupported: $unsup)"
