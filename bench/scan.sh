#!/usr/bin/env bash
# Scan benchmark (prints figures; not a test). Generates the large shared set
# once (1,000,000 hash + 20,000 body signatures; ~650 MB corpus), then runs
# clamscan, clamd MULTISCAN (cold: a fresh clamd per run), moat scan -j1 and
# moat scan on the same corpus and signatures.
#
#   bash bench/scan.sh                  # BENCH_DIR=/tmp/moat-bench by default
#   RUNS=3 bash bench/scan.sh           # best of 3 per tool
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR="${BENCH_DIR:-/tmp/moat-bench}"
SHARED="${MOAT_SHARED_DIR:-$(cd .. && pwd)/shared}"
mkdir -p "$BENCH_DIR"
command -v clamscan >/dev/null || bash scripts/test-deps.sh >/dev/null
if [ ! -f "$BENCH_DIR/sigs/planted.json" ]; then
    python3 "$SHARED/bench/gen_sigs.py" "$BENCH_DIR/sigs" --hashes 1000000 --bodies 20000
fi
if [ ! -f "$BENCH_DIR/corpus/manifest.json" ]; then
    python3 "$SHARED/bench/gen_corpus.py" "$BENCH_DIR/sigs" "$BENCH_DIR/corpus" --clean-mib 512
fi
cargo build --release -p moat
MOAT="${CARGO_TARGET_DIR:-target}/release/moat"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "clamav: $(clamscan --version)"
# Warm the page cache so every tool reads the corpus from memory.
cat "$BENCH_DIR"/corpus/*/* > /dev/null
python3 bench/scan_bench.py --moat "$MOAT" --sigs "$BENCH_DIR/sigs" --corpus "$BENCH_DIR/corpus" --runs "${RUNS:-1}" ${SKIP:+--skip "$SKIP"}
