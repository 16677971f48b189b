#!/usr/bin/env bash
# A real, throw-away clamd for tests and benchmarks.
#
#   scripts/clamd-test.sh start DIR [PORT]   # start (idempotent), wait until PING answers PONG
#   scripts/clamd-test.sh stop DIR           # stop by pidfile (idempotent)
#   scripts/clamd-test.sh status DIR         # exit 0 when it answers PING
#
# Everything lives under DIR: db/ (signatures), clamd.conf, clamd.sock, clamd.pid,
# clamd.log, tmp/. clamd listens on the Unix socket DIR/clamd.sock and on
# 127.0.0.1:PORT (default 3310).
#
# There is no internet access for freshclam, and clamd refuses to start without a
# database, so a tiny test database is written to DIR/db:
#   test.ndb  Moat.Test.Body        body signature "moat-test-signature" at any offset
#   test.hdb  Moat.Test.Hash        MD5 of the 19 bytes "moat-test-hash-file"
#             Win.Test.EICAR_HDB-1  MD5 of the 68-byte EICAR test file (its official
#                                   ClamAV name; ClamAV has no built-in EICAR detection)
# clamd.conf sets AlertEncrypted and AlertExceedsMax (without them clamd answers OK for
# encrypted archives and for content past its limits).
# Signatures from unsigned databases are reported with a ".UNOFFICIAL" suffix, e.g.
# "stream: Win.Test.EICAR_HDB-1.UNOFFICIAL FOUND".
#
# Environment:
#   MOAT_CLAMD_STREAM_MAX   clamd StreamMaxLength (default 25M)
#   MOAT_CLAMD_MAX_THREADS  clamd MaxThreads (default 4)
#   MOAT_CLAMD_GEN_SIGS     extra arguments for ../shared/bench/gen_sigs.py, e.g.
#                           "--hashes 2000 --bodies 200" (adds bench.* to DIR/db)
#   MOAT_CLAMD_START_TIMEOUT seconds to wait for PONG (default 60)
set -euo pipefail

usage() {
    echo "usage: $0 start DIR [PORT] | stop DIR | status DIR" >&2
    exit 2
}

find_clamd() {
    if command -v clamd >/dev/null 2>&1; then
        command -v clamd
    elif [ -x /usr/sbin/clamd ]; then
        echo /usr/sbin/clamd
    else
        return 1
    fi
}

install_clamd() {
    if find_clamd >/dev/null; then
        return 0
    fi
    echo "clamd not found; installing clamav clamav-daemon" >&2
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "error: clamd is not installed and cannot be installed here (need root and apt-get)" >&2
        exit 1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q clamav clamav-daemon >&2
    find_clamd >/dev/null
}

# ping SOCKET: exit 0 when clamd answers zPING with PONG (2 s timeout).
ping_clamd() {
    python3 - "$1" <<'PY'
import socket, sys
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(2)
    s.connect(sys.argv[1])
    s.sendall(b"zPING\0")
    buf = b""
    while not buf.endswith(b"\0") and len(buf) < 64:
        chunk = s.recv(64)
        if not chunk:
            break
        buf += chunk
    sys.exit(0 if buf.rstrip(b"\0") == b"PONG" else 1)
except OSError:
    sys.exit(1)
PY
}

running_pid() {
    local pidfile="$1/clamd.pid" pid
    [ -f "$pidfile" ] || return 1
    pid="$(tr -dc 0-9 <"$pidfile")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    echo "$pid"
}

write_db() {
    local db="$1/db"
    mkdir -p "$db"
    printf 'Moat.Test.Body:0:*:6d6f61742d746573742d7369676e6174757265\n' >"$db/test.ndb"
    {
        # md5("moat-test-hash-file"), 19 bytes
        printf 'edb649300d74db03cb09748687c8f41e:19:Moat.Test.Hash\n'
        # md5(EICAR), 68 bytes, without a trailing newline
        printf '44d88612fea8a8f36de82e1278abb02f:68:Win.Test.EICAR_HDB-1\n'
    } >"$db/test.hdb"
    if [ -n "${MOAT_CLAMD_GEN_SIGS:-}" ]; then
        # shellcheck disable=SC2086 # word splitting of the argument list is intended
        python3 "${MOAT_SHARED_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/shared}/bench/gen_sigs.py" "$db" $MOAT_CLAMD_GEN_SIGS >&2
        rm -f "$db/planted.json" # not a signature file
    fi
}

write_conf() {
    local dir="$1" port="$2"
    cat >"$dir/clamd.conf" <<CONF
# Written by scripts/clamd-test.sh
Foreground yes
LocalSocket $dir/clamd.sock
LocalSocketMode 660
FixStaleSocket yes
TCPSocket $port
TCPAddr 127.0.0.1
DatabaseDirectory $dir/db
TemporaryDirectory $dir/tmp
StreamMaxLength ${MOAT_CLAMD_STREAM_MAX:-25M}
MaxThreads ${MOAT_CLAMD_MAX_THREADS:-4}
LogFile $dir/clamd.log
LogTime yes
PidFile $dir/clamd.pid
SelfCheck 3600
# Fail closed: report what clamd could not fully scan instead of answering OK.
AlertEncrypted yes
AlertExceedsMax yes
CONF
    if [ "$(id -u)" -eq 0 ]; then
        echo "User root" >>"$dir/clamd.conf"
    fi
}

start() {
    local dir="$1" port="${2:-3310}" clamd pid t0 deadline
    mkdir -p "$dir"
    dir="$(cd "$dir" && pwd)"
    if pid="$(running_pid "$dir")" && ping_clamd "$dir/clamd.sock"; then
        echo "clamd already running (pid $pid) in $dir" >&2
        return 0
    fi
    stop "$dir" 2>/dev/null || true
    install_clamd
    clamd="$(find_clamd)"
    mkdir -p "$dir/tmp"
    write_db "$dir"
    write_conf "$dir" "$port"
    : >"$dir/clamd.log"
    t0="$(date +%s.%N)"
    # In the foreground, put in the background here: clamd's own
    # daemonizing has its parent wait for a SIGINT from the child, and a
    # child that signals before the parent has installed its handler (a
    # loaded machine) leaves the parent waiting forever where SIGINT was
    # ignored (background jobs of a non-interactive shell), or killed
    # where it was not. Seen: the test hung in do_wait with clamd serving.
    setsid "$clamd" --config-file="$dir/clamd.conf" >>"$dir/clamd.out" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$dir/clamd.pid"
    deadline=$(($(date +%s) + ${MOAT_CLAMD_START_TIMEOUT:-60}))
    until ping_clamd "$dir/clamd.sock"; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "error: clamd did not answer PING within ${MOAT_CLAMD_START_TIMEOUT:-60}s; log:" >&2
            tail -n 30 "$dir/clamd.out" "$dir/clamd.log" >&2 || true
            stop "$dir" || true
            return 1
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "error: clamd exited during startup; log:" >&2
            tail -n 30 "$dir/clamd.out" "$dir/clamd.log" >&2 || true
            return 1
        fi
        sleep 0.1
    done
    echo "clamd ready in $dir (pid $(running_pid "$dir" || echo '?'), tcp 127.0.0.1:$port," \
        "unix $dir/clamd.sock) after $(echo "$(date +%s.%N) - $t0" | bc 2>/dev/null || echo '?')s" >&2
}

stop() {
    local dir="$1" pid i
    [ -d "$dir" ] || return 0
    if pid="$(running_pid "$dir")"; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "clamd (pid $pid) ignored SIGTERM for 10s; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$dir/clamd.pid" "$dir/clamd.sock"
}

[ $# -ge 2 ] || usage
case "$1" in
start) start "$2" "${3:-3310}" ;;
stop) stop "$2" ;;
status) ping_clamd "$2/clamd.sock" ;;
*) usage ;;
esac
