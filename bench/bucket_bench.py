#!/usr/bin/env python3
"""Bucket-scanner benchmark driver (prints figures; not a test). Run through
bench/bucket.sh, which starts moto, clamd and RabbitMQ and passes their
addresses here.

Phases, all on the same objects and at the same concurrency:
  1. S3 GET throughput: plain HTTP GETs of every object from moto, bodies
     read and discarded (the ceiling for moat with a fast engine).
  2. clamd INSTREAM throughput: every object streamed to clamd over TCP
     (the ceiling for moat with clamd).
  3. moat bucket watch, for each engine set: every object is announced by a
     MinIO-format event on RabbitMQ, all at once; moat HEADs, GETs, scans,
     tags (merging existing tags) and POSTs the result to a webhook here.
     objects/s and MB/s over the whole burst, and event-to-verdict latency
     (eventTime → webhook received) p50/p99; then objects one at a time for
     the latency without queueing.
"""
import argparse
import hashlib
import http.client
import http.server
import io
import json
import math
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import zipfile
from concurrent.futures import ThreadPoolExecutor

import boto3
import pika

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --------------------------------------------------------------- objects
def source_pool(limit):
    """Bytes of real files from this machine (libraries, docs), up to limit."""
    buf = bytearray()
    for root in ("/usr/lib/x86_64-linux-gnu", "/usr/share/doc", "/usr/bin", "/usr/lib/python3"):
        for dirpath, dirs, files in os.walk(root):
            dirs.sort()
            for f in sorted(files):
                p = os.path.join(dirpath, f)
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                try:
                    with open(p, "rb") as fh:
                        buf += fh.read(4 << 20)
                except OSError:
                    continue
                if len(buf) >= limit:
                    return bytes(buf[:limit])
    return bytes(buf)


def make_objects(out, n, planted, seed):
    """n objects, sizes log-uniform in 1 KB..10 MB; every 25th carries a
    planted body signature mid-file, every 100th is a zip holding EICAR."""
    rnd = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    pool = source_pool(64 << 20)
    objs = []
    for i in range(n):
        size = int(math.exp(rnd.uniform(math.log(1024), math.log(10 << 20))))
        off = rnd.randrange(0, len(pool) - size)
        data = bytearray(pool[off:off + size])
        infected = None
        if i % 100 == 99:
            z = io.BytesIO()
            with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr("docs/readme.txt", bytes(data[: min(size, 4096)]))
                zf.writestr("tools/eicar.com", EICAR)
            data = bytearray(z.getvalue())
            infected = "eicar-in-zip"
        elif i % 25 == 24:
            pat = bytes.fromhex(planted["body_patterns"][i % len(planted["body_patterns"])]["hex"])
            at = rnd.randrange(0, max(1, len(data) - len(pat)))
            data[at:at + len(pat)] = pat
            infected = "body-signature"
        key = f"bench/{i:05d} {rnd.choice(['report', 'photo', 'data', 'build'])}.bin"
        path = os.path.join(out, f"{i:05d}.bin")
        with open(path, "wb") as f:
            f.write(data)
        objs.append({"key": key, "path": path, "size": len(data), "infected": infected,
                     "sha256": hashlib.sha256(data).hexdigest()})
    return objs


# --------------------------------------------------------------- helpers
def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = max(0, min(len(xs) - 1, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


def fmt_rate(n, nbytes, secs):
    return f"{n / secs:8.1f} objects/s  {nbytes / secs / 1e6:8.1f} MB/s  ({n} objects, {nbytes / 1e6:.0f} MB in {secs:.1f} s)"


def s3_client(endpoint):
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                        aws_secret_access_key="testing", region_name="us-east-1")


def upload(endpoint, bucket, objs, conc):
    s3 = s3_client(endpoint)
    s3.create_bucket(Bucket=bucket)

    def put(o):
        with open(o["path"], "rb") as f:
            r = s3_client_local().put_object(Bucket=bucket, Key=o["key"], Body=f.read())
        o["etag"] = r["ETag"].strip('"')

    tl = threading.local()

    def s3_client_local():
        if not hasattr(tl, "c"):
            tl.c = s3_client(endpoint)
        return tl.c

    with ThreadPoolExecutor(conc) as ex:
        list(ex.map(put, objs))


# --------------------------------------------------------------- phase 1: S3 GET
def get_throughput(a, endpoint, bucket, objs, conc):
    u = urllib.parse.urlparse(endpoint)
    tl = threading.local()
    # Presigned URLs, made before the clock starts: moto refuses anonymous GETs.
    s3 = s3_client(endpoint)
    urls = {}
    for o in objs:
        p = urllib.parse.urlparse(s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": o["key"]}, ExpiresIn=3600))
        urls[o["key"]] = p.path + "?" + p.query

    def get(o):
        if not hasattr(tl, "c"):
            tl.c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        path = urls[o["key"]]
        tl.c.request("GET", path)
        r = tl.c.getresponse()
        n = 0
        buf = bytearray(1 << 20)
        while True:
            k = r.readinto(buf)
            if not k:
                break
            n += k
        if r.status != 200 or n != o["size"]:
            raise RuntimeError(f"GET {path}: {r.status}, {n} of {o['size']} bytes")
        return n

    t0 = time.monotonic()
    with on_engine_cpu(a), ThreadPoolExecutor(conc) as ex:
        total = sum(ex.map(get, objs))
    return time.monotonic() - t0, total


# --------------------------------------------------------------- phase 2: clamd
def clamd_instream(port, path):
    s = socket.create_connection(("127.0.0.1", port), timeout=300)
    try:
        s.sendall(b"zINSTREAM\0")
        with open(path, "rb") as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                s.sendall(struct.pack(">I", len(chunk)) + chunk)
        s.sendall(struct.pack(">I", 0))
        reply = b""
        while not reply.endswith(b"\0"):
            c = s.recv(4096)
            if not c:
                break
            reply += c
        return reply.rstrip(b"\0").decode(errors="replace")
    finally:
        s.close()


def restart_clamd(a):
    """A fresh clamd before each phase that uses it: clamd caches the hashes
    of clean files it has scanned, so a second pass over the same objects
    would mostly be cache hits (seen here: 29 MB/s first pass, 130 MB/s
    second)."""
    pin = ["taskset", "-c", str(a.engine_cpu)] if a.engine_cpu is not None else []
    for cmd in (["stop", a.clamd_dir], ["start", a.clamd_dir, str(a.clamd_port)]):
        subprocess.run([*pin, "bash", "scripts/clamd-test.sh", *cmd], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def clamd_throughput(port, objs, conc):
    t0 = time.monotonic()
    with ThreadPoolExecutor(conc) as ex:
        replies = list(ex.map(lambda o: clamd_instream(port, o["path"]), objs))
    secs = time.monotonic() - t0
    found = sum(1 for r in replies if r.endswith("FOUND"))
    errors = [r for r in replies if not (r.endswith("FOUND") or r.endswith(": OK"))]
    return secs, sum(o["size"] for o in objs), found, errors


# --------------------------------------------------------------- phase 3: moat
class Receiver:
    """The notify webhook: records (arrival time, JSON) per POST."""

    def __init__(self):
        self.lock = threading.Lock()
        self.got = {}
        self.cond = threading.Condition(self.lock)
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                now = time.time()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                try:
                    m = json.loads(body)
                except ValueError:
                    return
                with outer.cond:
                    outer.got.setdefault(m.get("key"), (now, m))
                    outer.cond.notify_all()

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def wait(self, keys, timeout):
        deadline = time.time() + timeout
        with self.cond:
            while not all(k in self.got for k in keys):
                left = deadline - time.time()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 1.0))
        return True

    def reset(self):
        with self.lock:
            self.got = {}


def clamd_pid(a):
    try:
        with open(os.path.join(a.clamd_dir, "clamd.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 0


class on_engine_cpu:
    """With --engine-cpu, threads started inside this block run on that CPU
    only (Linux threads inherit the affinity of the thread that creates them)."""
    def __init__(self, a):
        self.cpu = a.engine_cpu

    def __enter__(self):
        if self.cpu is not None:
            self.saved = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {self.cpu})

    def __exit__(self, *exc):
        if self.cpu is not None:
            os.sched_setaffinity(0, self.saved)


def proc_cpu(pid):
    """CPU seconds (user + system) a process has used so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def rfc3339_ms(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def minio_event(bucket, o, t):
    key = urllib.parse.quote_plus(o["key"], safe="")
    return json.dumps({
        "EventName": "s3:ObjectCreated:Put",
        "Key": f"{bucket}/{o['key']}",
        "Records": [{
            "eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "",
            "eventTime": rfc3339_ms(t), "eventName": "s3:ObjectCreated:Put",
            "userIdentity": {"principalId": "minioadmin"},
            "s3": {"s3SchemaVersion": "1.0", "configurationId": "Config",
                   "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
                   "object": {"key": key, "size": o["size"], "eTag": o.get("etag", ""),
                              "contentType": "application/octet-stream",
                              "sequencer": "17CB1A8B3F2C3D4E"}},
            "source": {"host": "127.0.0.1", "port": "", "userAgent": "MinIO (linux; amd64)"},
        }],
    }).encode()


def run_moat(a, label, engine_env, bucket, objs, recv, one_at_a_time, extra="", cpu=None):
    work = os.path.join(a.dir, f"moat-{label}")
    subprocess.run(["rm", "-rf", work], check=True)
    os.makedirs(work)
    queue = f"moat-bench-{label}-{os.getpid()}"
    cfg = os.path.join(work, "moat.toml")
    with open(cfg, "w") as f:
        f.write(f'''data_dir = "{work}"
[bucket]
concurrency = {a.concurrency}
max_size = {64 << 20}
[bucket.s3]
endpoint = "{a.s3}"
access_key = "testing"
secret_key = "testing"
[[bucket.sources]]
type = "amqp"
url = "{a.amqp}"
queue = "{queue}"
exchange = "moat-bench"
routing_key = "bench"
[bucket.notify]
url = "http://127.0.0.1:{recv.port}/moat"
secret = "bench"
report_clean = true
{extra}
''')
    env = dict(os.environ, MOAT_LOG="warn,moat=info", **engine_env)
    logf = open(os.path.join(work, "moat.log"), "wb")
    pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
    p = subprocess.Popen([*pin, a.moat, "bucket", "watch", "--config", cfg], env=env,
                         stdout=subprocess.DEVNULL, stderr=logf)
    procs = [("moat", p.pid), ("moto", a.moto_pid)]
    if "MOAT_CLAMD" in engine_env or "clamd" in extra:
        procs.append(("clamd", clamd_pid(a)))
    cpu0 = {n: proc_cpu(pid) for n, pid in procs}
    try:
        t0 = time.time()
        while b"moat bucket watch ready" not in open(os.path.join(work, "moat.log"), "rb").read():
            if p.poll() is not None or time.time() - t0 > 120:
                raise RuntimeError(f"moat bucket watch did not start; see {work}/moat.log")
            time.sleep(0.1)
        conn = pika.BlockingConnection(pika.URLParameters(a.amqp))
        ch = conn.channel()
        ch.confirm_delivery()
        props = pika.BasicProperties(content_type="application/json")
        recv.reset()
        sent = {}
        t_start = time.time()
        for o in objs:
            t = time.time()
            sent[o["key"]] = t
            ch.basic_publish("moat-bench", "bench", minio_event(bucket, o, t), props)
        t_pub = time.time() - t_start
        if not recv.wait([o["key"] for o in objs], a.timeout):
            raise RuntimeError(f"{label}: only {len(recv.got)} of {len(objs)} verdicts; see {work}/moat.log")
        got = dict(recv.got)
        t_end = max(t for t, _ in got.values())
        lags = [(got[k][0] - sent[k]) * 1000 for k in sent]
        nbytes = sum(o["size"] for o in objs)
        status = {}
        for _, m in got.values():
            status[m.get("status")] = status.get(m.get("status"), 0) + 1
        expected = sum(1 for o in objs if o["infected"])
        wrong = [o["key"] for o in objs
                 if (got[o["key"]][1].get("status") == "infected") != bool(o["infected"])
                 or got[o["key"]][1].get("sha256") != o["sha256"]]
        print(f"moat + {label:<8} burst   {fmt_rate(len(objs), nbytes, t_end - t_start)}")
        busy = {n: (proc_cpu(pid) - cpu0[n]) / (t_end - t_start) * 100 for n, pid in procs}
        print(f"    CPU during the burst: moat {busy['moat']:.0f}%, moto (the S3 server) {busy['moto']:.0f}%"
              f"{', clamd {:.0f}%'.format(busy['clamd']) if 'clamd' in busy else ''} of one core")
        print(f"    event-to-verdict p50 {pct(lags, 50):8.0f} ms   p99 {pct(lags, 99):8.0f} ms   "
              f"(all {len(objs)} events published in {t_pub:.1f} s, so this includes queueing)")
        print(f"    verdicts {json.dumps(status, sort_keys=True)}; expected infected {expected}; "
              f"mismatches {len(wrong)}{' ' + repr(wrong[:5]) if wrong else ''}")
        # One at a time: the latency of one event on an idle watcher.
        lags1 = []
        for o in one_at_a_time:
            recv.reset()
            t = time.time()
            ch.basic_publish("moat-bench", "bench", minio_event(bucket, o, t), props)
            if not recv.wait([o["key"]], 60):
                raise RuntimeError(f"{label}: no verdict for {o['key']}")
            lags1.append((recv.got[o["key"]][0] - t) * 1000)
        sizes = [o["size"] for o in one_at_a_time]
        print(f"    one at a time ({len(one_at_a_time)} objects, median {statistics.median(sizes) / 1e3:.0f} KB): "
              f"event-to-verdict p50 {pct(lags1, 50):6.1f} ms   p99 {pct(lags1, 99):6.1f} ms")
        conn.close()
        return len(objs) / (t_end - t_start), nbytes / (t_end - t_start)
    finally:
        p.terminate()
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moat", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--s3", required=True, help="moto endpoint URL")
    ap.add_argument("--amqp", required=True)
    ap.add_argument("--clamd-port", type=int, required=True)
    ap.add_argument("--clamd-dir", required=True, help="scripts/clamd-test.sh directory (restarted per phase)")
    ap.add_argument("--sigs", required=True, help="signature directory (the one clamd loads)")
    ap.add_argument("--planted", required=True, help="planted.json from gen_sigs.py")
    ap.add_argument("--moto-pid", type=int, default=0, help="for the S3 server's CPU figure")
    ap.add_argument("--objects", type=int, default=2000)
    ap.add_argument("--clamd-pool-size", type=int, default=None,
                    help="moat's clamd engine pool_size (idle IDSESSION connections; 0 = none)")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--timeout", type=int, default=1800)
    ap.add_argument("--moat-clamd-cpu", type=int, default=None,
                    help="CPU for moat in the moat+clamd phase (bucket.sh: the load CPU, so that "
                         "clamd has the engine CPU to itself as in the raw phase; MOAT_CLAMD_CPU=engine "
                         "puts moat beside clamd)")
    ap.add_argument("--engine-cpu", type=int, default=None,
                    help="run what is measured (moat, the raw GET client) on this CPU only; "
                         "bucket.sh pins moto and the load generators to the other CPU, clamd to this one")
    ap.add_argument("--only", default="",
                    help="comma list of phases: get,clamd,builtin,builtin-notag,moat-clamd")
    a = ap.parse_args()
    phases = (set(a.only.split(",")) if a.only
              else {"get", "clamd", "builtin", "builtin-notag", "moat-clamd"})

    planted = json.load(open(a.planted))
    log(f"bench: generating {a.objects} objects")
    every = make_objects(os.path.join(a.dir, "objects"), a.objects + 40, planted, seed=7)
    # The last 40 are only for the one-at-a-time latency (a watcher skips
    # objects it has already scanned with the same engines).
    objs, one = every[:a.objects], every[a.objects:]
    nbytes = sum(o["size"] for o in objs)
    sizes = sorted(o["size"] for o in objs)
    bucket = f"moat-bench-{os.getpid()}"
    log(f"bench: uploading {nbytes / 1e6:.0f} MB to {a.s3}/{bucket}")
    t0 = time.monotonic()
    upload(a.s3, bucket, every, a.concurrency)
    log(f"bench: uploaded in {time.monotonic() - t0:.1f} s")
    print(f"objects: {len(objs)}, {nbytes / 1e6:.0f} MB, sizes 1 KB-10 MB log-uniform "
          f"(median {sizes[len(sizes) // 2] / 1e3:.0f} KB), "
          f"{sum(1 for o in objs if o['infected'])} with a detection; concurrency {a.concurrency}")
    # Later phases read the object files from the page cache.
    for o in objs:
        open(o["path"], "rb").read()

    get_rate = clamd_rate = None
    if "get" in phases:
        secs, total = get_throughput(a, a.s3, bucket, objs, a.concurrency)
        get_rate = (len(objs) / secs, total / secs)
        print(f"S3 GET (moto), raw      {fmt_rate(len(objs), total, secs)}")
    if "clamd" in phases:
        restart_clamd(a)
        cpid = clamd_pid(a)
        c0 = proc_cpu(cpid)
        secs, total, found, errors = clamd_throughput(a.clamd_port, objs, a.concurrency)
        clamd_rate = (len(objs) / secs, total / secs)
        print(f"clamd INSTREAM, raw     {fmt_rate(len(objs), total, secs)}  FOUND {found}"
              f"{'; errors: ' + repr(errors[:3]) if errors else ''}")
        print(f"    CPU: clamd {(proc_cpu(cpid) - c0) / secs * 100:.0f}% of one core")
    if "builtin-notag" in phases:
        # Tagging off (first, while the objects are untagged: a tagged object
        # with the same engines would be skipped): GET, scan, record, notify. Separates
        # moat's own pipeline from the two tagging requests per object.
        r = run_moat(a, "notag", {"MOAT_SIGNATURES": a.sigs}, bucket, objs, Receiver(), one,
                     extra="[bucket.tag]\nenabled = false\n", cpu=a.engine_cpu)
        if get_rate:
            print(f"    => moat builtin without tagging / S3 GET: {r[0] / get_rate[0] * 100:.0f}% of objects/s, "
                  f"{r[1] / get_rate[1] * 100:.0f}% of MB/s")
    if "builtin" in phases:
        r = run_moat(a, "builtin", {"MOAT_SIGNATURES": a.sigs}, bucket, objs, Receiver(), one,
                     cpu=a.engine_cpu)
        if get_rate:
            print(f"    => moat builtin / S3 GET: {r[0] / get_rate[0] * 100:.0f}% of objects/s, "
                  f"{r[1] / get_rate[1] * 100:.0f}% of MB/s (target >= 80%)")
    if "moat-clamd" in phases:
        restart_clamd(a)
        if a.clamd_pool_size is None:
            engine_env, extra = {"MOAT_CLAMD": f"127.0.0.1:{a.clamd_port}"}, ""
        else:
            engine_env = {}
            extra = (f'[[engines]]\ntype = "clamd"\naddress = "127.0.0.1:{a.clamd_port}"\n'
                     f"pool_size = {a.clamd_pool_size}\n")
        # clamd is the engine here and keeps the engine CPU to itself, as in
        # the raw phase; moat runs where --moat-clamd-cpu says.
        if a.moat_clamd_cpu is not None:
            print(f"    (moat on CPU {a.moat_clamd_cpu}, clamd on CPU {a.engine_cpu})")
        r = run_moat(a, "clamd", engine_env, bucket, objs, Receiver(), one, extra=extra,
                     cpu=a.moat_clamd_cpu)
        if clamd_rate:
            print(f"    => moat clamd / clamd raw: {r[0] / clamd_rate[0] * 100:.0f}% of objects/s, "
                  f"{r[1] / clamd_rate[1] * 100:.0f}% of MB/s (target >= 90%)")


if __name__ == "__main__":
    main()
