#!/usr/bin/env bash
# Regenerates the cabinet fixture of moat-extract's unit tests with gcab
# (apt: gcab): EICAR and a 70 KB text that spans three MSZIP blocks, so that
# later blocks refer back into earlier ones. The text is the unit test's
# `cab_text()`.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf '%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' > "$tmp/eicar.com"
for i in $(seq 0 1999); do printf 'line %d of the moat cabinet fixture\n' "$i"; done > "$tmp/text.txt"
(cd "$tmp" && gcab -c -z mszip.cab eicar.com text.txt)
cp "$tmp/mszip.cab" mszip.cab
