#!/usr/bin/env bash
# Bucket-scanner benchmark (prints figures; not a test). 2,000 mixed objects
# (1 KB-10 MB) in a moto S3 server, announced on RabbitMQ in MinIO's event
# format, scanned by `moat bucket watch` (release build) with the builtin
# engine and with clamd, tagged, and reported to a webhook; beside it, the raw
# S3 GET throughput and clamd's own INSTREAM throughput on the same objects at
# the same concurrency. See bench/bucket_bench.py for the phases.
#
#   bash bench/bucket.sh                         # BENCH_DIR=/tmp/moat-bucket-bench
#   OBJECTS=500 CONCURRENCY=4 bash bench/bucket.sh
#   MOAT=/path/to/release/moat bash bench/bucket.sh
#   PIN=1 bash bench/bucket.sh    # CPU 0: moto, RabbitMQ clients, load generators;
#                                 # CPU 1: what is measured (moat, clamd, the raw GET client)
#                                 # (with clamd, moat runs on CPU 0 and clamd has CPU 1;
#                                 #  MOAT_CLAMD_CPU=engine puts moat on CPU 1 beside clamd)
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR="${BENCH_DIR:-/tmp/moat-bucket-bench}"
OBJECTS="${OBJECTS:-2000}"
CONCURRENCY="${CONCURRENCY:-4}"
SIGS_ARGS="${SIGS_ARGS:---hashes 200000 --bodies 20000}"
SHARED="${MOAT_SHARED_DIR:-$(cd .. && pwd)/shared}"
rm -rf "$BENCH_DIR" && mkdir -p "$BENCH_DIR"

# RabbitMQ, clamd, and the Python virtualenv with moto and boto3.
eval "$(bash scripts/test-deps.sh)"
VENV_PY="$MOAT_TEST_PYTHON"
"$VENV_PY" -c 'import pika' 2>/dev/null || "$VENV_PY" -m pip install -q pika >&2
[ -n "${MOAT:-}" ] || { cargo build --release -p moat; MOAT="${CARGO_TARGET_DIR:-target}/release/moat"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
S3_PORT=$(free_port); CLAMD_PORT=$(free_port)
# PIN=1: the S3 server stands in for MinIO/AWS, which never shares the
# scanner's CPUs in production; pinning keeps it (and the load generators)
# off the CPU that the engines and moat are measured on.
LOAD_CPU=(); ENGINE_CPU=(); ENGINE_ARG=()
if [ "${PIN:-0}" = 1 ]; then
    [ "$(nproc)" -ge 2 ] || { echo "PIN=1 needs two CPUs" >&2; exit 1; }
    LOAD_CPU=(taskset -c 0); ENGINE_CPU=(taskset -c 1); ENGINE_ARG=(--engine-cpu 1)
    # With clamd as the engine, clamd keeps CPU 1 to itself (as in the raw
    # INSTREAM phase) and moat runs beside moto, unless MOAT_CLAMD_CPU=engine.
    if [ "${MOAT_CLAMD_CPU:-load}" = engine ]; then ENGINE_ARG+=(--moat-clamd-cpu 1); else ENGINE_ARG+=(--moat-clamd-cpu 0); fi
fi

# The same signature set for both engines: clamd's database directory.
python3 "$SHARED/bench/gen_sigs.py" "$BENCH_DIR/sigs" $SIGS_ARGS >&2
MOAT_CLAMD_GEN_SIGS="$SIGS_ARGS" MOAT_CLAMD_MAX_THREADS="$((CONCURRENCY > 4 ? CONCURRENCY : 4))" \
    "${ENGINE_CPU[@]}" bash scripts/clamd-test.sh start "$BENCH_DIR/clamd" "$CLAMD_PORT" >&2
"${LOAD_CPU[@]}" "$MOAT_TEST_MOTO_SERVER" -H 127.0.0.1 -p "$S3_PORT" >"$BENCH_DIR/moto.log" 2>&1 &
MOTO_PID=$!
cleanup() {
    kill "$MOTO_PID" 2>/dev/null || true
    bash scripts/clamd-test.sh stop "$BENCH_DIR/clamd" >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$S3_PORT") 2>/dev/null && break; sleep 0.2; done

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "moat: $("$MOAT" --version); $(clamd --version 2>/dev/null || /usr/sbin/clamd --version); moto $("$VENV_PY" -c 'import moto; print(moto.__version__)')"
echo "cpu pinning: ${PIN:-0}"
echo "signatures: gen_sigs.py $SIGS_ARGS (+ EICAR), loaded by clamd and by moat's builtin engine"
"${LOAD_CPU[@]}" "$VENV_PY" bench/bucket_bench.py "${ENGINE_ARG[@]}" --moat "$MOAT" --dir "$BENCH_DIR" \
    --s3 "http://127.0.0.1:$S3_PORT" --amqp "$MOAT_TEST_AMQP_URL" \
    --clamd-port "$CLAMD_PORT" --clamd-dir "$BENCH_DIR/clamd" --sigs "$BENCH_DIR/clamd/db" --planted "$BENCH_DIR/sigs/planted.json" \
    --moto-pid "$MOTO_PID" --objects "$OBJECTS" --concurrency "$CONCURRENCY" ${ONLY:+--only "$ONLY"} ${CLAMD_POOL_SIZE:+--clamd-pool-size "$CLAMD_POOL_SIZE"}
