#!/usr/bin/env python3
"""Realistic-signature benchmark: clamscan vs moat scan, side by side.

Signatures come from gen_real_sigs.py (cut from real files). Prints for each
tool: load time, wall time, MB/s, peak RSS and detections, and compares the
detections file by file and name by name (clamscan --allmatch; ClamAV's
.UNOFFICIAL suffix dropped).

Usage: real_bench.py --moat PATH --sigs DIR --corpus DIR [--runs N]
"""
import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scan_bench import corpus_bytes, parse_clam_lines, rel, run, run_rss  # noqa: E402


def best(f, runs):
    rs = [f() for _ in range(runs)]
    return min(rs, key=lambda r: r["wall_s"])


def clamscan(a, size):
    with tempfile.NamedTemporaryFile() as empty:
        load, _, _, _ = run(["clamscan", "--no-summary", "-d", a.sigs, empty.name])
    wall, code, rss, out, _ = run_rss(["clamscan", "--allmatch", "--no-summary", "-d", a.sigs, "-r", a.corpus])
    det = {k: sorted({n.replace(".UNOFFICIAL", "") for n in v}) for k, v in parse_clam_lines(a.corpus, out).items()}
    return {"name": "clamscan", "load_s": load, "wall_s": wall, "rss_mib": rss, "mbps": size / 1e6 / wall,
            "det": det, "exit": code}


def moat(a, size, jobs):
    import re
    cmd = [a.moat, "scan", "--json", "--signatures", a.sigs]
    if jobs:
        cmd += ["-j", str(jobs)]
    cmd.append(a.corpus)
    wall, code, rss, out, err = run_rss(cmd)
    m = re.search(r"Engine load time: ([0-9.]+) s", err)
    det = {}
    for line in out.splitlines():
        v = json.loads(line)
        if v["status"] in ("infected", "suspicious"):
            det[rel(a.corpus, v["path"])] = sorted({f["signature"] for f in v["findings"]})
        elif v["status"] != "clean":
            print(f"  note: {v['path']}: {v['status']} {v.get('reason')}", file=sys.stderr)
    name = f"moat scan -j{jobs}" if jobs else f"moat scan (-j{os.cpu_count()})"
    return {"name": name, "load_s": float(m.group(1)) if m else float("nan"), "wall_s": wall, "rss_mib": rss,
            "mbps": size / 1e6 / wall, "det": det, "exit": code}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moat", required=True)
    ap.add_argument("--sigs", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--runs", type=int, default=1)
    a = ap.parse_args()
    size = corpus_bytes(a.corpus)
    rows = [best(lambda: clamscan(a, size), a.runs), best(lambda: moat(a, size, 1), a.runs),
            best(lambda: moat(a, size, 0), a.runs)]
    print(f"corpus {size / 1e6:.1f} MB, signatures {a.sigs}")
    print(f"{'tool':<18} {'load s':>7} {'wall s':>7} {'MB/s':>7} {'RSS MiB':>8} {'files det.':>10} {'names':>6}")
    for r in rows:
        names = sum(len(v) for v in r["det"].values())
        print(f"{r['name']:<18} {r['load_s']:7.2f} {r['wall_s']:7.2f} {r['mbps']:7.1f} {r['rss_mib']:8.0f} "
              f"{len(r['det']):10d} {names:6d}")
    ref = rows[0]["det"]
    for r in rows[1:]:
        d = r["det"]
        only_clam = {k: sorted(set(v) - set(d.get(k, []))) for k, v in ref.items()}
        only_moat = {k: sorted(set(v) - set(ref.get(k, []))) for k, v in d.items()}
        only_clam = {k: v for k, v in only_clam.items() if v}
        only_moat = {k: v for k, v in only_moat.items() if v}
        same = not only_clam and not only_moat
        print(f"{r['name']}: detections {'identical to clamscan' if same else 'DIFFER'}"
              f" (only clamscan: {sum(map(len, only_clam.values()))} names in {len(only_clam)} files,"
              f" only moat: {sum(map(len, only_moat.values()))} names in {len(only_moat)} files)")
        for k, v in list(only_clam.items())[:5]:
            print(f"  only clamscan {k}: {v[:4]}")
        for k, v in list(only_moat.items())[:5]:
            print(f"  only moat     {k}: {v[:4]}")


if __name__ == "__main__":
    main()
