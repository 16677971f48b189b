#!/usr/bin/env bash
# Portal storage I/O: a file (default 1 GiB) uploaded over tus in one PATCH
# (encrypted at rest, fsynced) and downloaded again in ranged GETs of 64 MiB
# (decrypted, authenticated), next to `cp` + `sync` of the same file on the same
# disk. Prints MB/s each way and the server's peak RSS (VmHWM).
#
#   bash bench/portal_io.sh                 # dev build (deps at opt-level 2)
#   PROFILE=release bash bench/portal_io.sh # release build
#   SIZE_MIB=256 BENCH_DIR=/var/tmp bash bench/portal_io.sh
#   TUS_SERVER=path/to/tus_server bash bench/portal_io.sh  # no build
#
# It serves moat-vault's tus router with the `tus_server` example (no scan,
# no database): the storage path alone, which the portal adds to.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
PROFILE=${PROFILE:-dev}
RANGE_MIB=${RANGE_MIB:-64}
TARGET=${CARGO_TARGET_DIR:-target}

if [ -n "${TUS_SERVER:-}" ]; then
    bin=$TUS_SERVER # a prebuilt tus_server (e.g. an older build, for before/after)
    PROFILE="prebuilt $TUS_SERVER"
elif [ "$PROFILE" = release ]; then
    cargo build -q --release -p moat-vault --example tus_server
    bin="$TARGET/release/examples/tus_server"
else
    cargo build -q -p moat-vault --example tus_server
    bin="$TARGET/debug/examples/tus_server"
fi

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/moat-portal-io.XXXXXX")
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

. bench/io_lib.sh

make_input_and_time_cp

port=$(free_port)
"$bin" "$work/data" "$port" 2>"$work/server.log" &
pid=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$port"
bytes=$((SIZE_MIB * 1024 * 1024))

loc=$(curl -sS -o /dev/null -w '%header{location}' -X POST "$base/files" \
    -H 'Tus-Resumable: 1.0.0' -H "Upload-Length: $bytes")
id=${loc##*/}
t0=$(now)
code=$(curl -sS -o /dev/null -w '%{http_code}' -X PATCH -T "$work/in.bin" "$base$loc" \
    -H 'Tus-Resumable: 1.0.0' -H 'Upload-Offset: 0' \
    -H 'Content-Type: application/offset+octet-stream' -H 'Expect:')
t1=$(now)
[ "$code" = 204 ] || { echo "upload failed: HTTP $code"; cat "$work/server.log"; exit 1; }
up_mbps=$(mbps "$t0" "$t1")
rss_up=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")

t0=$(now)
ranged_get "$base/objects/$id" "$work/out.bin"
t1=$(now)
down_mbps=$(mbps "$t0" "$t1")
got=$(sha256sum "$work/out.bin" | cut -d' ' -f1)
[ "$got" = "$want" ] || { echo "download differs from the upload"; exit 1; }
# The same GETs with the body discarded: the server's side alone (the loop
# above also measures curl writing 1 GiB into the page cache, on the same
# two cores).
t0=$(now)
ranged_get "$base/objects/$id" /dev/null
t1=$(now)
null_mbps=$(mbps "$t0" "$t1")
rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
stored=$(du -sb "$work/data/objects" | cut -f1)

echo "portal_io: $(date -u +%FT%TZ), $(nproc) cores, $(uname -r), profile $PROFILE, ${SIZE_MIB} MiB"
echo "  cp + sync          ${cp_mbps} MB/s"
echo "  tus upload (1 PATCH, encrypt, fsync)     ${up_mbps} MB/s  ($(pct "$up_mbps" "$cp_mbps") % of cp)"
echo "  ranged download (${RANGE_MIB} MiB GETs, decrypt) ${down_mbps} MB/s  ($(pct "$down_mbps" "$cp_mbps") % of cp), sha256 identical"
echo "  the same GETs into /dev/null ${null_mbps} MB/s  ($(pct "$null_mbps" "$cp_mbps") % of cp): the server's side alone"
echo "  server peak RSS    $((rss_up / 1024)) MiB after upload, $((rss / 1024)) MiB after download"
echo "  stored ciphertext  $stored bytes for $bytes plaintext"
