#!/usr/bin/env bash
# The one test command: install and start what the tests need, then run every
# test (unit, integration against real clamd and PostgreSQL, and the lints).
#
#   bash scripts/test.sh
#
# CARGO_TARGET_DIR may point outside the checkout to reuse builds.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(bash scripts/test-deps.sh)"
export MOAT_TEST_POSTGRES_URL MOAT_TEST_AMQP_URL MOAT_TEST_NATS_URL MOAT_TEST_PYTHON MOAT_TEST_MOTO_SERVER MOAT_TEST_NODE_MODULES

if ! command -v cargo >/dev/null; then
    echo "test: cargo (a stable Rust toolchain) is required: https://rustup.rs" >&2
    exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
log=$(mktemp)
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
# Summarise every harness' result line into one closing line.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, i }' "$log"
rm -f "$log"
exit "$status"
