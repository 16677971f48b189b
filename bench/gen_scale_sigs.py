#!/usr/bin/env python3
"""A signature set the size and shape of ClamAV's official databases.

Issue 11's "realistic scale" benchmark: at --scale 1, 4,000,000 PE section
hashes (.mdb), 2,400,000 SHA-256 file hashes (.hsb), 100,000 body signatures
(.ndb, half of them PE-targeted) and 40,000 logical signatures (.ldb, with
body, PCRE and byte-compare subsignatures). The proportions are those of
main.cvd + daily.cvd (CLAMAV-SIGNATURES.md).

Shapes:
- .mdb `Size:MD5:Name`: section sizes as PE sections have them (file
  alignment multiples, log-spread from 512 B to 4 MiB), random MD5s, plus the
  real sections of the PE files written to OUT_DIR/pe (so those files are
  detected by section hash).
- .hsb `SHA256:Size:Name`: random hashes, log-spread sizes, plus the SHA-256
  of a few of the PE files.
- .ndb: bodies cut from real files by gen_real_sigs.py's cutter (`??`,
  `{n-m}`, `*`, alternatives, shared anchors, zero runs); half get target 1
  and are cut from x86 machine code (PE files and ELF text), the rest are
  the generator's usual mix with target 0.
- .ldb: 1-5 body subsignatures cut close together from one real file
  (`0&1&2`, `(0|1)&2`, counts), text ones sometimes `::i`; 15 % add a PCRE
  subsignature built from words of a text file, 5 % a byte compare whose
  value is the bytes the trigger was cut from. Target 1 for those cut from
  PE files, else 0.
Names follow ClamAV's `Platform.Category.Family-Number` shape.

Usage: gen_scale_sigs.py OUT_DIR [--scale F] [--seed S] [--pe-dir D]...
  writes OUT_DIR/sigs/scale.{mdb,hsb,ndb,ldb} and OUT_DIR/pe/*.exe (PE files
  to add to the scanned corpus).

python3 standard library only; deterministic for a given seed and machine.
"""
import argparse
import hashlib
import os
import random
import re
import shutil
import struct

import gen_real_sigs as g

PLATFORMS = ["Win", "Win", "Win", "Unix", "Html", "Doc", "Txt", "Js", "Andr", "Osx"]
CATEGORIES = ["Trojan", "Trojan", "Malware", "Downloader", "Dropper", "Exploit", "Virus", "Worm", "Adware", "Spyware"]
FAMILIES = ["Agent", "Zbot", "Emotet", "Generic", "Mirai", "Gafgyt", "Ramnit", "Sality", "Virut", "Expiro",
            "Kryptik", "Nsis", "Upatre", "Razy", "Tofsee", "Ursnif", "Qakbot", "Lokibot", "Formbook", "Dridex"]


class Names:
    def __init__(self, rnd):
        self.rnd = rnd
        self.n = 0

    def __call__(self):
        self.n += 1
        r = self.rnd
        return "%s.%s.%s-%d-%d" % (r.choice(PLATFORMS), r.choice(CATEGORIES), r.choice(FAMILIES),
                                   r.randrange(1, 10_000_000), self.n)


def pe_sections(d):
    """(raw size, raw bytes) of each section of a PE file, or [] if not a PE."""
    try:
        if d[:2] != b"MZ":
            return []
        pe = struct.unpack_from("<I", d, 0x3C)[0]
        if d[pe:pe + 4] != b"PE\0\0":
            return []
        nsec = struct.unpack_from("<H", d, pe + 6)[0]
        opt = struct.unpack_from("<H", d, pe + 20)[0]
        sh = pe + 24 + opt
        out = []
        for i in range(nsec):
            raw_size, raw_ptr = struct.unpack_from("<II", d, sh + 40 * i + 16)
            if raw_size and raw_ptr + raw_size <= len(d):
                out.append((raw_size, d[raw_ptr:raw_ptr + raw_size]))
        return out
    except struct.error:
        return []


def section_size(rnd):
    align = rnd.choice([512, 512, 512, 4096])
    return max(1, int(2 ** rnd.uniform(0, 13))) * align


def write_mdb(path, rnd, count, names, pes):
    real = []
    for i, d in enumerate(pes):
        secs = pe_sections(d)
        if secs and i % 2 == 0:
            size, data = rnd.choice(secs)
            real.append("%d:%s:%s" % (size, hashlib.md5(data).hexdigest(), names()))
    with open(path, "w") as f:
        for i in range(count - len(real)):
            f.write("%d:%032x:%s\n" % (section_size(rnd), rnd.getrandbits(128), names()))
        for line in real:
            f.write(line + "\n")
    return len(real)


def write_hsb(path, rnd, count, names, pes):
    real = ["%s:%d:%s" % (hashlib.sha256(d).hexdigest(), len(d), names()) for d in pes[1::3]]
    with open(path, "w") as f:
        for _ in range(count - len(real)):
            f.write("%064x:%d:%s\n" % (rnd.getrandbits(256), int(2 ** rnd.uniform(10, 23)), names()))
        for line in real:
            f.write(line + "\n")
    return len(real)


def cut(rnd, src, kind, seen):
    for _ in range(100):
        d = src.pick(kind)
        off = g.start_offset(rnd, kind, d, 512)
        if off is None:
            continue
        r = g.build(rnd, d, off)
        if r is not None and r[0] not in seen:
            seen.add(r[0])
            return r[0], d, off
    return None


def write_ndb(path, rnd, count, names, src):
    seen = set()
    kinds = [k for k, _ in g.KINDS]
    weights = [w for _, w in g.KINDS]
    n = 0
    with open(path, "w") as f:
        while n < count:
            if n % 2 == 0:
                kind, target = rnd.choice(["pe", "elf"]), 1
            else:
                kind, target = rnd.choices(kinds, weights)[0], 0
            r = cut(rnd, src, kind, seen)
            if r is None:
                continue
            f.write("%s:%d:*:%s\n" % (names(), target, r[0]))
            n += 1


WORD = re.compile(rb"[A-Za-z][A-Za-z0-9]{2,11}")


def pcre_from(rnd, d):
    """A regex over a few consecutive words of a text file, or None."""
    for _ in range(20):
        at = rnd.randrange(max(1, len(d) - 400))
        words = WORD.findall(d[at:at + 400])
        if len(words) >= 4:
            k = rnd.randrange(len(words) - 3)
            parts = [w.decode() for w in words[k:k + rnd.randint(2, 4)]]
            if rnd.random() < 0.3:
                parts[-1] = "[A-Za-z0-9]+"
            return r"[^A-Za-z0-9]+".join(parts), rnd.random() < 0.3
    return None


def write_ldb(path, rnd, count, names, src):
    seen = set()
    n = 0
    stats = {"pcre": 0, "bytecmp": 0, "nocase": 0, "subsigs": 0}
    with open(path, "w") as f:
        while n < count:
            kind = rnd.choices(["pe", "elf", "text", "html"], [0.35, 0.25, 0.25, 0.15])[0]
            d = src.pick(kind)
            base = g.start_offset(rnd, kind, d, 8192)
            if base is None:
                continue
            k = rnd.choices([1, 2, 3, 4, 5], [0.15, 0.3, 0.3, 0.15, 0.1])[0]
            subs, offs = [], []
            off = base
            for _ in range(k * 4):
                if len(subs) == k:
                    break
                r = g.build(rnd, d, off)
                if r is not None and r[0] not in seen:
                    seen.add(r[0])
                    body = r[0]
                    if kind in ("text", "html") and "*" not in body and rnd.random() < 0.3:
                        body += "::i"
                        stats["nocase"] += 1
                    subs.append(body)
                    offs.append(off)
                off += rnd.randint(16, 1024)
                if off + 600 > len(d):
                    break
            if not subs:
                continue
            idx = list(range(len(subs)))
            if len(idx) >= 3 and rnd.random() < 0.3:
                expr = "(%d|%d)&%s" % (idx[0], idx[1], "&".join(map(str, idx[2:])))
            elif len(idx) == 1 and rnd.random() < 0.2:
                expr = "0>0"
            else:
                expr = "&".join(map(str, idx))
            extra = []
            if rnd.random() < 0.15:
                t = src.pick("text")
                p = pcre_from(rnd, t if kind in ("pe", "elf") else d)
                if p is not None:
                    extra.append("0/%s/%s" % (p[0], "i" if p[1] else ""))
                    stats["pcre"] += 1
            if rnd.random() < 0.05 and "*" not in subs[0] and "{" not in subs[0]:
                at = offs[0] + 4
                v = int.from_bytes(d[at:at + 2], "big")
                extra.append("0(>>4#ib2#=0x%x)" % v)
                stats["bytecmp"] += 1
            for e in extra:
                expr = "(%s)&%d" % (expr, len(subs)) if "|" in expr else "%s&%d" % (expr, len(subs))
                subs.append(e)
            target = 1 if kind == "pe" else 0
            f.write("%s;Engine:81-255,Target:%d;%s;%s\n" % (names(), target, expr, ";".join(subs)))
            stats["subsigs"] += len(subs)
            n += 1
    return stats


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pe-dir", action="append", default=[], help="more directories to take PE files from")
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    src = g.Sources(rnd, a.pe_dir)
    names = Names(rnd)
    sigs = os.path.join(a.out_dir, "sigs")
    pedir = os.path.join(a.out_dir, "pe")
    os.makedirs(sigs, exist_ok=True)
    os.makedirs(pedir, exist_ok=True)
    pes = []
    for i, p in enumerate(src.files["pe"]):
        shutil.copyfile(p, os.path.join(pedir, "%03d-%s" % (i, os.path.basename(p))))
        pes.append(src.data(p))
    n = {k: max(1, int(v * a.scale)) for k, v in
         (("mdb", 4_000_000), ("hsb", 2_400_000), ("ndb", 100_000), ("ldb", 40_000))}
    real_mdb = write_mdb(os.path.join(sigs, "scale.mdb"), rnd, n["mdb"], names, pes)
    real_hsb = write_hsb(os.path.join(sigs, "scale.hsb"), rnd, n["hsb"], names, pes)
    write_ndb(os.path.join(sigs, "scale.ndb"), rnd, n["ndb"], names, src)
    st = write_ldb(os.path.join(sigs, "scale.ldb"), rnd, n["ldb"], names, src)
    print("wrote %s to %s (%d .mdb and %d .hsb lines from the %d PE files in %s); .ldb: %s"
          % (n, sigs, real_mdb, real_hsb, len(pes), pedir, st))


if __name__ == "__main__":
    main()
