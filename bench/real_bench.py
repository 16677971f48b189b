#!/usr/bin/env python3
"""Realistic-signature benchmark: clamscan vs moat scan, side by side.

Signatures come from gen_real_sigs.py (cut from real files). Prints for each
tool: load time, wall time, MB/s, peak RSS and detections, and compares the
detections file by file: in all-match mode name by name against clamscan
--allmatch (ClamAV's .UNOFFICIAL suffix dropped); in the default first-match
mode the same files as clamscan's default, each with one name that clamscan
--allmatch also gives.

moat scan keeps the compiled signature set in a cache ($XDG_CACHE_HOME/moat/
builtin): "cold" rows run with an empty cache (compile, then write the entry),
"warm" rows with the entry a previous run wrote (the set is read, not compiled).

Usage: real_bench.py --moat PATH --sigs DIR --corpus DIR [--runs N] [--mode all|first|both]
"""
import argparse
import json
import os
import sys
import subprocess
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from scan_bench import corpus_bytes, parse_clam_lines, rel, run, run_rss  # noqa: E402


def best(f, runs):
    rs = [f() for _ in range(runs)]
    return min(rs, key=lambda r: r["wall_s"])


def clamscan(a, size, all_match):
    with tempfile.NamedTemporaryFile() as empty:
        load, _, _, _ = run(["clamscan", "--no-summary", "-d", a.sigs, empty.name])
    cmd = ["clamscan"] + (["--allmatch"] if all_match else []) + ["--no-summary", "-d", a.sigs, "-r", a.corpus]
    wall, code, rss, out, _ = run_rss(cmd)
    det = {k: sorted({n.replace(".UNOFFICIAL", "") for n in v}) for k, v in parse_clam_lines(a.corpus, out).items()}
    name = "clamscan --allmatch" if all_match else "clamscan"
    return {"name": name, "load_s": load, "wall_s": wall, "rss_mib": rss, "mbps": size / 1e6 / wall,
            "det": det, "exit": code}


WARM = tempfile.TemporaryDirectory(prefix="moat-bench-cache-")


def moat(a, size, jobs, all_match, warm=True):
    import re
    cmd = [a.moat, "scan", "--json", "--signatures", a.sigs] + (["--allmatch"] if all_match else [])
    if jobs:
        cmd += ["-j", str(jobs)]
    cmd.append(a.corpus)
    with tempfile.TemporaryDirectory(prefix="moat-bench-cold-") as cold:
        cache = WARM.name if warm else cold
        if warm:
            # The entry a previous run wrote (one empty scan writes it).
            subprocess.run(cmd[:-1] + [cold], env=dict(os.environ, XDG_CACHE_HOME=cache),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.environ["XDG_CACHE_HOME"] = cache
        try:
            wall, code, rss, out, err = run_rss(cmd)
        finally:
            del os.environ["XDG_CACHE_HOME"]
    m = re.search(r"Engine load time: ([0-9.]+) s", err)
    det = {}
    for line in out.splitlines():
        v = json.loads(line)
        if v["status"] in ("infected", "suspicious"):
            det[rel(a.corpus, v["path"])] = sorted({f["signature"] for f in v["findings"]})
        elif v["status"] != "clean":
            print(f"  note: {v['path']}: {v['status']} {v.get('reason')}", file=sys.stderr)
    name = f"moat scan -j{jobs}" if jobs else f"moat scan (-j{os.cpu_count()})"
    if all_match:
        name += " --allmatch"
    name += " warm" if warm else " cold"
    return {"name": name, "load_s": float(m.group(1)) if m else float("nan"), "wall_s": wall, "rss_mib": rss,
            "mbps": size / 1e6 / wall, "det": det, "exit": code}


def table(rows):
    print(f"{'tool':<36} {'load s':>7} {'wall s':>7} {'MB/s':>7} {'RSS MiB':>8} {'files det.':>10} {'names':>6}")
    for r in rows:
        names = sum(len(v) for v in r["det"].values())
        print(f"{r['name']:<36} {r['load_s']:7.2f} {r['wall_s']:7.2f} {r['mbps']:7.1f} {r['rss_mib']:8.0f} "
              f"{len(r['det']):10d} {names:6d}")


def compare_all(ref, r):
    d = r["det"]
    only_clam = {k: sorted(set(v) - set(d.get(k, []))) for k, v in ref.items()}
    only_moat = {k: sorted(set(v) - set(ref.get(k, []))) for k, v in d.items()}
    only_clam = {k: v for k, v in only_clam.items() if v}
    only_moat = {k: v for k, v in only_moat.items() if v}
    same = not only_clam and not only_moat
    print(f"{r['name']}: detections {'identical to clamscan --allmatch' if same else 'DIFFER'}"
          f" (only clamscan: {sum(map(len, only_clam.values()))} names in {len(only_clam)} files,"
          f" only moat: {sum(map(len, only_moat.values()))} names in {len(only_moat)} files)")
    for k, v in list(only_clam.items())[:5]:
        print(f"  only clamscan {k}: {v[:4]}")
    if len(only_clam) > 5:
        rest = ", ".join(f"{k} ({len(v)})" for k, v in list(only_clam.items())[5:])
        print(f"  only clamscan, the other files: {rest}")
    for k, v in list(only_moat.items())[:5]:
        print(f"  only moat     {k}: {v[:4]}")


def compare_first(first, every, r):
    """First-match mode: same files detected as clamscan's default, one name
    each, every name one of clamscan --allmatch's for that file."""
    d = r["det"]
    files_differ = sorted(set(first) ^ set(d))
    not_in_all = {k: v for k, v in d.items() if not set(v) <= set(every.get(k, []))}
    several = {k: v for k, v in d.items() if len(v) > 1}
    ok = not files_differ and not not_in_all and not several
    print(f"{r['name']}: {'same files as clamscan, names among --allmatch' if ok else 'DIFFER'}"
          f" ({len(files_differ)} files detected by one only, {len(not_in_all)} names outside --allmatch,"
          f" {len(several)} files with several names)")
    for k in files_differ[:5]:
        print(f"  detected by one only: {k}: clamscan {first.get(k)}, moat {d.get(k)}")
    for k, v in list(not_in_all.items())[:5]:
        print(f"  name outside --allmatch: {k}: {v}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moat", required=True)
    ap.add_argument("--sigs", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--mode", choices=["all", "first", "both"], default="both",
                    help="all: --allmatch on both sides; first: both default (first match per file)")
    a = ap.parse_args()
    size = corpus_bytes(a.corpus)
    print(f"corpus {size / 1e6:.1f} MB, signatures {a.sigs}")
    every = best(lambda: clamscan(a, size, True), a.runs)
    if a.mode in ("all", "both"):
        rows = [every, best(lambda: moat(a, size, 1, True, False), a.runs), best(lambda: moat(a, size, 1, True), a.runs),
                best(lambda: moat(a, size, 0, True), a.runs)]
        table(rows)
        for r in rows[1:]:
            compare_all(every["det"], r)
    if a.mode in ("first", "both"):
        rows = [best(lambda: clamscan(a, size, False), a.runs), best(lambda: moat(a, size, 1, False, False), a.runs),
                best(lambda: moat(a, size, 1, False), a.runs), best(lambda: moat(a, size, 0, False), a.runs)]
        table(rows)
        for r in rows[1:]:
            compare_first(rows[0]["det"], every["det"], r)


if __name__ == "__main__":
    main()
