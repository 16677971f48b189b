#!/usr/bin/env bash
# Regenerates the encrypted PDF fixtures of moat-extract's unit tests with
# qpdf (apt: qpdf), from one plain PDF whose only embedded file is EICAR.
# Each run gives new IDs and salts; the tests only need the payload back.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 - "$tmp/plain.pdf" <<'PY'
import sys
data = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
objs = [
    b"<< /Type /Catalog /Pages 2 0 R /Names << /EmbeddedFiles << /Names [(eicar.com) 4 0 R] >> >> >>",
    b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    b"<< /Type /Filespec /F (eicar.com) /EF << /F 5 0 R >> >>",
    b"<< /Type /EmbeddedFile /Length %d >>\nstream\n" % len(data) + data + b"\nendstream",
]
out, offs = bytearray(b"%PDF-1.7\n"), []
for i, o in enumerate(objs, 1):
    offs.append(len(out))
    out += b"%d 0 obj\n" % i + o + b"\nendobj\n"
x = len(out)
out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
out += b"".join(b"%010d 00000 n \n" % o for o in offs)
out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objs) + 1, x)
open(sys.argv[1], "wb").write(out)
PY
p="$tmp/plain.pdf"
qpdf --allow-weak-crypto --encrypt "" owner 40 -- "$p" rc4-40.pdf
qpdf --allow-weak-crypto --encrypt "" owner 128 --use-aes=n -- "$p" rc4-128.pdf
qpdf --encrypt "" owner 128 --use-aes=y --cleartext-metadata -- "$p" aes-128.pdf
qpdf --encrypt "" owner 256 --force-R5 -- "$p" aes-256-r5.pdf
qpdf --encrypt "" owner 256 -- --object-streams=generate "$p" aes-256-objstm.pdf
qpdf --allow-weak-crypto --encrypt secret owner 128 --use-aes=n -- "$p" password-rc4.pdf
qpdf --encrypt secret owner 256 -- "$p" password-aes-256.pdf
