#!/usr/bin/env bash
# The README's screenshots, taken from the browser suite's artifacts
# (crates/moat/tests/webui.rs saves every main page there) and made small
# with pngquant (apt-get install pngquant):
#
#   cargo test --workspace --test webui
#   bash scripts/readme-screenshots.sh [ARTIFACTS_DIR]
#
# ARTIFACTS_DIR: $MOAT_WEBUI_ARTIFACTS, else $CARGO_TARGET_DIR/webui-artifacts,
# else target/webui-artifacts.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src=${1:-${MOAT_WEBUI_ARTIFACTS:-${CARGO_TARGET_DIR:-$root/target}/webui-artifacts}}
dst=$root/docs/screenshots
mkdir -p "$dst"
# suite artifact -> README image
for pair in package-available.png:package.png dashboard-overview.png:dashboard.png; do
  from=$src/${pair%%:*}
  to=$dst/${pair##*:}
  [ -f "$from" ] || { echo "missing $from: run the webui suite first" >&2; exit 1; }
  pngquant --force --quality 60-90 --speed 1 --strip --output "$to" -- "$from"
  echo "$to: $(stat -c %s "$to") bytes"
done
