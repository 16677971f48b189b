#!/usr/bin/env python3
"""Protocol server benchmark (issue 14): prints figures, not a test.

clamd INSTREAM: every corpus file streamed at concurrency C into
  (a) real clamd with the signatures, and
  (b) `moat clamd` (builtin engine, same signatures, verdict cache off).
ICAP REQMOD: every corpus file as a POST body into
  (c) c-icap with its virus_scan service talking to (a) through clamd_mod, and
  (d) `moat icap` (builtin engine, same signatures, cache off).

For each: files/s, MB/s, p50/p99 latency per file, and detections compared
per file between the servers of the same protocol (name for name, modulo
ClamAV's `.UNOFFICIAL` suffix; ICAP: blocked or not, and the threat name when
the server reports one).

The load client is `bench/protocol_client.rs` (std-only Rust, compiled here
with rustc; `--client rust`, the default), so the client's own CPU stays
small next to the servers' on a shared machine; `--client python` uses the
threads below instead. Both send the same requests (one connection per file,
64 KiB chunks, ICAP without Preview) and their replies go through the same
verdict functions. Besides the servers' CPU seconds the script prints the
client's (children's rusage for the Rust client, its own for Python).

Usage: protocol_bench.py --moat PATH --sigs DIR --corpus DIR [--conc 1,8]
                         [--max-files N] [--skip icap] [--client rust|python]
                         [--moat-sigs DIR]

`--moat-sigs DIR` gives moat another signature set than the references (an
empty directory: the builtin EICAR signature only). That measures moat's
per-file cost with (almost) no matching, the floor under any matcher work;
detections then differ from the references and are reported as such.
"""
import argparse
import json
import concurrent.futures as cf
import os
import re
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

from benchlib import free_port, proc_status_kib


def recv_all(s):
    chunks = []
    while True:
        b = s.recv(65536)
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks)


def clamd_ping(port, timeout=2):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"zPING\0")
        return recv_all(s)


def wait_port(name, port, check, proc, limit=600):
    t = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        try:
            if check(port):
                return time.monotonic() - t
        except OSError:
            pass
        if time.monotonic() - t > limit:
            raise RuntimeError(f"{name} did not start in {limit} s")
        time.sleep(0.05)


def instream(port, path):
    """One INSTREAM on a fresh connection; returns the reply without `stream: `."""
    with socket.create_connection(("127.0.0.1", port), timeout=600) as s, open(path, "rb") as f:
        s.sendall(b"zINSTREAM\0")
        while True:
            b = f.read(65536)
            if not b:
                break
            s.sendall(struct.pack(">I", len(b)) + b)
        s.sendall(struct.pack(">I", 0))
        return instream_reply(recv_all(s))


def instream_reply(raw):
    """A raw INSTREAM reply without the `stream: ` prefix."""
    r = raw.decode(errors="replace").rstrip("\0").strip()
    return r[len("stream: "):] if r.startswith("stream: ") else r


def clamd_verdict(reply):
    if reply == "OK":
        return "clean"
    m = re.match(r"^(.+) FOUND$", reply)
    if m:
        return "found:" + m.group(1).replace(".UNOFFICIAL", "")
    return "error:" + reply


def read_icap_response(s):
    """Reads one ICAP response; returns (status, headers dict, encapsulated bytes)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        b = s.recv(65536)
        if not b:
            raise OSError("connection closed before the ICAP head")
        buf += b
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    enc = hdrs.get("encapsulated", "")
    if status == 200 and "body=" in enc and "null-body" not in enc:
        # Read to the terminating zero-length chunk (the block page is small).
        while not rest.endswith(b"0\r\n\r\n"):
            b = s.recv(65536)
            if not b:
                break
            rest += b
    return status, hdrs, rest


def icap_reqmod(port, service, path):
    size = os.path.getsize(path)
    http = (f"POST /upload HTTP/1.1\r\nHost: upstream.test\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    icap = (f"REQMOD icap://127.0.0.1:{port}/{service} ICAP/1.0\r\nHost: 127.0.0.1:{port}\r\n"
            f"Allow: 204\r\nConnection: close\r\nEncapsulated: req-hdr=0, req-body={len(http)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=600) as s, open(path, "rb") as f:
        s.sendall(icap + http)
        while True:
            b = f.read(65536)
            if not b:
                break
            s.sendall(b"%x\r\n" % len(b) + b + b"\r\n")
        s.sendall(b"0\r\n\r\n")
        status, hdrs, body = read_icap_response(s)
    return icap_verdict(status, hdrs, body)


def icap_verdict(status, hdrs, body):
    """Verdict from an ICAP reply: status, lower-case headers, encapsulated bytes."""
    if status == 204:
        return "clean"
    if status == 200:
        name = None
        m = re.search(r"Threat=([^;]+);", hdrs.get("x-infection-found", ""))
        if m:
            name = m.group(1).strip()
        elif hdrs.get("x-virus-id"):
            name = hdrs["x-virus-id"]
        if name is None:
            # c-icap's virus_scan puts the name only into its block page.
            m = re.search(rb"(?:virus|Virus)[^<]*?<[^>]*>\s*([A-Za-z0-9_.:\-]+)", body)
            name = m.group(1).decode() if m else "?"
        if re.search(rb"HTTP/1\.[01] 403", body) or name != "?":
            return "found:" + name.replace(".UNOFFICIAL", "")
        return "modified"
    return f"error:ICAP {status}"


def pct_ms(lat, q):
    return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000


def run_load(fn, files, conc):
    """Python client: returns (wall s, p50 ms, p99 ms, {path: verdict}, client CPU s)."""
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    lat = []
    res = {}
    t0 = time.monotonic()

    def one(p):
        t = time.monotonic()
        try:
            v = fn(p)
        except OSError as e:
            v = f"error:{e}"
        return p, v, time.monotonic() - t

    with cf.ThreadPoolExecutor(max_workers=conc) as ex:
        for p, v, dt in ex.map(one, files):
            res[p] = v
            lat.append(dt)
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    lat.sort()
    ccpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    return wall, pct_ms(lat, 0.50), pct_ms(lat, 0.99), res, ccpu


def build_client(work):
    """Compiles bench/protocol_client.rs (std only) into WORK; returns its path."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "protocol_client.rs")
    out = os.path.join(work, "protocol_client")
    subprocess.run(["rustc", "-O", "--edition", "2021", "-o", out, src], check=True)
    return out


def run_load_rust(client, proto, port, files, conc):
    """Rust client: same return as run_load. Wall time is the client's own
    (first connect to last reply); client CPU is its rusage."""
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([client, proto, f"127.0.0.1:{port}", str(conc), "--service", "avscan"],
                       input="".join(f + "\n" for f in files).encode(), stdout=subprocess.PIPE, check=True)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    lat = []
    res = {}
    wall = None
    for line in p.stdout.decode().splitlines():
        o = json.loads(line)
        if "wall_us" in o:
            wall = o["wall_us"] / 1e6
            continue
        lat.append(o["us"] / 1e6)
        if "error" in o:
            v = "error:" + o["error"]
        elif proto == "clamd":
            v = clamd_verdict(instream_reply(o["reply"].encode("latin-1")))
        else:
            hdrs = {"x-infection-found": o["xif"], "x-virus-id": o["xvid"]}
            v = icap_verdict(o["status"], hdrs, o["body"].encode("latin-1"))
        res[o["path"]] = v
    if wall is None or len(res) != len(files):
        raise RuntimeError(f"protocol_client returned {len(res)} of {len(files)} files")
    lat.sort()
    ccpu = ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime
    return wall, pct_ms(lat, 0.50), pct_ms(lat, 0.99), res, ccpu


def same_detection(x, y, want):
    """Two answers for one file agree when both are clean, or both found a
    name the manifest allows for it (a first-match server may report any one
    of several signatures planted for the same file: a hash set's `.md5`
    twin, or EICAR as the builtin `Eicar-Test-Signature` or the set's own
    EICAR body signature)."""
    if x == y:
        return True
    if not (x.startswith("found:") and y and y.startswith("found:")):
        return False
    if "?" in (x[6:], y[6:]) or want is None:
        return True

    def ok(n):
        return any(("eicar" in n.lower()) if sig == "EICAR" else (n == sig or n.startswith(sig + "."))
                   for sig in want.get("signatures", [])) or "eicar" in n.lower() and any(
            "eicar" in sig.lower() for sig in want.get("signatures", []))

    return ok(x[6:]) and ok(y[6:])


def compare(a, b, manifest):
    """Files on which the two servers disagree (see same_detection)."""
    diff = []
    for p in a:
        x, y = a[p], b.get(p)
        want = manifest.get(p)
        if not same_detection(x, y, want):
            diff.append((p, x, y))
    return diff


def judge(manifest, res):
    """Against the corpus manifest: (found, expected, missed, false positives)."""
    exp = sum(1 for p in res if manifest.get(p, {}).get("expect") == "infected")
    found = missed = fp = 0
    for p, v in res.items():
        want = manifest.get(p)
        if want is None:
            continue
        hit = v.startswith("found:")
        if want["expect"] == "infected":
            found += hit
            missed += not hit
        elif hit:
            fp += 1
    return found, exp, missed, fp


def cpu_seconds(root_pid):
    """utime + stime of a process and its children still running (c-icap
    serves from child processes), in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(d), int(st[1])
        if pid == root_pid or ppid == root_pid:
            total += int(st[11]) + int(st[12])
    return total / tick


def rss_mib(pid):
    kib = proc_status_kib(pid, "VmHWM")
    return kib / 1024.0 if kib else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moat", required=True)
    ap.add_argument("--sigs", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--conc", default="1,8")
    ap.add_argument("--max-files", type=int, default=0, help="first N files only (sorted); 0: all")
    ap.add_argument("--skip", default="", help="icap and/or clamd")
    ap.add_argument("--client", default="rust", choices=["rust", "python"],
                    help="load client: bench/protocol_client.rs compiled with rustc (default), or Python threads")
    ap.add_argument("--moat-sigs", default=None,
                    help="signatures for moat's servers only (default: --sigs); an empty directory measures the floor")
    a = ap.parse_args()
    moat_sigs = a.moat_sigs or a.sigs
    skip = set(filter(None, a.skip.split(",")))
    files = sorted(os.path.join(r, f) for r, _, fs in os.walk(a.corpus) for f in fs if f != "manifest.json")
    mpath = os.path.join(a.corpus, "manifest.json")
    rel_manifest = json.load(open(mpath)) if os.path.exists(mpath) else {}
    manifest = {os.path.join(a.corpus, k): v for k, v in rel_manifest.items()}
    if a.max_files:
        files = files[: a.max_files]
    size = sum(os.path.getsize(p) for p in files)
    concs = [int(c) for c in a.conc.split(",")]
    print(f"corpus: {len(files)} files, {size / 1e6:.1f} MB; signatures: {a.sigs}; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; client {a.client}", flush=True)
    if moat_sigs != a.sigs:
        print(f"moat's servers use other signatures: {moat_sigs} (detections will differ)", flush=True)

    work = tempfile.mkdtemp(prefix="moat-protobench-")
    procs = []
    try:
        client = build_client(work) if a.client == "rust" else None
        cport, mport, iport, miport = free_port(), free_port(), free_port(), free_port()
        maxthreads = max(concs) + 2
        with open(f"{work}/clamd.conf", "w") as f:
            f.write(f"Foreground yes\nTCPSocket {cport}\nTCPAddr 127.0.0.1\nLocalSocket {work}/clamd.sock\n"
                    f"DatabaseDirectory {a.sigs}\nLogFile {work}/clamd.log\nMaxThreads {maxthreads}\n"
                    f"MaxQueue {maxthreads * 4}\nUser root\nTemporaryDirectory {work}\n"
                    "MaxFileSize 400M\nMaxScanSize 400M\nStreamMaxLength 400M\n")
        clamd = shutil.which("clamd") or "/usr/sbin/clamd"
        pc = subprocess.Popen([clamd, "-c", f"{work}/clamd.conf"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        procs.append(pc)
        env = dict(os.environ, MOAT__SERVER__CACHE="false", MOAT_LOG="warn")
        pm = subprocess.Popen([a.moat, "clamd", "--listen", f"127.0.0.1:{mport}", "--data-dir", f"{work}/mc",
                               "--signatures", moat_sigs], env=env, stdout=subprocess.DEVNULL,
                              stderr=open(f"{work}/moat-clamd.log", "w"))
        procs.append(pm)
        load_c = wait_port("clamd", cport, lambda p: b"PONG" in clamd_ping(p), pc)
        load_m = wait_port("moat clamd", mport, lambda p: b"PONG" in clamd_ping(p), pm)
        print(f"start to PONG: clamd {load_c:.2f} s, moat clamd {load_m:.2f} s", flush=True)

        rows = []

        def bench(label, proto, port, conc, pids):
            cpu0 = sum(cpu_seconds(p) for p in pids)
            if client:
                wall, p50, p99, res, ccpu = run_load_rust(client, proto, port, files, conc)
            elif proto == "clamd":
                wall, p50, p99, res, ccpu = run_load(lambda p: clamd_verdict(instream(port, p)), files, conc)
            else:
                wall, p50, p99, res, ccpu = run_load(lambda p: icap_reqmod(port, "avscan", p), files, conc)
            cpu = sum(cpu_seconds(p) for p in pids) - cpu0
            rows.append((label, conc, wall, p50, p99, res))
            errs = sum(1 for v in res.values() if v.startswith("error"))
            found, exp, missed, fp = judge(manifest, res)
            print(f"{label:<28} c={conc:<2} {len(files) / wall:7.1f} files/s {size / 1e6 / wall:7.1f} MB/s "
                  f"p50 {p50:7.1f} ms p99 {p99:7.1f} ms  server CPU {cpu:6.1f} s "
                  f"({cpu * 1000 / len(files):5.2f} ms/file) client CPU {ccpu:5.1f} s  "
                  f"found {found}/{exp} missed {missed} fp {fp} errors {errs}  "
                  f"server peak RSS {rss_mib(pids[0]):5.0f} MiB", flush=True)
            return res

        if "clamd" not in skip:
            for conc in concs:
                r1 = bench("clamd INSTREAM", "clamd", cport, conc, [pc.pid])
                r2 = bench("moat clamd INSTREAM", "clamd", mport, conc, [pm.pid])
                d = compare(r1, r2, manifest)
                t1 = rows[-2][2]
                t2 = rows[-1][2]
                print(f"  c={conc}: moat/clamd throughput {t1 / t2:.2f}x (target >= 5x); "
                      f"detections {'identical' if not d else f'{len(d)} files differ'}", flush=True)
                for p, x, y in d[:10]:
                    print(f"    {os.path.relpath(p, a.corpus)}: clamd {x} / moat {y}")

        if "icap" not in skip:
            with open(f"{work}/c-icap.conf", "w") as f:
                f.write(f"PidFile {work}/c-icap.pid\nCommandsSocket {work}/c-icap.ctl\nTimeout 300\n"
                        f"MaxKeepAliveRequests 100\nKeepAliveTimeout 600\nStartServers 1\nMaxServers 4\n"
                        f"MinSpareThreads {maxthreads}\nMaxSpareThreads {maxthreads * 2}\n"
                        f"ThreadsPerChild {maxthreads * 2}\nMaxRequestsPerChild 0\nPort 127.0.0.1:{iport}\n"
                        f"TmpDir {work}\nMaxMemObject 131072\nDebugLevel 0\nPipelining on\n"
                        "ModulesDir /usr/lib/x86_64-linux-gnu/c_icap\nServicesDir /usr/lib/x86_64-linux-gnu/c_icap\n"
                        "TemplateDir /usr/share/c_icap/templates/\nTemplateDefaultLanguage en\n"
                        "LoadMagicFile /etc/c-icap/c-icap.magic\n"
                        f"ServerLog {work}/c-icap-server.log\nAccessLog {work}/c-icap-access.log\n"
                        "Module common clamd_mod.so\n"
                        f"clamd_mod.ClamdSocket {work}/clamd.sock\n"
                        "Service antivirus_module virus_scan.so\n"
                        "ServiceAlias avscan virus_scan?allow204=on&sizelimit=off&mode=simple\n"
                        "virus_scan.ScanFileTypes TEXT DATA EXECUTABLE ARCHIVE GIF JPEG MSOFFICE\n"
                        "virus_scan.MaxObjectSize 400M\nvirus_scan.DefaultEngine clamd\n")
            pi = subprocess.Popen(["c-icap", "-N", "-f", f"{work}/c-icap.conf"], stdout=subprocess.DEVNULL,
                                  stderr=open(f"{work}/c-icap.stderr", "w"))
            procs.append(pi)
            pmi = subprocess.Popen([a.moat, "icap", "--listen", f"127.0.0.1:{miport}", "--data-dir",
                                    f"{work}/mi", "--signatures", moat_sigs], env=env,
                                   stdout=subprocess.DEVNULL, stderr=open(f"{work}/moat-icap.log", "w"))
            procs.append(pmi)

            def icap_up(port):
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.sendall(f"OPTIONS icap://127.0.0.1:{port}/avscan ICAP/1.0\r\nHost: x\r\n"
                              "Connection: close\r\nEncapsulated: null-body=0\r\n\r\n".encode())
                    st, _, _ = read_icap_response(s)
                    return st == 200

            wait_port("c-icap", iport, icap_up, pi)
            wait_port("moat icap", miport, icap_up, pmi)
            for conc in concs:
                r1 = bench("c-icap+clamd REQMOD", "icap", iport, conc, [pc.pid, pi.pid])
                r2 = bench("moat icap REQMOD", "icap", miport, conc, [pmi.pid])
                d = compare(r1, r2, manifest)
                t1 = rows[-2][2]
                t2 = rows[-1][2]
                print(f"  c={conc}: moat/c-icap throughput {t1 / t2:.2f}x (target >= 3x); "
                      f"detections {'identical' if not d else f'{len(d)} files differ'}", flush=True)
                for p, x, y in d[:10]:
                    print(f"    {os.path.relpath(p, a.corpus)}: c-icap {x} / moat {y}")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        if os.environ.get("BENCH_KEEP"):
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
