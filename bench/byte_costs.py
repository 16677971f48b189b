#!/usr/bin/env python3
"""Byte costs for the ndb anchor choice (crates/scan/builtin/src/ndb/anchor.rs,
BYTE_COST): -8*log2 of each byte's frequency over a sample of this machine's
files (executables, Python sources, documentation, Windows launchers), capped
at 255. Prints the Rust table rows.

Usage: byte_costs.py
"""
import glob
import math
import os
import sys

cnt = [0] * 256
total = 0


def add(p, cap):
    global total
    try:
        with open(p, "rb") as f:
            d = f.read(cap)
    except OSError:
        return
    for b in range(256):
        cnt[b] += d.count(bytes([b]))
    total += len(d)


SAMPLES = {
    "elf": ("/usr/bin", 60 << 20),
    "text": (glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/lib/python3.12"))[:1] or ["/usr/lib/python3"])[0],
    "doc": ("/usr/share/doc", 5 << 20),
}
SAMPLES["text"] = (SAMPLES["text"], 20 << 20)
SKIP = (".gz", ".pyc", ".so", ".a", ".exe", ".zip")
for kind, (root, budget) in SAMPLES.items():
    used = 0
    for r, ds, fs in os.walk(root):
        ds.sort()
        for f in sorted(fs):
            p = os.path.join(r, f)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            if kind != "elf" and p.endswith(SKIP):
                continue
            s = os.path.getsize(p)
            if s < 256:
                continue
            add(p, 4 << 20)
            used += min(s, 4 << 20)
            if used >= budget:
                break
        if used >= budget:
            break
    print(kind, root, used, file=sys.stderr)
for p in glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/lib/python3.12/site-packages/pip/_vendor/distlib/*.exe")):
    add(p, 4 << 20)
print("total", total, file=sys.stderr)
cost = [min(255, int(round(-math.log2(max(c, 1) / total) * 8))) for c in cnt]
for i in range(0, 256, 16):
    print("    " + ", ".join(f"{x:2d}" for x in cost[i:i + 16]) + f", // {i:02x}")
