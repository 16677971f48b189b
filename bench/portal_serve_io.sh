#!/usr/bin/env bash
# Issue 12's first benchmark through the whole portal: `moat serve` on its
# embedded defaults (SQLite, the local data directory, the embedded work
# queue, the builtin engine), a 1 GiB file (default) uploaded into a package
# over tus in one PATCH (encrypted at rest, fsynced), the package submitted
# and scanned, then downloaded through its public link, next to `cp` + `sync`
# of the same file on the same disk. bench/portal_io.sh measures the storage
# path alone (moat-vault's tus router, no scan, no database); this is what a
# user of the portal gets.
#
#   MOAT=path/to/moat bash bench/portal_serve_io.sh
#   SIZE_MIB=256 RANGE_MIB=64 BENCH_DIR=/var/tmp MOAT=... bash bench/portal_serve_io.sh
#
# Prints MB/s each way (upload; scan time; download as one GET and as ranged
# GETs, each written to a file, and the same GETs into /dev/null: the
# server's side alone), and moat serve's peak RSS (VmHWM).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${MOAT:?set MOAT to a moat binary (a release build: cargo build --release -p moat)}"
SIZE_MIB=${SIZE_MIB:-1024}
RANGE_MIB=${RANGE_MIB:-64}

work=$(mktemp -d "${BENCH_DIR:-/var/tmp}/moat-portal-serve-io.XXXXXX")
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

. bench/io_lib.sh
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
b64() { printf %s "$1" | base64 -w0; }

make_input_and_time_cp

port=$(free_port)
data="$work/data"
MOAT__RELOAD__POLL_SECS=0 "$MOAT" serve --listen "127.0.0.1:$port" --data-dir "$data" \
    >/dev/null 2>"$work/serve.log" &
pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 300); do curl -sf -o /dev/null "$base/healthz" && break; sleep 0.1; done
curl -sf -o /dev/null "$base/healthz" || { echo "moat serve did not start"; cat "$work/serve.log"; exit 1; }
rss_start=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
printf 'correct horse battery staple\n' |
    "$MOAT" portal create-admin --email admin@example.com --password-stdin --data-dir "$data" >/dev/null
token=$("$MOAT" portal create-token --email admin@example.com --data-dir "$data")
auth="Authorization: Bearer $token"
bytes=$((SIZE_MIB * 1024 * 1024))

pkg=$(curl -sSf -X POST "$base/v1/portal/packages" -H "$auth" -H 'Content-Type: application/json' \
    -d '{"access":"public","message":"portal_serve_io"}' | json 'd["id"]')
loc=$(curl -sSf -o /dev/null -w '%header{location}' -X POST "$base/v1/portal/uploads" -H "$auth" \
    -H 'Tus-Resumable: 1.0.0' -H "Upload-Length: $bytes" \
    -H "Upload-Metadata: package $(b64 "$pkg"),filename $(b64 in.bin)")
case "$loc" in http*) loc="/${loc#*://*/}" ;; esac
t0=$(now)
code=$(curl -sS -o /dev/null -w '%{http_code}' -X PATCH -T "$work/in.bin" "$base$loc" -H "$auth" \
    -H 'Tus-Resumable: 1.0.0' -H 'Upload-Offset: 0' \
    -H 'Content-Type: application/offset+octet-stream' -H 'Expect:')
t1=$(now)
[ "$code" = 204 ] || { echo "upload failed: HTTP $code"; tail -20 "$work/serve.log"; exit 1; }
up_mbps=$(mbps "$t0" "$t1")
rss_up=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")

t0=$(now)
curl -sSf -o /dev/null -X POST "$base/v1/portal/packages/$pkg/submit" -H "$auth"
state=
for _ in $(seq 1 6000); do
    info=$(curl -sSf "$base/v1/portal/packages/$pkg" -H "$auth")
    state=$(printf %s "$info" | json 'd["state"]')
    [ "$state" = scanning ] || break
    sleep 0.05
done
t1=$(now)
[ "$state" = available ] || { echo "package is $state, not available"; tail -20 "$work/serve.log"; exit 1; }
scan_s=$(python3 -c "print(f'{$t1-$t0:.2f}')")
url=$(printf %s "$info" | json 'd["links"]["public"]')
file=$(printf %s "$info" | json 'd["files"][0]["id"]')
case "$url" in http*) ;; *) url="$base$url" ;; esac
furl="$url/files/$file"

t0=$(now)
curl -sSf -o "$work/out.bin" "$furl"
t1=$(now)
one_mbps=$(mbps "$t0" "$t1")
got=$(sha256sum "$work/out.bin" | cut -d' ' -f1)
[ "$got" = "$want" ] || { echo "download differs from the upload"; exit 1; }
rm -f "$work/out.bin"; sync

t0=$(now)
ranged_get "$furl" "$work/out.bin"
t1=$(now)
range_mbps=$(mbps "$t0" "$t1")
got=$(sha256sum "$work/out.bin" | cut -d' ' -f1)
[ "$got" = "$want" ] || { echo "ranged download differs from the upload"; exit 1; }
rm -f "$work/out.bin"

t0=$(now)
curl -sSf -o /dev/null "$furl"
t1=$(now)
null_mbps=$(mbps "$t0" "$t1")
rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
stored=$(du -sb "$data" | cut -f1)

echo "portal_serve_io: $(date -u +%FT%TZ), $(nproc) cores, $(uname -r), $MOAT, ${SIZE_MIB} MiB"
echo "  cp + sync                                  ${cp_mbps} MB/s"
echo "  tus upload (1 PATCH, encrypt, fsync)       ${up_mbps} MB/s  ($(pct "$up_mbps" "$cp_mbps") % of cp)"
echo "  submit -> available (scan, decrypting)     ${scan_s} s"
echo "  download, one GET into a file              ${one_mbps} MB/s  ($(pct "$one_mbps" "$cp_mbps") % of cp), sha256 identical"
echo "  download, ${RANGE_MIB} MiB ranged GETs into a file  ${range_mbps} MB/s  ($(pct "$range_mbps" "$cp_mbps") % of cp), sha256 identical"
echo "  one GET into /dev/null (server side)       ${null_mbps} MB/s  ($(pct "$null_mbps" "$cp_mbps") % of cp)"
echo "  moat serve RSS                             $((rss_start / 1024)) MiB after start, peak $((rss_up / 1024)) MiB after upload, $((rss / 1024)) MiB at the end"
echo "  data directory                             $stored bytes for $bytes plaintext"
