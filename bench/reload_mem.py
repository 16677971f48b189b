#!/usr/bin/env python3
"""Reload memory benchmark (issue 15): `moat serve` RSS at start, during and
after hot reloads, with the targets beside the figures.

Starts `moat serve` with the builtin engine on SIGS (by default the shared
bench set, generated into a temporary directory with
`gen_sigs.py --hashes 1000000 --bodies 20000`), waits for /readyz, then
triggers N reloads one after the other (SIGHUP, or touching a signature
file and letting the poller see it) and samples /proc/PID/status every
few milliseconds. With --layout cvd the set is packed as a ClamAV database
directory instead: `main.cvd` holding every signature file of SIGS and a
small `daily.cvd` (1,000 MD5 hashes); `--trigger update` then replaces
`daily.cvd` by the next version (written beside it and renamed, as
`moat signatures update` and freshclam do) and sends SIGHUP: the routine
daily update, with main unchanged; `--trigger update-main` instead writes
the next `main.cvd` with its `.hsb` member edited as `--trigger edit` edits
a file (the rare update of main itself). The containers are not signed, so the
engine is configured with `verify_signatures = false` (a config file).


- fresh:  VmRSS once the process is ready and has settled (idle);
- load peak: VmHWM at that moment (the initial load's peak);
- for each reload: the peak during it (VmHWM, reset before the trigger
  through /proc/PID/clear_refs, and the highest sampled VmRSS), and VmRSS
  after it has finished and the process has been idle for --settle seconds;
- finally VmRSS after --idle more seconds.

Targets (issue 15): after every reload RSS <= 1.10 x fresh; the peak during
a reload < 1.5 x fresh. Exit status 1 when a target is missed.

Usage: reload_mem.py --moat PATH [--sigs DIR] [--reloads 6] [--trigger hup|touch|edit|update|update-main]
                     [--touch NAME,...|all] [--layout files|cvd]
                     [--settle 3] [--idle 10] [--env K=V ...]
"""
import argparse
import gzip
import hashlib
import io
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request

from benchlib import free_port, proc_status_kib

HERE = os.path.dirname(os.path.abspath(__file__))
GEN_SIGS = os.path.join(HERE, "..", "..", "shared", "bench", "gen_sigs.py")


def status(pid):
    """VmRSS and VmHWM of `pid` in KiB."""
    return proc_status_kib(pid, "VmRSS") or 0, proc_status_kib(pid, "VmHWM") or 0


def reset_hwm(pid):
    """Reset VmHWM to the current RSS (Linux >= 4.0)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def mib(kib):
    return kib / 1024.0


def write_cvd(path, version, members):
    """Write a ClamAV container: a 512-byte header, then a gzipped tar of
    `members` ((name, file path or bytes), ...). Unsigned (no digital
    signature): the engine must not verify it. Written beside `path` and
    renamed into place."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, src in members:
            if isinstance(src, bytes):
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(src), 0o644, 0
                tar.addfile(info, io.BytesIO(src))
            else:
                info = tar.gettarinfo(src, arcname=name)
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                with open(src, "rb") as f:
                    tar.addfile(info, f)
    body = gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)
    md5 = hashlib.md5(body).hexdigest()
    header = (f"ClamAV-VDB:30 Nov 2026 00-00 +0000:{version}:{len(members)}:90:{md5}:unsigned:"
              f"reload_mem:1796000000").encode()
    header = header.ljust(512, b" ")
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(header)
        f.write(body)
    os.replace(tmp, path)


def daily_members(version):
    """A small daily database: 1,000 MD5 hashes that differ by version."""
    lines = []
    for i in range(1000):
        data = f"daily-{version}-{i}".encode()
        lines.append(f"{hashlib.md5(data).hexdigest()}:{len(data)}:Bench.Daily.{version}.{i}\n")
    return [("daily.hdb", "".join(lines).encode()), ("daily.info", f"DAILY:{version}\n".encode())]


class Sampler(threading.Thread):
    """Samples VmRSS every `period` seconds; `window()` gives the max since `mark()`."""

    def __init__(self, pid, period=0.005):
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.lock = threading.Lock()
        self.peak = 0
        self.stop = False

    def run(self):
        while not self.stop:
            try:
                rss, _ = status(self.pid)
            except OSError:
                return
            with self.lock:
                self.peak = max(self.peak, rss)
            time.sleep(self.period)

    def mark(self):
        with self.lock:
            self.peak = 0

    def window(self):
        with self.lock:
            return self.peak


class LogWatch(threading.Thread):
    """Counts "engine set reloaded" lines on moat's stderr (and keeps the tail)."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.reloads = 0
        self.failed = 0
        self.load_ms = []
        self.cond = threading.Condition()
        self.tail = []

    def run(self):
        for raw in self.stream:
            line = re.sub(r"\x1b\[[0-9;]*m", "", raw.decode("utf-8", "replace"))
            self.tail = (self.tail + [line])[-40:]
            with self.cond:
                if "engine set reloaded" in line:
                    self.reloads += 1
                    m = re.search(r"ms=(\d+)", line)
                    if m:
                        self.load_ms.append(int(m.group(1)))
                    self.cond.notify_all()
                elif "reload failed" in line:
                    self.failed += 1
                    self.cond.notify_all()

    def wait_for(self, n, timeout):
        end = time.time() + timeout
        with self.cond:
            while self.reloads + self.failed < n:
                left = end - time.time()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True


def wait_ready(url, proc, timeout=600):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except Exception:
            pass
        time.sleep(0.1)
    return False


HEX_RUN = re.compile(rb"[0-9a-fA-F]{32,}")


def edit_file(path, seed, deletes=20, adds=1000):
    """Rewrite a signature file as a database update changes it: `deletes`
    lines removed at random places, `adds` new lines appended (copies of
    random lines with the first 8 hex digits of their hash changed and a
    new name), written beside it and renamed into place."""
    rnd = random.Random(seed)
    with open(path, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    for _ in range(deletes):
        del lines[rnd.randrange(len(lines))]
    new = []
    for k in range(adds):
        line = lines[rnd.randrange(len(lines))].rstrip(b"\n")
        m = HEX_RUN.search(line)
        if not m:
            continue
        head = b"%08x" % rnd.getrandbits(32)
        line = line[:m.start()] + head + line[m.start() + 8:]
        new.append(line + b"-e%d.%d\n" % (seed, k))
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.writelines(lines + new)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moat", required=True)
    ap.add_argument("--sigs", help="signature directory (default: generate the shared bench set)")
    ap.add_argument("--reloads", type=int, default=6)
    ap.add_argument("--trigger", choices=["hup", "touch", "edit", "update", "update-main"], default="hup",
                    help="update: a new daily.cvd (needs --layout cvd), then SIGHUP; "
                         "update-main: a new main.cvd, its .hsb member edited (needs --layout cvd); "
                         "edit: the --touch files rewritten as an update changes them (see edit_file)")
    ap.add_argument("--layout", choices=["files", "cvd"], default="files",
                    help="cvd: SIGS packed as main.cvd plus a small daily.cvd")
    ap.add_argument("--touch", default="",
                    help="with --trigger touch: comma-separated file names in SIGS to "
                         "touch, or 'all' (default: the first hash or body file)")
    ap.add_argument("--settle", type=float, default=3.0, help="idle seconds after each reload before reading RSS")
    ap.add_argument("--idle", type=float, default=10.0, help="idle seconds after the last reload")
    ap.add_argument("--env", action="append", default=[], help="extra K=V for moat's environment")
    a = ap.parse_args()

    tmp = tempfile.TemporaryDirectory(prefix="moat-reload-")
    sigs = a.sigs
    if not sigs:
        sigs = os.path.join(tmp.name, "sigs")
        subprocess.run([sys.executable, GEN_SIGS, sigs, "--hashes", "1000000", "--bodies", "20000"],
                       check=True, stdout=subprocess.DEVNULL)
    if a.trigger in ("update", "update-main") and a.layout != "cvd":
        sys.exit(f"--trigger {a.trigger} needs --layout cvd")
    port = free_port()
    env = dict(os.environ)
    env.update({
        "MOAT_LOG": "info",
        # Poll often when the trigger is a touched file; never otherwise.
        "MOAT__RELOAD__POLL_SECS": "1" if a.trigger in ("touch", "edit") else "0",
    })
    cmd_extra = []
    daily_version = 27000
    if a.layout == "cvd":
        db = os.path.join(tmp.name, "clamav")
        os.makedirs(db)
        sig_exts = (".hdb", ".hsb", ".mdb", ".msb", ".imp", ".ndb", ".ldb", ".fp", ".sfp", ".ign", ".ign2")
        files = [f for f in sorted(os.listdir(sigs)) if f.endswith(sig_exts)]
        exts = [os.path.splitext(f)[1] for f in files]
        # bench.hsb becomes main.hsb (as in ClamAV's main.cvd) when the names stay unique.
        names = [f"main{e}" for e in exts] if len(set(exts)) == len(exts) else files
        # Members are read from copies, which update-main edits.
        src = os.path.join(tmp.name, "main-src")
        os.makedirs(src)
        for f in files:
            shutil.copyfile(os.path.join(sigs, f), os.path.join(src, f))
        main_members = [(n, os.path.join(src, f)) for n, f in zip(names, files)]
        main_version = 62
        write_cvd(os.path.join(db, "main.cvd"), main_version, main_members)
        write_cvd(os.path.join(db, "daily.cvd"), daily_version, daily_members(daily_version))
        print(f"main.cvd {os.path.getsize(os.path.join(db, 'main.cvd')) / 2**20:.1f} MB "
              f"({', '.join(files)}), daily.cvd {os.path.getsize(os.path.join(db, 'daily.cvd')) / 1024:.0f} KB")
        conf = os.path.join(tmp.name, "moat.toml")
        with open(conf, "w") as f:
            f.write(f'[[engines]]\ntype = "builtin"\nsignatures = ["{db}"]\nverify_signatures = false\n')
        cmd_extra = ["--config", conf]
        sigs = db
    else:
        env["MOAT_SIGNATURES"] = sigs
    for kv in a.env:
        k, v = kv.split("=", 1)
        env[k] = v
    cmd = [a.moat, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", os.path.join(tmp.name, "data")]
    cmd += cmd_extra
    t0 = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    logs = LogWatch(proc.stderr)
    logs.start()
    try:
        if not wait_ready(f"http://127.0.0.1:{port}/readyz", proc):
            sys.stderr.write("".join(logs.tail))
            sys.exit("moat serve did not become ready")
        ready_s = time.time() - t0
        time.sleep(a.settle)
        fresh, load_hwm = status(proc.pid)
        sampler = Sampler(proc.pid)
        sampler.start()
        sig_files = [f for f in sorted(os.listdir(sigs)) if f.endswith((".hsb", ".hdb", ".ndb", ".cvd"))]
        if a.touch == "all":
            touch_files = [os.path.join(sigs, f) for f in sig_files]
        elif a.touch:
            touch_files = [os.path.join(sigs, f) for f in a.touch.split(",")]
        else:
            touch_files = [os.path.join(sigs, sig_files[0])]
        if a.trigger in ("touch", "edit"):
            print(f"{a.trigger}ing:", ", ".join(os.path.basename(f) for f in touch_files))
        rows = []
        for i in range(1, a.reloads + 1):
            before, _ = status(proc.pid)
            reset_hwm(proc.pid)
            sampler.mark()
            started = time.time()
            if a.trigger == "hup":
                proc.send_signal(signal.SIGHUP)
            elif a.trigger == "update-main":
                main_version += 1
                for _, f in main_members:
                    if f.endswith(".hsb"):
                        edit_file(f, i)
                write_cvd(os.path.join(sigs, "main.cvd"), main_version, main_members)
                started = time.time()
                proc.send_signal(signal.SIGHUP)
            elif a.trigger == "update":
                daily_version += 1
                write_cvd(os.path.join(sigs, "daily.cvd"), daily_version, daily_members(daily_version))
                started = time.time()
                proc.send_signal(signal.SIGHUP)
            elif a.trigger == "edit":
                for f in touch_files:
                    edit_file(f, i)
                started = time.time()
            else:
                now = time.time()
                for f in touch_files:
                    os.utime(f, (now, now))
            if not logs.wait_for(i, 600):
                sys.stderr.write("".join(logs.tail))
                sys.exit(f"reload {i} did not finish")
            took = time.time() - started
            time.sleep(a.settle)
            after, hwm = status(proc.pid)
            peak = max(hwm, sampler.window())
            rows.append((i, before, peak, after, took))
        time.sleep(a.idle)
        final, _ = status(proc.pid)
        sampler.stop = True
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()

    after_max, peak_target = 1.10 * fresh, 1.5 * fresh
    print(f"moat serve reload memory: {a.moat}, signatures {sigs}, trigger {a.trigger}, "
          f"{a.reloads} reloads, settle {a.settle:g} s")
    extra = " ".join(a.env)
    if extra:
        print(f"environment: {extra}")
    print(f"ready after {ready_s:.1f} s; initial load peak (VmHWM) {mib(load_hwm):.0f} MiB; "
          f"reload failures {logs.failed}; reload times {logs.load_ms} ms")
    print(f"fresh start RSS: {mib(fresh):.0f} MiB  (targets: after a reload <= {mib(after_max):.0f} MiB, "
          f"peak during a reload < {mib(peak_target):.0f} MiB)")
    print(f"{'reload':>6} {'before MiB':>10} {'peak MiB':>9} {'x fresh':>7} {'after MiB':>9} {'x fresh':>7} "
          f"{'wall s':>6}  targets")
    ok = logs.failed == 0
    for i, before, peak, after, took in rows:
        pk_ok, af_ok = peak < peak_target, after <= after_max
        ok &= pk_ok and af_ok
        print(f"{i:>6} {mib(before):>10.0f} {mib(peak):>9.0f} {peak / fresh:>7.2f} {mib(after):>9.0f} "
              f"{after / fresh:>7.2f} {took:>6.1f}  peak {'ok' if pk_ok else 'MISSED'}, "
              f"after {'ok' if af_ok else 'MISSED'}")
    fin_ok = final <= after_max
    ok &= fin_ok
    print(f"after {a.idle:g} s idle: {mib(final):.0f} MiB ({final / fresh:.2f} x fresh) "
          f"{'ok' if fin_ok else 'MISSED'}")
    print("all targets met" if ok else "targets MISSED")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
