#!/usr/bin/env bash
# Edge proxy benchmark (prints figures; not a test). The same upstream (an
# nginx server block answering 200 and discarding bodies) behind:
#   1. nginx as a plain reverse proxy (keepalive upstream, request buffering on)
#   2. moat proxy (release build, builtin engine, verdict cache OFF so every
#      upload is really scanned)
# and, through each: pass-through GET req/s + p99 (wrk), and 1 MiB clean
# multipart uploads/s + p50/p99 (wrk + a Lua script).
#
#   bash bench/proxy.sh                       # BENCH_DIR=/tmp/moat-proxy-bench
#   DURATION=20 CONNS=64 ROUNDS=5 bash bench/proxy.sh
#   MOAT__PROXY__WORKERS=0 bash bench/proxy.sh   # moat on one shared runtime
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR="${BENCH_DIR:-/tmp/moat-proxy-bench}"
DURATION="${DURATION:-10}"
CONNS="${CONNS:-50}"
UP_CONNS="${UP_CONNS:-8}"
ROUNDS="${ROUNDS:-3}"
rm -rf "$BENCH_DIR" && mkdir -p "$BENCH_DIR"/{nginx-up,nginx-proxy,data}
[ -n "${MOAT:-}" ] || { cargo build --release -p moat; MOAT="${CARGO_TARGET_DIR:-target}/release/moat"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UP=$(free_port); NG=$(free_port); MP=$(free_port); ADM=$(free_port)

nginx_conf() { # dir body
    cat > "$1/nginx.conf" <<EOF
worker_processes 2;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $1/body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fcgi; uwsgi_temp_path $1/uwsgi; scgi_temp_path $1/scgi;
    $2
}
EOF
}
nginx_conf "$BENCH_DIR/nginx-up" "
    server { listen 127.0.0.1:$UP; client_max_body_size 16m; keepalive_requests 100000;
             location / { client_body_buffer_size 2m; return 200 'ok\n'; } }"
nginx_conf "$BENCH_DIR/nginx-proxy" "
    upstream app { server 127.0.0.1:$UP; keepalive 64; }
    server { listen 127.0.0.1:$NG; client_max_body_size 16m; client_body_buffer_size 2m; keepalive_requests 100000;
             location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\";
                          proxy_set_header Host \$host; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } }"
nginx -c "$BENCH_DIR/nginx-up/nginx.conf"
nginx -c "$BENCH_DIR/nginx-proxy/nginx.conf"
# setsid: moat gets its own session, as the nginx daemons do. With the
# kernel's scheduler autogroups (sched_autogroup_enabled=1) each session is
# a CPU-share group; moat left in this script's session would share one with
# wrk while nginx has its own, and lose up to a third of its CPU to that.
MOAT_LOG=warn MOAT__SERVER__CACHE=false setsid "$MOAT" proxy --listen "127.0.0.1:$MP" --upstream "http://127.0.0.1:$UP" \
    --admin "127.0.0.1:$ADM" --data-dir "$BENCH_DIR/data" 2> "$BENCH_DIR/moat.log" &
MOAT_PID=$!
cleanup() {
    kill "$MOAT_PID" 2>/dev/null || true
    for d in nginx-up nginx-proxy; do [ -f "$BENCH_DIR/$d/nginx.pid" ] && kill "$(cat "$BENCH_DIR/$d/nginx.pid")" 2>/dev/null || true; done
}
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$ADM/healthz" >/dev/null && break; sleep 0.1; done

# A 1 MiB clean file in a multipart body, and a wrk script that posts it.
python3 - "$BENCH_DIR" <<'EOF'
import os, sys
d = sys.argv[1]
data = bytes((i * 7919 + (i >> 8)) & 0xff for i in range(1 << 20))
b = "moatbenchBOUNDARY"
body = (f"--{b}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"clean.bin\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{b}--\r\n".encode()
open(os.path.join(d, "upload.body"), "wb").write(body)
lua = f'''
local f = io.open("{d}/upload.body", "rb")
wrk.body = f:read("*all")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "multipart/form-data; boundary={b}"
'''
open(os.path.join(d, "upload.lua"), "w").write(lua)
EOF

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "nginx: $(nginx -v 2>&1 | cut -d/ -f2); moat: $("$MOAT" --version)"
echo "scheduler autogroups: $(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo n/a); moat $(cat /proc/$MOAT_PID/autogroup 2>/dev/null), nginx proxy $(cat /proc/"$(cat "$BENCH_DIR/nginx-proxy/nginx.pid")"/autogroup 2>/dev/null)"

run() { # label url wrk-args...
    local label=$1 url=$2; shift 2
    local out; out=$(wrk --latency -d "${DURATION}s" "$@" "$url")
    local rps p50 p99
    rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
    p50=$(awk '$1=="50%"{print $2}' <<<"$out")
    p99=$(awk '$1=="99%"{print $2}' <<<"$out")
    local errs; errs=$(grep -E 'Non-2xx|Socket errors' <<<"$out" | tr '\n' ' ' || true)
    printf '%-34s %10s req/s   p50 %8s   p99 %8s   %s\n' "$label" "$rps" "$p50" "$p99" "$errs"
}
# Warm-up
wrk -d 2s -c 8 -t 2 "http://127.0.0.1:$NG/" >/dev/null; wrk -d 2s -c 8 -t 2 "http://127.0.0.1:$MP/" >/dev/null
# nginx alone moves by +-15 % from run to run on this machine, so the two
# alternate for ROUNDS rounds and the ratio is given per round and as the
# median.
echo "--- pass-through GET (wrk -t2 -c$CONNS -d${DURATION}s), $ROUNDS alternating rounds"
ratios=()
for r in $(seq "$ROUNDS"); do
    a=$(run "nginx reverse proxy (round $r)" "http://127.0.0.1:$NG/" -t 2 -c "$CONNS"); echo "$a"
    b=$(run "moat proxy (round $r)" "http://127.0.0.1:$MP/" -t 2 -c "$CONNS"); echo "$b"
    ratios+=("$(awk '{for (i = 1; i <= NF; i++) if ($i == "req/s") print $(i - 1)}' <<<"$a $b" | paste -sd' ' | awk '{printf "%.0f", $2 / $1 * 100}')")
done
echo "moat / nginx requests/s per round: ${ratios[*]} (%); median $(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}') % (target >= 80 %)"
echo "--- 1 MiB clean multipart upload (wrk -t1 -c$UP_CONNS -d${DURATION}s, scanning on, cache off)"
run "nginx reverse proxy (no scanning)" "http://127.0.0.1:$NG/upload" -t 1 -c "$UP_CONNS" -s "$BENCH_DIR/upload.lua"
run "moat proxy (scanning)" "http://127.0.0.1:$MP/upload" -t 1 -c "$UP_CONNS" -s "$BENCH_DIR/upload.lua"
echo "--- one 1 MiB upload at a time (wrk -t1 -c1 -d${DURATION}s): latency without queueing"
run "nginx reverse proxy (no scanning)" "http://127.0.0.1:$NG/upload" -t 1 -c 1 -s "$BENCH_DIR/upload.lua"
run "moat proxy (scanning)" "http://127.0.0.1:$MP/upload" -t 1 -c 1 -s "$BENCH_DIR/upload.lua"
curl -s "http://127.0.0.1:$ADM/metrics" > "$BENCH_DIR/metrics.txt"
python3 - "$BENCH_DIR/metrics.txt" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
def val(name):
    m = re.search(r'^' + re.escape(name) + r'\{source="proxy"\} ([0-9.e+-]+)$', t, re.M)
    return float(m.group(1)) if m else 0.0
s, c = val("moat_scan_duration_seconds_sum"), val("moat_scan_duration_seconds_count")
scans = sum(float(v) for v in re.findall(r'^moat_scans_total\{source="proxy",status="clean"[^}]*\} ([0-9.e+-]+)$', t, re.M))
print(f"engine scan time (mean over {int(c)} uploads, from moat_scan_duration_seconds): {s / c * 1000 if c else 0:.2f} ms; clean scans recorded: {int(scans)}")
EOF
