#!/usr/bin/env python3
"""Differential check of normalisation on real files: cut body signatures of
targets 0, 3 and 7 from real text and HTML files (raw bytes, ClamAV's text
normalisation, and the raw bytes lower-cased with whitespace collapsed as in
nocomment.html), run `clamscan --allmatch --no-summary -d SIGS` and moat's
`scan_list` example on the same files, and print per-file differences and a
summary.

Usage: scripts/normalize-differential.py [N_FILES] [SEED]
Files: /usr/share/doc/**/*.html, *.txt and Python sources under /usr/lib/python3*.
"""
import glob, os, random, re, subprocess, sys, tempfile

n_files = int(sys.argv[1]) if len(sys.argv) > 1 else 300
seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
rng = random.Random(seed)
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

cands = [f for f in glob.glob('/usr/share/doc/**/*.html', recursive=True)
         + glob.glob('/usr/share/doc/**/*.txt', recursive=True)
         + glob.glob('/usr/lib/python3*/**/*.py', recursive=True)
         if os.path.isfile(f) and 64 < os.path.getsize(f) < (1 << 20)]
rng.shuffle(cands)
files = cands[:n_files]

def textnorm(b):
    out, sp = bytearray(), False
    for c in b:
        if c in (9, 10, 11, 12, 13, 32):
            if not sp:
                out.append(32)
            sp = True
        elif 65 <= c <= 90:
            out.append(c + 32); sp = False
        elif 33 <= c <= 127:
            out.append(c); sp = False
    return bytes(out)

def cut(b, n=24):
    if len(b) < n + 1:
        return None
    i = rng.randrange(0, len(b) - n)
    s = b[i:i + n]
    # Anchors need a fixed run: skip pieces made of one repeated byte.
    return s if len(set(s)) > 3 else None

lines = []
for k, f in enumerate(files):
    with open(f, 'rb') as fh:
        raw = fh.read(1 << 20)
    nt = textnorm(raw)
    for target, src, tag in ((0, raw, 'R0'), (0, nt, 'N0'), (7, nt, 'N7'),
                             (3, nt, 'N3'), (7, raw, 'R7'), (3, raw, 'R3')):
        s = cut(src)
        if s:
            lines.append('%s.%d:%d:*:%s' % (tag, k, target, s.hex()))

with tempfile.TemporaryDirectory() as d:
    sigdir = os.path.join(d, 'sigs')
    os.mkdir(sigdir)
    with open(os.path.join(sigdir, 'cut.ndb'), 'w') as fh:
        fh.write('\n'.join(lines) + '\n')
    lst = '\n'.join(files) + '\n'
    clam = subprocess.run(['clamscan', '--allmatch', '--no-summary', '-d', sigdir, '-f', '/dev/stdin'],
                          input=lst.encode(), capture_output=True)
    tgt = os.environ.get('CARGO_TARGET_DIR', os.path.join(root, 'target'))
    subprocess.run(['cargo', 'build', '-q', '--release', '-p', 'moat-builtin', '--example', 'scan_list'],
                   cwd=root, check=True)
    moat = subprocess.run([os.path.join(tgt, 'release/examples/scan_list'), sigdir],
                          input=lst.encode(), capture_output=True)

def parse(out):
    m = {}
    for l in out.decode(errors='replace').splitlines():
        mm = re.match(r'^(.*): (\S+?)(\.UNOFFICIAL)? FOUND$', l)
        if mm:
            m.setdefault(mm.group(1), set()).add(mm.group(2))
        elif ': ERROR' in l or 'ERROR' in l:
            print('error:', l)
    return m

c, m = parse(clam.stdout), parse(moat.stdout)
same = differ = 0
kinds = {}
for f in files:
    a, b = c.get(f, set()), m.get(f, set())
    if a == b:
        same += 1
    else:
        differ += 1
        only_c, only_m = sorted(a - b), sorted(b - a)
        for s in only_c:
            kinds['clamscan-only ' + s.split('.')[0]] = kinds.get('clamscan-only ' + s.split('.')[0], 0) + 1
        for s in only_m:
            kinds['moat-only ' + s.split('.')[0]] = kinds.get('moat-only ' + s.split('.')[0], 0) + 1
        print('DIFF %s clamscan-only=%s moat-only=%s' % (f, only_c, only_m))
total_c = sum(len(v) for v in c.values())
total_m = sum(len(v) for v in m.values())
print('signatures=%d files=%d identical=%d different=%d detections clamscan=%d moat=%d'
      % (len(lines), len(files), same, differ, total_c, total_m))
for k, v in sorted(kinds.items()):
    print('  %s: %d' % (k, v))
