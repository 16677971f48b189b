#!/usr/bin/env python3
"""YARA load benchmark: yara 4 (Debian `yara`) vs moat cold and warm.

Generates a rule collection shaped like public ones (hundreds of files, each
with a few rules: text strings with modifiers, hex strings with wildcards,
jumps and alternatives, regexes, conditions over `pe`, `math`, `hash` and the
externals; some private rules referenced by others; a few broken files, as
collections have), then times, on the same files:

  yara        `yara` compiling every file (one namespace each) and scanning an
              empty file: what yara pays at every start
  yarac+yara  `yara -C` loading a collection precompiled by `yarac`
  moat cold   the yara_load example (moat-yara's loader) with an empty cache
              directory: compile + write the cache
  moat nocache  the same without a cache
  moat warm   the same again, reading the cache

Wall times are whole processes (start to exit), best of --runs. It checks that
every file yara compiles on its own (`yarac FILE`) also loads in moat, and
prints moat's per-object scan time with 1 KiB objects.

Usage: yara_load.py --bin target/.../examples/yara_load [--files 741] [--runs 3]
       [--rules DIR (use an existing collection instead of generating)]
       yara_load.py --moat target/release/moat ...   (whole `moat scan --yara
       RULES empty` processes instead of the example: cold = an empty
       XDG_CACHE_HOME, warm = the same again; load ms from moat's "yara rules
       loaded" log line; no "no cache" or per-object scan figures)
"""
import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time

EXTERNALS = ["filename", "filepath", "extension", "filetype", "owner"]

WORDS = (
    "cmd powershell invoke download string webclient http https payload inject "
    "shell exec loader stager beacon implant mutex global service svchost rundll32 "
    "regsvr32 mshta wscript cscript temp appdata roaming startup run once software "
    "microsoft windows currentversion policies token privilege debug lsass dump "
    "credential password vault browser cookie wallet bitcoin monero miner stratum "
    "pool tcp socket connect recv send encrypt decrypt ransom readme key aes rsa "
    "base64 gzip deflate xor rc4 config c2 panel gate upload victim bot id"
).split()
TLDS = ["com", "net", "org", "ru", "cn", "info", "biz", "top", "xyz"]
DLL_FUNCS = [
    ("kernel32.dll", "VirtualAlloc"), ("kernel32.dll", "VirtualProtect"),
    ("kernel32.dll", "CreateRemoteThread"), ("kernel32.dll", "WriteProcessMemory"),
    ("kernel32.dll", "LoadLibraryA"), ("kernel32.dll", "GetProcAddress"),
    ("advapi32.dll", "RegSetValueExA"), ("advapi32.dll", "CryptEncrypt"),
    ("ws2_32.dll", "connect"), ("wininet.dll", "InternetOpenUrlA"),
    ("ntdll.dll", "NtUnmapViewOfSection"), ("user32.dll", "SetWindowsHookExA"),
]
SECTIONS = [".text", ".data", ".rdata", ".rsrc", ".reloc", "UPX0", "UPX1", ".vmp0", ".themida", ".enigma1", ".aspack"]


def ident(r, n=2):
    return "_".join(r.choice(WORDS).capitalize() for _ in range(n))


def text_string(r):
    kind = r.random()
    if kind < 0.3:
        s = f"{r.choice(WORDS)}.{r.choice(['exe', 'dll', 'ps1', 'vbs', 'bat', 'php'])}"
    elif kind < 0.5:
        s = f"http://{r.choice(WORDS)}{r.randint(1, 999)}.{r.choice(TLDS)}/{r.choice(WORDS)}.php"
    elif kind < 0.7:
        s = "\\\\".join(["Software", "Microsoft", "Windows", "CurrentVersion", r.choice(["Run", "RunOnce", "Policies"])])
    elif kind < 0.85:
        s = " ".join(r.choice(WORDS) for _ in range(r.randint(2, 5)))
    else:
        s = "".join(r.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(r.randint(8, 20)))
    mods = []
    if r.random() < 0.35:
        mods.append("ascii wide")
    if r.random() < 0.3:
        mods.append("nocase")
    if r.random() < 0.15:
        mods.append("fullword")
    return f'"{s}"' + (" " + " ".join(mods) if mods else "")


def hex_string(r):
    parts = []
    for i in range(r.randint(6, 20)):
        x = r.random()
        if x < 0.08 and i > 1:
            parts.append("??")
        elif x < 0.12 and i > 1:
            lo = r.randint(0, 4)
            parts.append(f"[{lo}-{lo + r.randint(1, 8)}]")
        elif x < 0.15 and i > 1:
            parts.append(f"( {r.randint(0, 255):02X} | {r.randint(0, 255):02X} {r.randint(0, 255):02X} )")
        else:
            parts.append(f"{r.randint(0, 255):02X}")
    # Never end on a wildcard or a jump.
    parts.append(f"{r.randint(0, 255):02X}")
    return "{ " + " ".join(parts) + " }"


def regex_string(r):
    return r.choice([
        f"/https?:\\/\\/[a-z0-9\\.\\-]{{5,40}}\\/{r.choice(WORDS)}\\.php/ nocase",
        "/[A-Za-z0-9+\\/]{60,}={0,2}/",
        f"/{r.choice(WORDS)}[0-9]{{2,6}}\\.(exe|dll|scr)/ nocase",
        f"/\\-{r.choice(WORDS)} [a-z]{{3,12}}/",
        "/[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}:[0-9]{2,5}/",
        f"/{r.choice(WORDS)}_[a-f0-9]{{16,32}}/",
    ])


def condition(r, n_s, n_h, n_r, privates):
    strings = []
    if n_s:
        strings.append(r.choice([f"{min(n_s, r.randint(1, 3))} of ($s*)", "any of ($s*)", "all of ($s*)"]))
    if n_h:
        strings.append(r.choice(["any of ($h*)", "all of ($h*)", f"(#h1 > {r.randint(1, 3)} or any of ($h*))"]))
    if n_r:
        strings.append("$r1")
    core = f"({' or '.join(strings)})" if strings else "true"
    kind = r.random()
    if kind < 0.25:
        c = f"uint16(0) == 0x5A4D and filesize < {r.randint(1, 9)}MB and {core}"
    elif kind < 0.4:
        dll, fn = r.choice(DLL_FUNCS)
        c = f'pe.is_pe and pe.number_of_sections > {r.randint(2, 5)} and pe.imports("{dll}", "{fn}") and {core}'
    elif kind < 0.48:
        c = f'pe.imphash() == "{"".join(r.choice("0123456789abcdef") for _ in range(32))}" or {core}'
    elif kind < 0.58:
        c = (f'uint16(0) == 0x5A4D and for any i in (0 .. pe.number_of_sections - 1) : '
             f'(pe.sections[i].name == "{r.choice(SECTIONS)}" and '
             f'math.entropy(pe.sections[i].raw_data_offset, pe.sections[i].raw_data_size) > {r.choice(["6.8", "7.2", "7.5"])}) and {core}')
    elif kind < 0.66:
        c = f"math.entropy(0, filesize) > 7.{r.randint(0, 9)} and filesize < {r.randint(100, 900)}KB and {core}"
    elif kind < 0.72:
        c = f'filesize < 2MB and hash.md5(0, filesize) == "{"".join(r.choice("0123456789abcdef") for _ in range(32))}" or {core}'
    elif kind < 0.78:
        c = f'pe.exports("{r.choice(["ServiceMain", "DllRegisterServer", "Start", "ReflectiveLoader"])}") and {core}'
    elif kind < 0.84:
        c = f'(extension == "{r.choice(["exe", "dll", "ps1", "js"])}" or filename matches /{r.choice(WORDS)}/i) and {core}'
    elif kind < 0.88:
        c = f"uint32(0) == 0x464C457F and {core}"
    else:
        c = core
    if privates and r.random() < 0.2:
        c = f"{r.choice(privates)} and ({c})"
    return c


def rule_text(r, name, private=False, privates=()):
    n_s = r.randint(0, 6)
    n_h = r.randint(0, 3)
    n_r = 1 if r.random() < 0.3 else 0
    if n_s + n_h + n_r == 0:
        n_s = 2
    lines = [f"{'private ' if private else ''}rule {name}", "{", "    meta:",
             f'        description = "Detects {" ".join(r.choice(WORDS) for _ in range(4))}"',
             '        author = "moat bench generator"',
             f'        date = "20{r.randint(15, 25)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"',
             f'        hash1 = "{"".join(r.choice("0123456789abcdef") for _ in range(64))}"',
             "    strings:"]
    for i in range(n_s):
        lines.append(f"        $s{i + 1} = {text_string(r)}")
    for i in range(n_h):
        lines.append(f"        $h{i + 1} = {hex_string(r)}")
    for i in range(n_r):
        lines.append(f"        $r{i + 1} = {regex_string(r)}")
    lines.append("    condition:")
    lines.append("        " + condition(r, n_s, n_h, n_r, list(privates)))
    lines.append("}")
    return "\n".join(lines) + "\n"


def generate(out, files, seed):
    r = random.Random(seed)
    os.makedirs(out, exist_ok=True)
    for f in range(files):
        sub = os.path.join(out, r.choice(["apt", "crime", "hacktools", "webshells", "maldocs", "exploits"]))
        os.makedirs(sub, exist_ok=True)
        body = ['import "pe"', 'import "math"', 'import "hash"', ""]
        privates = []
        if r.random() < 0.15:
            p = f"Priv_{f}_{ident(r, 1)}"
            body.append(rule_text(r, p, private=True))
            privates.append(p)
        for k in range(r.randint(1, 6)):
            body.append(rule_text(r, f"{ident(r)}_{f}_{k}", privates=privates))
        if f % 97 == 13:
            # Broken, as some files of public collections are for any given
            # engine: an undefined identifier.
            body.append(f"rule Broken_{f} {{ condition: undefined_thing_{f} > 1 }}\n")
        with open(os.path.join(sub, f"rules_{f:04d}.yar"), "w") as fh:
            fh.write("\n".join(body))


def rule_files(d):
    out = []
    for root, _, names in os.walk(d):
        for n in names:
            if n.lower().endswith((".yar", ".yara")):
                out.append(os.path.join(root, n))
    return sorted(out)


def timed(cmd, runs):
    best, out = None, None
    for _ in range(runs):
        t = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True)
        w = time.monotonic() - t
        if best is None or w < best:
            best, out = w, p
    return best, out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", help="the yara_load example binary")
    ap.add_argument("--moat", help="measure through the moat binary (moat scan --yara) instead")
    ap.add_argument("--rules", help="an existing rule directory (default: generate one)")
    ap.add_argument("--files", type=int, default=741)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scan", type=int, default=20000, help="objects for the per-object scan figure")
    a = ap.parse_args()
    if not (a.bin or a.moat):
        ap.error("--bin or --moat is required")

    work = tempfile.mkdtemp(prefix="yara-bench-")
    try:
        rules = a.rules or os.path.join(work, "rules")
        if not a.rules:
            generate(rules, a.files, a.seed)
        files = rule_files(rules)
        size = sum(os.path.getsize(f) for f in files)
        n_rules = sum(open(f).read().count("\nrule ") + open(f).read().count("\nprivate rule ") for f in files)
        print(f"collection: {len(files)} files, ~{n_rules} rules, {size / 1e6:.1f} MB ({'generated, seed %d' % a.seed if not a.rules else rules})")
        empty = os.path.join(work, "empty")
        open(empty, "w").close()
        defs = sum((["-d", f"{e}="] for e in EXTERNALS), [])

        # Which files yara 4 compiles, each alone.
        yara_ok = set()
        for f in files:
            p = subprocess.run(["yarac", *defs, f, os.path.join(work, "one.yarc")], capture_output=True)
            if p.returncode == 0:
                yara_ok.add(f)
        print(f"yara 4 compiles {len(yara_ok)} of {len(files)} files alone")

        good = [f for f in files if f in yara_ok]
        ns_args = [f"n{i}:{f}" for i, f in enumerate(good)]
        w_yara, p = timed(["yara", "-w", *defs, *ns_args, empty], a.runs)
        if p.returncode != 0:
            print("yara failed:", p.stderr[:500])
        compiled = os.path.join(work, "all.yarc")
        t = time.monotonic()
        subprocess.run(["yarac", "-w", *defs, *ns_args, compiled], check=True, capture_output=True)
        w_yarac = time.monotonic() - t
        w_yara_c, _ = timed(["yara", "-C", compiled, empty], a.runs)

        if a.moat:
            moat_binary(a, work, rules, empty, good, w_yara, w_yarac, w_yara_c, yara_ok)
            return

        def moat(args):
            p = subprocess.run([a.bin, *args, rules], capture_output=True, text=True)
            if p.returncode != 0:
                sys.exit(f"moat failed: {p.stderr[:2000]}")
            return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr

        cold = []
        for i in range(a.runs):
            cache = os.path.join(work, f"cache{i}")
            t = time.monotonic()
            j, err = moat(["--cache-dir", cache])
            cold.append((time.monotonic() - t, j, err))
        cold.sort(key=lambda x: x[0])
        w_cold, j_cold, err_cold = cold[0]
        w_nocache, p_nc = timed([a.bin, "--no-cache", rules], a.runs)
        j_nocache = json.loads(p_nc.stdout.strip().splitlines()[-1])
        warm_cache = os.path.join(work, "cache0")
        w_warm, p_w = timed([a.bin, "--cache-dir", warm_cache, rules], a.runs)
        j_warm = json.loads(p_w.stdout.strip().splitlines()[-1])
        j_scan, _ = moat(["--cache-dir", warm_cache, "--scan", str(a.scan)])
        cache_size = sum(os.path.getsize(os.path.join(warm_cache, n)) for n in os.listdir(warm_cache))

        rejected = {l.split(": ", 1)[1].split(":", 1)[0] for l in err_cold.splitlines() if l.startswith("load error: ")}
        missing = sorted(f for f in yara_ok if f in rejected)
        print()
        print(f"{'':<22}{'wall s':>9}{'load ms':>10}  notes")
        print(f"{'yara 4 (compile)':<22}{w_yara:>9.3f}{'':>10}  {len(good)} files")
        print(f"{'yarac (compile only)':<22}{w_yarac:>9.3f}{'':>10}")
        print(f"{'yara -C (compiled)':<22}{w_yara_c:>9.3f}{'':>10}")
        print(f"{'moat cold (+store)':<22}{w_cold:>9.3f}{j_cold['load_ms']:>10.1f}  cache={j_cold['cache']} rules={j_cold['rules']} files={j_cold['files']} load_errors={j_cold['load_errors']}")
        print(f"{'moat no cache':<22}{w_nocache:>9.3f}{j_nocache['load_ms']:>10.1f}  cache={j_nocache['cache']}")
        print(f"{'moat warm':<22}{w_warm:>9.3f}{j_warm['load_ms']:>10.1f}  cache={j_warm['cache']} ({cache_size / 1e6:.1f} MB entry)")
        print()
        print(f"moat scan: {j_scan.get('scan_us_per_object')} us per 1 KiB object ({a.scan} objects, one thread, scanner reused)")
        print(f"files yara compiles that moat rejected: {len(missing)}" + (f" {missing[:5]}" if missing else ""))
        print(f"targets: all yara files load={'yes' if not missing else 'NO'}; "
              f"cold <= yara: {'yes' if w_cold <= w_yara else 'NO'} ({w_cold:.3f} vs {w_yara:.3f} s); "
              f"warm < 0.3 s: {'yes' if w_warm < 0.3 else 'NO'} ({w_warm:.3f} s process, {j_warm['load_ms']:.1f} ms load)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def moat_binary(a, work, rules, empty, good, w_yara, w_yarac, w_yara_c, yara_ok):
    """`moat scan --yara RULES empty` as whole processes, cold then warm."""
    loaded_re = re.compile(r"yara rules loaded.*")

    def field(line, k):
        m = re.search(rf"\b{k}=(\S+)", line)
        return m.group(1).strip('"') if m else "?"

    def run(xdg):
        env = dict(os.environ, XDG_CACHE_HOME=xdg, MOAT_LOG="info")
        t = time.monotonic()
        p = subprocess.run(["/usr/bin/time", "-f", "cpu %U %S", a.moat, "scan", "--yara", rules, empty],
                           capture_output=True, text=True, env=env)
        w = time.monotonic() - t
        if p.returncode not in (0, 1):
            sys.exit(f"moat failed ({p.returncode}): {p.stderr[-2000:]}")
        err = re.sub(r"\x1b\[[0-9;]*m", "", p.stderr)
        line = next((m.group(0) for m in map(loaded_re.search, err.splitlines()) if m), "")
        cpu = next((sum(map(float, l.split()[1:3])) for l in err.splitlines() if l.startswith("cpu ")), 0.0)
        rejected = {field(l, "path") for l in err.splitlines() if "yara rule file rejected" in l}
        return w, cpu, line, rejected

    cold = []
    for i in range(a.runs):
        cold.append(run(os.path.join(work, f"xdg{i}")))
    cold.sort(key=lambda x: x[0])
    w_cold, cpu_cold, l_cold, rejected = cold[0]
    warm = sorted((run(os.path.join(work, "xdg0")) for _ in range(a.runs)), key=lambda x: x[0])
    w_warm, cpu_warm, l_warm, _ = warm[0]
    missing = sorted(f for f in yara_ok if f in rejected)
    print()
    print(f"{'':<22}{'wall s':>9}{'cpu s':>8}{'load ms':>10}  notes")
    print(f"{'yara 4 (compile)':<22}{w_yara:>9.3f}{'':>8}{'':>10}  {len(good)} files")
    print(f"{'yarac (compile only)':<22}{w_yarac:>9.3f}")
    print(f"{'yara -C (compiled)':<22}{w_yara_c:>9.3f}")
    print(f"{'moat scan cold':<22}{w_cold:>9.3f}{cpu_cold:>8.2f}{field(l_cold, 'ms'):>10}  cache={field(l_cold, 'cache')} rules={field(l_cold, 'rules')} files={field(l_cold, 'files')} load_errors={field(l_cold, 'errors')}")
    print(f"{'moat scan warm':<22}{w_warm:>9.3f}{cpu_warm:>8.2f}{field(l_warm, 'ms'):>10}  cache={field(l_warm, 'cache')}")
    print()
    print(f"files yara compiles that moat rejected: {len(missing)}" + (f" {missing[:5]}" if missing else ""))
    print(f"targets: all yara files load={'yes' if not missing else 'NO'}; "
          f"cold <= yara: {'yes' if w_cold <= w_yara else 'NO'} ({w_cold:.3f} vs {w_yara:.3f} s); "
          f"warm < 0.3 s: {'yes' if w_warm < 0.3 else 'NO'} ({w_warm:.3f} s process, {field(l_warm, 'ms')} ms load)")


if __name__ == "__main__":
    main()
