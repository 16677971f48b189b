# Shared by bench/portal_io.sh and bench/portal_serve_io.sh (sourced, not run):
# the input file, the `cp` + `sync` anchor, a free port, MB/s arithmetic and
# the ranged download loop.
# Needs SIZE_MIB and work (a scratch directory) set by the caller.

now() { date +%s.%N; }
# MB/s of SIZE_MIB MiB moved between two `now` readings.
mbps() { python3 -c "import sys; print(f'{$SIZE_MIB*1.048576/($2-$1):.1f}')" -- "$1" "$2"; }
# $1 as a percentage of $2.
pct() { python3 -c "print(f'{100*$1/$2:.0f}')"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Writes SIZE_MIB MiB of random bytes to $work/in.bin; sets `want` (its
# sha256) and `cp_mbps` (cp + sync of it on the same disk).
make_input_and_time_cp() {
    head -c "${SIZE_MIB}M" /dev/urandom >"$work/in.bin"
    want=$(sha256sum "$work/in.bin" | cut -d' ' -f1)
    sync
    local t0 t1
    t0=$(now); cp "$work/in.bin" "$work/copy.bin"; sync; t1=$(now)
    cp_mbps=$(mbps "$t0" "$t1")
    rm -f "$work/copy.bin"; sync
}

# GETs SIZE_MIB MiB from URL $1 in RANGE_MIB MiB ranges (one curl each),
# appended to $2 (a file, emptied first, or /dev/null).
ranged_get() {
    local bytes=$((SIZE_MIB * 1024 * 1024)) step=$((RANGE_MIB * 1024 * 1024)) a b
    : >"$2"
    for ((a = 0; a < bytes; a += step)); do
        b=$((a + step - 1)); [ $b -ge $bytes ] && b=$((bytes - 1))
        curl -sSf -r "$a-$b" "$1" >>"$2"
    done
}
