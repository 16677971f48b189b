#!/usr/bin/env python3
"""Web UI benchmark (issue 13): prints figures, not a test.

1. Dashboard queries at N scan records (default 1,000,000) on SQLite and on
   PostgreSQL: `moat serve` creates its schema, the records are bulk-loaded
   (spread evenly over the last 7 days, so every chart window is full; 6
   sources, 97 % clean), the per-minute counts are built from them as
   `record()` would have, then every request the dashboard makes is timed
   with curl (median and p95 of --runs requests, server on loopback).
2. The recipient page and the dashboard in Chromium (playwright-core, the
   same as the browser tests): first contentful paint and bytes transferred
   (navigation + every resource, from the Performance API), a fresh browser
   context per run, so nothing is cached.

Targets from the issue: recipient page < 100 KB and < 300 ms to first
render; every dashboard query < 100 ms at 1,000,000 records.

Usage: webui_bench.py --moat PATH [--records N] [--runs R] [--pg URL]
  (NODE_PATH/MOAT_TEST_NODE_MODULES and MOAT_TEST_POSTGRES_URL as
  `eval "$(bash scripts/test-deps.sh)"` sets them)
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from benchlib import free_port

ADMIN = "admin@example.com"
ADMIN_PW = "correct horse battery staple"
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
MIN = 60_000
SOURCES = [("api", 40), ("proxy", 30), ("bucket", 15), ("portal", 10), ("clamd", 3), ("icap", 2)]
STATUSES = [("clean", 970), ("infected", 20), ("error", 5), ("unscannable", 5)]


class Serve:
    def __init__(self, moat, data, db_url):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, MOAT__RELOAD__POLL_SECS="0")
        if db_url:
            env["MOAT_DATABASE_URL"] = db_url
        self.log = open(data + ".log", "ab")
        self.p = subprocess.Popen(
            [moat, "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", data],
            env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        t = time.monotonic()
        while time.monotonic() - t < 120:
            if self.p.poll() is not None:
                raise RuntimeError(f"moat serve exited ({data}.log)")
            try:
                urllib.request.urlopen(self.base + "/healthz", timeout=1).read()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("moat serve did not start")

    def stop(self):
        self.p.terminate()
        self.p.wait(60)


def post(url, body, headers=None):
    req = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def uuid7ish(ms, rnd):
    h = f"{ms:012x}"
    r = f"{rnd.getrandbits(74):019x}"
    return f"{h[:8]}-{h[8:12]}-7{r[:3]}-8{r[3:6]}-{r[6:18]}"


def rows(n, templates, now):
    """The records: created_at evenly over the last 7 days, oldest first."""
    rnd = random.Random(13)
    srcs = [s for s, w in SOURCES for _ in range(w)]
    stats = [s for s, w in STATUSES for _ in range(w)]
    span = 7 * 24 * 60 * MIN - MIN
    start = now - span
    for i in range(n):
        ms = start + span * i // n
        status = rnd.choice(stats)
        src = rnd.choice(srcs)
        v = templates[status]
        yield (uuid7ish(ms, rnd), ms, src, f"file-{i}.bin", status,
               None if status == "clean" else ("error" if status == "error" else None),
               v["sha256"], v["size"], "bench", 0, json.dumps(v), "null")


def verdict_templates(base):
    """A real clean and infected verdict from the running server; the other
    statuses as the clean one with its status changed."""
    clean = post(base + "/v1/scan?name=a.txt", b"hello bench")
    bad = post(base + "/v1/scan?name=eicar.com", EICAR)
    keep = lambda v: {k: v[k] for k in v if k not in ("id", "name", "source", "created_at", "cached", "fingerprint", "action")}
    t = {"clean": keep(clean), "infected": keep(bad)}
    for s in ("error", "unscannable"):
        t[s] = dict(t["clean"], status=s)
    return t


COUNTS = ("INSERT INTO moat_scan_counts (minute, source, status, n) "
          "SELECT created_at - (created_at % 60000), source, status, COUNT(*) FROM moat_scans GROUP BY 1, 2, 3; "
          "INSERT INTO moat_scan_counts_hour (hour, source, status, n) "
          "SELECT created_at - (created_at % 3600000), source, status, COUNT(*) FROM moat_scans GROUP BY 1, 2, 3")


def load_sqlite(path, n, templates, now):
    import sqlite3
    c = sqlite3.connect(path)
    c.execute("DELETE FROM moat_scans")
    c.execute("DELETE FROM moat_scan_counts")
    c.execute("DELETE FROM moat_scan_counts_hour")
    c.executemany("INSERT INTO moat_scans VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows(n, templates, now))
    c.executescript(COUNTS)
    c.execute("ANALYZE")
    c.commit()
    c.close()


def load_pg(url, n, templates, now, tmp):
    import csv
    f = os.path.join(tmp, "rows.csv")
    with open(f, "w", newline="") as out:
        w = csv.writer(out)
        for r in rows(n, templates, now):
            w.writerow(["" if x is None else x for x in r])
    sql = ("DELETE FROM moat_scans; DELETE FROM moat_scan_counts; DELETE FROM moat_scan_counts_hour;\n"
           f"\\copy moat_scans FROM '{f}' WITH (FORMAT csv, NULL '')\n"
           f"{COUNTS};\nANALYZE moat_scans; ANALYZE moat_scan_counts; ANALYZE moat_scan_counts_hour;\n")
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", url], input=sql.encode(), check=True)


QUERIES = [
    ("chart, last hour", "/v1/stats/verdicts?window=hour"),
    ("chart, last day", "/v1/stats/verdicts?window=day"),
    ("chart, last week", "/v1/stats/verdicts?window=week"),
    ("recent scans (100)", "/v1/scans?limit=100"),
    ("recent, verdict=infected", "/v1/scans?limit=100&status=infected"),
    ("recent, source=icap", "/v1/scans?limit=100&source=icap"),
    ("recent, icap+infected", "/v1/scans?limit=100&source=icap&status=infected"),
    ("queues", "/v1/stats/queues"),
    ("engines", "/v1/engines"),
    ("readyz (roles, engines, db)", "/readyz"),
]


def time_queries(base, runs):
    out = []
    for name, path in QUERIES:
        ts = []
        for _ in range(runs):
            r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{time_total}", base + path],
                               capture_output=True, text=True, check=True)
            code, t = r.stdout.split()
            if code not in ("200", "503"):
                raise RuntimeError(f"{path}: HTTP {code}")
            ts.append(float(t) * 1000)
        ts.sort()
        out.append((name, statistics.median(ts), ts[min(len(ts) - 1, int(len(ts) * 0.95))]))
    return out


BROWSER_JS = r"""
const { chromium } = require('playwright-core');
(async () => {
  const [base, recipient, email, password, runs] = process.argv.slice(2);
  const browser = await chromium.launch({ executablePath: process.env.MOAT_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-dev-shm-usage'] });
  const out = {};
  async function measure(name, url, ready, signIn) {
    const res = [];
    for (let i = 0; i < Number(runs); i++) {
      const ctx = await browser.newContext({ viewport: { width: 1100, height: 900 } });
      if (signIn) await ctx.request.post(base + '/v1/portal/auth/login', { data: { email, password } });
      const page = await ctx.newPage();
      await page.goto(url);
      await page.locator(ready).first().waitFor();
      await page.waitForTimeout(200);
      const m = await page.evaluate(() => {
        const nav = performance.getEntriesByType('navigation')[0];
        const fcp = performance.getEntriesByName('first-contentful-paint')[0];
        const bytes = [nav, ...performance.getEntriesByType('resource')].reduce((a, e) => a + (e.transferSize || 0), 0);
        return { fcp: fcp ? fcp.startTime : null, bytes, resources: performance.getEntriesByType('resource').length,
                 ttfb: nav.responseStart, loaded: nav.loadEventEnd };
      });
      res.push(m);
      await ctx.close();
    }
    out[name] = res;
  }
  await measure('recipient', recipient, '#files a', false);
  await measure('dashboard', base + '/admin', '#engines tbody tr', true);
  await browser.close();
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e); process.exit(1); });
"""


def cli(moat, data, args, stdin=None, db_url=None):
    env = dict(os.environ)
    if db_url:
        env["MOAT_DATABASE_URL"] = db_url
    r = subprocess.run([moat, "portal", *args, "--data-dir", data], input=stdin, capture_output=True,
                       env=env, check=True)
    return r.stdout.decode().strip()


def browser(moat, data, base, tmp, runs):
    cli(moat, data, ["create-admin", "--email", ADMIN, "--password-stdin"], stdin=(ADMIN_PW + "\n").encode())
    token = cli(moat, data, ["create-token", "--email", ADMIN])
    h = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    pkg = post(base + "/v1/portal/packages", json.dumps({"access": "public", "message": "Quarterly figures"}).encode(), h)
    boundary = "benchboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"report.pdf\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode() + os.urandom(200_000) + f"\r\n--{boundary}--\r\n".encode()
    post(base + f"/v1/portal/packages/{pkg['id']}/files", body,
         {"Authorization": h["Authorization"], "Content-Type": f"multipart/form-data; boundary={boundary}"})
    post(base + f"/v1/portal/packages/{pkg['id']}/submit", b"", {"Authorization": h["Authorization"]})
    t = time.monotonic()
    while get(base + f"/v1/portal/packages/{pkg['id']}", {"Authorization": h["Authorization"]})["state"] != "available":
        if time.monotonic() - t > 120:
            raise RuntimeError("package never available")
        time.sleep(0.2)
    link = pkg["links"]["public"].rsplit("/", 1)[-1]
    js = os.path.join(tmp, "measure.js")
    with open(js, "w") as f:
        f.write(BROWSER_JS)
    env = dict(os.environ)
    env.setdefault("NODE_PATH", os.environ.get("MOAT_TEST_NODE_MODULES",
                                               os.path.expanduser("~/.cache/moat-test-node/node_modules")))
    r = subprocess.run(["node", js, base, f"{base}/p/{link}", ADMIN, ADMIN_PW, str(runs)],
                       capture_output=True, text=True, env=env, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moat", required=True)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--browser-runs", type=int, default=5)
    ap.add_argument("--pg", default=os.environ.get("MOAT_TEST_POSTGRES_URL", ""))
    a = ap.parse_args()
    os.environ["PGOPTIONS"] = "--client-min-messages=warning"
    print(f"load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}; "
          f"records: {a.records:,}; runs per query: {a.runs}")
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        backends = [("sqlite", None)]
        schema = f"moat_bench_{os.getpid()}"
        if a.pg:
            subprocess.run(["psql", "-q", a.pg, "-c", f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"],
                           check=True)
            sep = "&" if "?" in a.pg else "?"
            backends.append(("postgres", f"{a.pg}{sep}options=-csearch_path%3D{schema}"))
        page = None
        try:
            for name, url in backends:
                data = os.path.join(tmp, name)
                s = Serve(a.moat, data, url)
                try:
                    templates = verdict_templates(s.base)
                finally:
                    s.stop()
                now = int(time.time() * 1000)
                t = time.monotonic()
                if url:
                    load_pg(url, a.records, templates, now, tmp)
                else:
                    load_sqlite(os.path.join(data, "moat.db"), a.records, templates, now)
                print(f"{name}: loaded {a.records:,} records in {time.monotonic() - t:.1f} s")
                s = Serve(a.moat, data, url)
                try:
                    results[name] = time_queries(s.base, a.runs)
                    if name == "sqlite":
                        page = browser(a.moat, data, s.base, tmp, a.browser_runs)
                finally:
                    s.stop()
        finally:
            if a.pg:
                subprocess.run(["psql", "-q", a.pg, "-c", f"DROP SCHEMA IF EXISTS {schema} CASCADE"])
    print()
    print(f"Dashboard requests at {a.records:,} records, ms (median / p95 of {a.runs}); target < 100")
    names = list(results)
    print(f"| request | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for i, (q, _) in enumerate(QUERIES):
        cells = [f"{results[n][i][1]:.1f} / {results[n][i][2]:.1f}" for n in names]
        print(f"| {q} | " + " | ".join(cells) + " |")
    if page:
        print()
        print(f"Pages in Chromium, fresh context per run (median of {a.browser_runs}); "
              "targets: recipient < 100 KB, < 300 ms to first render")
        print("| page | first contentful paint, ms | transferred, KB | resources |")
        print("|---|---|---|---|")
        for p, res in page.items():
            fcp = statistics.median([r["fcp"] for r in res if r["fcp"] is not None] or [float("nan")])
            kb = statistics.median([r["bytes"] for r in res]) / 1000
            n = statistics.median([r["resources"] for r in res])
            print(f"| {p} | {fcp:.0f} | {kb:.1f} | {n:.0f} |")


if __name__ == "__main__":
    sys.exit(main())
