#!/usr/bin/env bash
# The cold-load floor (prints figures; not a test): clamscan's load of
# benchmark 1's 20,000 real-shaped bodies beside moat's cold load (empty cache
# directory), warm load (primed), start with no signature files, and
# examples/cold_floor.rs (read, decode every hex field, write an entry of
# today's size), in alternated rounds. BENCHMARKS.md, "Cold load: the floor".
#
#   bash bench/cold_floor.sh            # BENCH_DIR=/tmp/moat-floor, ROUNDS=5
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR="${BENCH_DIR:-/tmp/moat-floor}"
ROUNDS="${ROUNDS:-5}"
command -v clamscan >/dev/null || bash scripts/test-deps.sh >/dev/null
command -v perf >/dev/null || { echo "cold_floor: needs perf (linux-perf)" >&2; exit 2; }
mkdir -p "$BENCH_DIR/sigs" "$BENCH_DIR/empty" "$BENCH_DIR/nosigs" "$BENCH_DIR/primed"
if [ ! -f "$BENCH_DIR/sigs/real.ndb" ]; then
    python3 bench/gen_real_sigs.py "$BENCH_DIR/gen" ${PE_DIR:+--pe-dir "$PE_DIR"}
    mv "$BENCH_DIR/gen/real.ndb" "$BENCH_DIR/sigs/"
fi
cargo build --release --locked -p moat --bin moat
cargo build --release --locked -p moat-builtin --example cold_floor
TARGET="${CARGO_TARGET_DIR:-target}/release"
MOAT="$TARGET/moat"
FLOOR="$TARGET/examples/cold_floor"
SIGS="$BENCH_DIR/sigs"
# Prime the warm cache and learn the entry's size.
rm -rf "$BENCH_DIR/primed" && mkdir -p "$BENCH_DIR/primed"
XDG_CACHE_HOME="$BENCH_DIR/primed" "$MOAT" scan -j1 --signatures "$SIGS" "$BENCH_DIR/empty" >/dev/null 2>&1
ENTRY=$(find "$BENCH_DIR/primed" -name '*.mbc' -printf '%s\n' | sort -n | tail -1)
export BENCH_DIR MOAT FLOOR SIGS ENTRY
# Each cold run gets a new cache directory; the wrapper alone is measured too.
wrap() {
    bash -c 'd=$(mktemp -d "$BENCH_DIR/run.XXXXXX"); case "$0" in
        cold) XDG_CACHE_HOME=$d "$MOAT" scan -j1 --signatures "$SIGS" "$BENCH_DIR/empty" ;;
        floor) "$FLOOR" "$d" "$ENTRY" "$SIGS/real.ndb" 2>>"$BENCH_DIR/floor.log" ;;
        *) true ;;
    esac >/dev/null; rm -rf "$d"' "$1"
}
export -f wrap
ms() { perf stat -r "$1" "${@:2}" 2>&1 >/dev/null | awk '/time elapsed/ {printf "%.1f", $1*1000}'; }
echo "machine: $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(clamscan --version); entry $ENTRY bytes"
rm -f "$BENCH_DIR/floor.log"
printf "%-5s %9s %9s %9s %9s %9s %9s %9s\n" round clamscan wrapper cold-w warm nosig floor-w cold/clam
for round in $(seq 1 "$ROUNDS"); do
    c=$(ms 10 clamscan --no-summary -d "$SIGS" "$BENCH_DIR/empty")
    w=$(ms 20 bash -c 'wrap none')
    cold=$(ms 20 bash -c 'wrap cold')
    warm=$(ms 20 env XDG_CACHE_HOME="$BENCH_DIR/primed" "$MOAT" scan -j1 --signatures "$SIGS" "$BENCH_DIR/empty")
    ns=$(ms 20 env XDG_CACHE_HOME="$BENCH_DIR/primed" "$MOAT" scan -j1 --signatures "$BENCH_DIR/nosigs" "$BENCH_DIR/empty")
    f=$(ms 20 bash -c 'wrap floor')
    printf "%-5s %9s %9s %9s %9s %9s %9s %9.2f\n" "$round" "$c" "$w" "$cold" "$warm" "$ns" "$f" \
        "$(echo "($cold - $w) / $c" | bc -l)"
done
echo "cold_floor phases, median (threads, read, decode, write, sum in ms):"
for f in 2 5 13 18; do
    awk -v f=$f '{print $f}' "$BENCH_DIR/floor.log" | sort -n | awk '{a[NR]=$1} END{printf "%s ", a[int((NR+1)/2)]}'
done
awk '{print $2+$5+$13+$18}' "$BENCH_DIR/floor.log" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'
