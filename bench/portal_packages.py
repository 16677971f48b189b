#!/usr/bin/env python3
"""Portal benchmark, second half of issue 12's "Benchmark": many small
packages created concurrently, time until every one is decided.

`moat serve` on its embedded defaults (SQLite, the local data directory,
the embedded work queue, the builtin engine) in a fresh data directory; an
admin and a bearer token from `moat portal create-admin` / `create-token`;
then --packages packages of --files files each (random bytes, sizes drawn
from --min-kib..--max-kib; with --eicar-every K, one file of every K-th
package is the EICAR test file, so that package must end `quarantined`)
are created from --threads client threads: POST /v1/portal/packages, one
tus upload per file (POST + one PATCH), POST .../submit. One poller lists
the packages (GET /v1/portal/packages?limit=200, all pages) until every
one is `available` (or `quarantined` where expected) and notes when it
first saw each decided.

Prints: total time (first create → last decided), packages/s, files/s,
time from submit to decided per package (p50/p99/max, resolution = one
list round), the upload phase alone, and the server's peak RSS (VmHWM) and
its RSS after start-up. Prints figures; not a test.

Usage: portal_packages.py --moat PATH [--packages 200] [--files 5]
       [--threads 16] [--eicar-every 20] [--workers N]
"""
import argparse
import base64
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

from benchlib import free_port, proc_status_kib

ADMIN = "admin@example.com"
ADMIN_PW = "correct horse battery staple"
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def cli(moat, data, args, stdin=None):
    r = subprocess.run([moat, "portal", *args, "--data-dir", data], input=stdin,
                       capture_output=True, check=False)
    if r.returncode != 0:
        sys.exit(f"moat portal {args}: {r.stderr.decode(errors='replace')}")
    return r.stdout.decode().strip()


class Client:
    """One keep-alive connection; reconnects when the server closed it."""

    def __init__(self, port, token):
        self.port = port
        self.auth = f"Bearer {token}"
        self.conn = None

    def call(self, method, path, body=None, headers=None):
        h = {"Authorization": self.auth}
        h.update(headers or {})
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                self.conn.request(method, path, body=body, headers=h)
                r = self.conn.getresponse()
                data = r.read()
                if r.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return r.status, r, data
            except (http.client.HTTPException, ConnectionError, BrokenPipeError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")

    def json(self, method, path, obj=None, want=200):
        body = None if obj is None else json.dumps(obj).encode()
        hdr = {"Content-Type": "application/json"} if body is not None else {}
        st, _, data = self.call(method, path, body, hdr)
        if st != want:
            raise RuntimeError(f"{method} {path}: HTTP {st} {data[:300]!r}")
        return json.loads(data) if data else None


def b64(s):
    return base64.b64encode(s.encode()).decode()


def tus_upload(c, package, name, data):
    st, r, body = c.call("POST", "/v1/portal/uploads", headers={
        "Tus-Resumable": "1.0.0",
        "Upload-Length": str(len(data)),
        "Upload-Metadata": f"package {b64(package)},filename {b64(name)}",
    })
    if st != 201:
        raise RuntimeError(f"tus create: HTTP {st} {body[:300]!r}")
    loc = urllib.parse.urlparse(r.getheader("location")).path
    st, _, body = c.call("PATCH", loc, body=data, headers={
        "Tus-Resumable": "1.0.0",
        "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream",
    })
    if st != 204:
        raise RuntimeError(f"tus PATCH: HTTP {st} {body[:300]!r}")


def pct(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = max(0, min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1)))))
    return xs[k]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--moat", required=True)
    ap.add_argument("--packages", type=int, default=200)
    ap.add_argument("--files", type=int, default=5)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--min-kib", type=int, default=1)
    ap.add_argument("--max-kib", type=int, default=64)
    ap.add_argument("--eicar-every", type=int, default=20,
                    help="one file of every K-th package is EICAR (0: all clean)")
    ap.add_argument("--workers", type=int, default=0,
                    help="[portal] workers (0: the default)")
    ap.add_argument("--poll", type=float, default=0.1, help="seconds between list rounds")
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--seed", type=int, default=12)
    a = ap.parse_args()

    rng = random.Random(a.seed)
    plan = []  # per package: [(name, bytes)], expected state
    for i in range(a.packages):
        infected = a.eicar_every > 0 and i % a.eicar_every == a.eicar_every - 1
        files = []
        for j in range(a.files):
            if infected and j == 0:
                files.append((f"p{i}-f{j}.com", EICAR))
            else:
                n = rng.randint(a.min_kib * 1024, a.max_kib * 1024)
                files.append((f"p{i}-f{j}.bin", rng.randbytes(n)))
        plan.append((files, "quarantined" if infected else "available"))
    total_bytes = sum(len(d) for files, _ in plan for _, d in files)

    tmp = tempfile.mkdtemp(prefix="moat-portal-pkgs.", dir=os.environ.get("BENCH_DIR", "/var/tmp"))
    data = os.path.join(tmp, "data")
    port = free_port()
    env = dict(os.environ, MOAT__RELOAD__POLL_SECS="0")
    if a.workers:
        env["MOAT__PORTAL__WORKERS"] = str(a.workers)
    log = open(os.path.join(tmp, "serve.log"), "ab")
    proc = subprocess.Popen([a.moat, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data],
                            env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        t = time.time()
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/healthz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() - t > 60:
                sys.exit(f"moat serve did not start; see {tmp}/serve.log")
            time.sleep(0.1)
        rss_start = proc_status_kib(proc.pid, "VmRSS")
        cli(a.moat, data, ["create-admin", "--email", ADMIN, "--password-stdin"],
            stdin=(ADMIN_PW + "\n").encode())
        token = cli(a.moat, data, ["create-token", "--email", ADMIN])

        ids = [None] * a.packages
        created = [0.0] * a.packages
        submitted = [0.0] * a.packages
        decided = {}
        errors = []
        next_i = iter(range(a.packages))
        lock = threading.Lock()

        def client_thread():
            c = Client(port, token)
            while True:
                with lock:
                    i = next(next_i, None)
                if i is None:
                    return
                try:
                    t0 = time.time()
                    pkg = c.json("POST", "/v1/portal/packages",
                                 {"access": "public", "message": f"bench {i}"}, want=201)
                    for name, body in plan[i][0]:
                        tus_upload(c, pkg["id"], name, body)
                    c.json("POST", f"/v1/portal/packages/{pkg['id']}/submit")
                    t1 = time.time()
                    with lock:
                        ids[i] = pkg["id"]
                        created[i] = t0
                        submitted[i] = t1
                except Exception as e:  # noqa: BLE001 - reported, then the run fails
                    with lock:
                        errors.append(f"package {i}: {e}")
                    return

        t_start = time.time()
        threads = [threading.Thread(target=client_thread) for _ in range(a.threads)]
        for th in threads:
            th.start()

        poller = Client(port, token)
        want = {}
        list_rounds = []
        deadline = t_start + a.timeout
        uploads_done = None
        while True:
            alive = any(th.is_alive() for th in threads)
            if not alive and uploads_done is None:
                uploads_done = time.time()
            with lock:
                for i, pid in enumerate(ids):
                    if pid is not None and pid not in want:
                        want[pid] = (i, plan[i][1])
            if errors:
                break
            r0 = time.time()
            cursor = None
            states = {}
            while True:
                q = "/v1/portal/packages?limit=200" + (f"&cursor={urllib.parse.quote(cursor)}" if cursor else "")
                page = poller.json("GET", q)
                for p in page["items"]:
                    states[p["id"]] = p["state"]
                cursor = page.get("next_cursor")
                if not cursor:
                    break
            now = time.time()
            list_rounds.append(now - r0)
            for pid, (i, exp) in want.items():
                s = states.get(pid)
                if pid in decided:
                    continue
                if s in ("available", "quarantined"):
                    decided[pid] = (now, s)
                    if s != exp:
                        errors.append(f"package {i} ({pid}) is {s}, expected {exp}")
            if not alive and len(decided) == a.packages:
                break
            if now > deadline:
                errors.append(f"timeout: {len(decided)}/{a.packages} decided")
                break
            time.sleep(a.poll)
        for th in threads:
            th.join()
        t_end = max((t for t, _ in decided.values()), default=time.time())
        rss_peak = proc_status_kib(proc.pid, "VmHWM")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()

    if errors:
        print("FAILED:\n  " + "\n  ".join(errors[:20]))
        print(f"(data kept in {tmp})")
        sys.exit(1)
    total = t_end - t_start
    lat = [decided[ids[i]][0] - submitted[i] for i in range(a.packages)]
    e2e = [decided[ids[i]][0] - created[i] for i in range(a.packages)]
    nq = sum(1 for _, s in decided.values() if s == "quarantined")
    nfiles = a.packages * a.files
    print(f"portal_packages: {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, {os.cpu_count()} cores, "
          f"moat {a.moat}")
    print(f"  {a.packages} packages x {a.files} files ({a.min_kib}-{a.max_kib} KiB random, "
          f"{total_bytes / 1048576:.1f} MiB in all), {a.threads} client threads, "
          f"{nq} quarantined (EICAR in every {a.eicar_every or 'none'}th), the rest available")
    print(f"  total, first create -> last decided   {total:.2f} s")
    print(f"  throughput                            {a.packages / total:.1f} packages/s, {nfiles / total:.1f} files/s")
    print(f"  upload phase (create+tus+submit, all) {uploads_done - t_start:.2f} s")
    print(f"  submit -> decided per package          p50 {pct(lat, 50):.2f} s, p99 {pct(lat, 99):.2f} s, "
          f"max {max(lat):.2f} s")
    print(f"  create -> decided per package          p50 {pct(e2e, 50):.2f} s, p99 {pct(e2e, 99):.2f} s")
    print(f"  poll round (list all packages)        median {statistics.median(list_rounds) * 1000:.0f} ms "
          f"over {len(list_rounds)} rounds (+{a.poll * 1000:.0f} ms sleep)")
    print(f"  server RSS                            {rss_start // 1024} MiB after start, "
          f"peak (VmHWM) {rss_peak // 1024} MiB")
    subprocess.run(["rm", "-rf", tmp], check=False)


if __name__ == "__main__":
    main()
