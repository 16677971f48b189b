#!/usr/bin/env python3
"""Body signatures shaped like real ones: cut from real files on this machine.

ClamAV's body signatures are cut from real malware (PE and ELF machine code,
scripts, documents), so their bytes are common machine-code and data
sequences: function prologues (`f3 0f 1e fa`, `55 48 89 e5`), runs of zero
bytes, ASCII text. Random signatures (bench/../shared gen_sigs.py) never share
a prefix with real files and hide how a matcher behaves on such anchors.

This generator cuts N signatures from ELF binaries (/usr/bin, /usr/lib), PE
files (ClamAV's test files, any MZ file under --pe-dir), text and HTML
(/usr/share/doc), and gives them ClamAV's grammar in realistic proportions:
`??` wildcards, `{n-m}` jumps, `*`, `(aa|bb)` alternatives, leading zero
runs, and groups of signatures cut at the same spot (a shared anchor). Every
signature matches the bytes it was cut from; those bytes are also written,
embedded in random data, as planted files so detections can be compared.

Usage: gen_real_sigs.py OUT_DIR [--count N] [--seed S] [--targeted F] [--planted N]
  writes OUT_DIR/real.ndb, OUT_DIR/planted/NNNN.bin and OUT_DIR/planted.json
  --targeted F: fraction of PE (ELF) cut signatures given target 1 (6)

python3 standard library only; deterministic for a given seed and machine.
"""
import argparse
import json
import os
import random

# Share of signatures by source kind.
KINDS = [("elf", 0.55), ("pe", 0.20), ("text", 0.13), ("html", 0.07), ("zeros", 0.05)]
# Probability that a signature carries each grammar feature.
P_WILD = 0.25  # one to four ?? bytes
P_JUMP = 0.15  # a {n-m} (or {n}) jump
P_STAR = 0.05  # a * (unbounded gap)
P_ALT = 0.08  # a (aa|bb) alternative
P_SHARED = 0.15  # cut at the same spot as an earlier signature (shared anchor)
P_PROLOGUE = 0.20  # ELF/PE cut starting at a common instruction sequence
PROLOGUES = [bytes.fromhex(h) for h in ("f30f1efa", "554889e5", "4883ec", "4889", "488b", "e8")]
MAX_FILE = 32 << 20


def walk(roots, pred, limit):
    out = []
    for root in roots:
        for dp, dirs, files in os.walk(root):
            dirs.sort()
            for n in sorted(files):
                p = os.path.join(dp, n)
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                try:
                    size = os.path.getsize(p)
                except OSError:
                    continue
                if size < 4096 or size > MAX_FILE:
                    continue
                if pred(p):
                    out.append(p)
                    if len(out) >= limit:
                        return out
    return out


def magic(p, m):
    try:
        with open(p, "rb") as f:
            return f.read(len(m)) == m
    except OSError:
        return False


def is_text(p, html):
    low = p.lower()
    if html != (low.endswith(".html") or low.endswith(".htm")):
        return False
    try:
        with open(p, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return bool(head) and all(b in (9, 10, 13) or 32 <= b < 127 for b in head)


class Sources:
    def __init__(self, rnd, pe_dirs):
        self.rnd = rnd
        self.files = {
            "elf": walk(["/usr/bin", "/usr/lib"], lambda p: magic(p, b"\x7fELF"), 3000),
            "pe": walk(["/usr/share/clamav-testfiles"] + pe_dirs, lambda p: magic(p, b"MZ"), 500),
            "text": walk(["/usr/share/doc", "/usr/share/common-licenses"], lambda p: is_text(p, False), 2000),
            "html": walk(["/usr/share/doc"], lambda p: is_text(p, True), 2000),
        }
        self.files["zeros"] = self.files["elf"]
        self.cache = {}

    def data(self, p):
        d = self.cache.get(p)
        if d is None:
            with open(p, "rb") as f:
                d = f.read()
            if len(self.cache) > 200:
                self.cache.clear()
            self.cache[p] = d
        return d

    def pick(self, kind):
        files = self.files[kind] or self.files["elf"]
        return self.data(self.rnd.choice(files))


def start_offset(rnd, kind, d, need):
    """Where to cut: random, after a zero run, or at a common instruction."""
    hi = len(d) - need
    if hi <= 0:
        return None
    if kind == "zeros":
        for _ in range(50):
            i = d.find(b"\0\0\0\0", rnd.randrange(hi))
            if 0 <= i < hi and any(d[i + 4:i + 12]):
                return i
        return None
    if kind in ("elf", "pe") and rnd.random() < P_PROLOGUE:
        pro = rnd.choice(PROLOGUES)
        i = d.find(pro, rnd.randrange(hi))
        if 0 <= i < hi:
            return i
    if kind in ("text", "html"):
        # Start at a word.
        i = rnd.randrange(hi)
        while i < hi and d[i] not in b" \n<>":
            i += 1
        return i + 1 if i + 1 < hi else None
    return rnd.randrange(hi)


def build(rnd, d, off):
    """Cut one signature at d[off:]; returns (hex body, bytes it was cut from) or None."""
    n1 = rnd.choice([8, 12, 16, 16, 20, 24, 32, 40, 48, 64])
    segs = []  # (bytes, gap before next: None | ("jump", lo, hi, k) | ("star", k))
    pos = off
    gaps = []
    if rnd.random() < P_JUMP:
        k = rnd.randint(0, 24)
        lo = rnd.randint(0, k)
        hi = k if rnd.random() < 0.3 else rnd.randint(k, k + 16)
        gaps.append(("jump", lo, hi, k))
    if rnd.random() < P_STAR:
        gaps.append(("star", rnd.randint(0, 300)))
    rnd.shuffle(gaps)
    for g in gaps + [None]:
        n = n1 if not segs else rnd.choice([6, 8, 12, 16, 24])
        seg = d[pos:pos + n]
        if len(seg) < n:
            return None
        segs.append((seg, g))
        pos += n
        if g is not None:
            pos += g[-1]
    source = d[off:pos]
    # Signature writers avoid padding: most bytes non-zero, enough variety.
    body = b"".join(seg for seg, _ in segs)
    if body.count(0) * 2 > len(body) or len(set(body)) < max(4, len(body) // 4):
        return None
    if any(len(set(seg)) < 3 for seg, _ in segs):
        return None
    out = []
    for si, (seg, g) in enumerate(segs):
        toks = ["%02x" % b for b in seg]
        # Keep the first and last two bytes of each segment fixed.
        inner = list(range(2, len(toks) - 2))
        if inner and rnd.random() < P_WILD:
            for i in rnd.sample(inner, min(len(inner), rnd.randint(1, 4))):
                toks[i] = "??"
        inner = [i for i in inner if toks[i] != "??"]
        if inner and rnd.random() < P_ALT:
            i = rnd.choice(inner)
            other = "%02x" % rnd.randrange(256)
            alts = [toks[i], other] + (["%02x" % rnd.randrange(256)] if rnd.random() < 0.3 else [])
            rnd.shuffle(alts)
            if len(set(alts)) == len(alts):
                toks[i] = "(" + "|".join(alts) + ")"
        out.append("".join(toks))
        if g is not None:
            if g[0] == "jump":
                out.append("{%d}" % g[1] if g[1] == g[2] else "{%d-%d}" % (g[1], g[2]))
            else:
                out.append("*")
    return "".join(out), source


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--count", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--targeted", type=float, default=0.0,
                    help="fraction of PE (ELF) cut signatures with target 1 (6)")
    ap.add_argument("--planted", type=int, default=200, help="planted files to write")
    ap.add_argument("--pe-dir", action="append", default=[], help="more directories to take PE files from")
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    src = Sources(rnd, a.pe_dir)
    os.makedirs(os.path.join(a.out_dir, "planted"), exist_ok=True)
    weights = [w for _, w in KINDS]
    names = [k for k, _ in KINDS]
    sigs = []  # (name, target, hex, source bytes)
    seen = set()
    recent = []  # (data, off, kind) of recent cuts, for shared anchors
    while len(sigs) < a.count:
        if recent and rnd.random() < P_SHARED:
            d, off, kind = rnd.choice(recent)
        else:
            kind = rnd.choices(names, weights)[0]
            d = src.pick(kind)
            off = start_offset(rnd, kind, d, 512)
            if off is None:
                continue
            recent.append((d, off, kind))
            if len(recent) > 64:
                recent.pop(0)
        r = build(rnd, d, off)
        if r is None or r[0] in seen:
            continue
        seen.add(r[0])
        target = 0
        if kind == "pe" and rnd.random() < a.targeted:
            target = 1
        elif kind in ("elf", "zeros") and rnd.random() < a.targeted:
            target = 6
        name = "Real.%s.%d" % (kind.capitalize(), len(sigs))
        sigs.append((name, target, r[0], r[1]))
    with open(os.path.join(a.out_dir, "real.ndb"), "w") as f:
        for name, target, body, _ in sigs:
            f.write("%s:%d:*:%s\n" % (name, target, body))
    planted = []
    for i, (name, target, body, source) in enumerate(rnd.sample(sigs, min(a.planted, len(sigs)))):
        host = bytearray(rnd.randbytes(rnd.choice([4096, 65536, 1 << 20])))
        at = rnd.randrange(64, len(host) - len(source))
        host[at:at + len(source)] = source
        if target == 1:
            host[0:2] = b"MZ"
        elif target == 6:
            host[0:4] = b"\x7fELF"
        p = "planted/%04d.bin" % i
        with open(os.path.join(a.out_dir, p), "wb") as f:
            f.write(host)
        planted.append({"file": p, "signature": name})
    with open(os.path.join(a.out_dir, "planted.json"), "w") as f:
        json.dump(planted, f, indent=1)
    counts = {k: sum(1 for s in sigs if s[0].startswith("Real.%s." % k.capitalize())) for k in names}
    feats = {f: sum(1 for s in sigs if t in s[2]) for f, t in
             (("??", "??"), ("{n-m}", "{"), ("*", "*"), ("alt", "("))}
    zero_led = sum(1 for s in sigs if s[2].startswith("00000000"))
    print("wrote %d signatures to %s/real.ndb (%s; features %s; %d begin with 00000000), %d planted files"
          % (len(sigs), a.out_dir, counts, feats, zero_led, len(planted)))
    print("sources: %s" % {k: len(v) for k, v in src.files.items()})


if __name__ == "__main__":
    main()
