#!/usr/bin/env bash
# Install and start what moat's tests need, on a fresh Debian machine or one
# that already has them. Idempotent. Prints the environment the tests should use.
#
#   ClamAV (clamd, clamscan)   apt: clamav clamav-daemon (tests start their own clamd)
#   PostgreSQL on 127.0.0.1:5432 with a database `test`
#   python3                    for ../shared/bench generators
set -euo pipefail

log() { echo "test-deps: $*" >&2; }
APT_UPDATED=0
apt_install() {
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        log "need root and apt-get to install: $*"; exit 1
    fi
    if [ "$APT_UPDATED" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >&2
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# --- toolchain helpers
command -v python3 >/dev/null || apt_install python3
command -v curl >/dev/null || apt_install curl
# --- ClamAV
if ! command -v clamscan >/dev/null || { ! command -v clamd >/dev/null && [ ! -x /usr/sbin/clamd ]; }; then
    apt_install clamav clamav-daemon
fi
# --- PostgreSQL
PG_URL="${MOAT_TEST_POSTGRES_URL:-}"
if [ -z "$PG_URL" ]; then
    if port_open 5432 && psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
        PG_URL="postgres://postgres@127.0.0.1:5432/test"
    else
        if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
            apt_install postgresql
        fi
        ver=$(ls /etc/postgresql | sort -V | tail -n1)
        if ! port_open 5432; then
            log "starting PostgreSQL $ver"
            pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null || pg_ctlcluster "$ver" main start
        fi
        for _ in $(seq 1 30); do port_open 5432 && break; sleep 1; done
        su postgres -c "psql -q -c \"ALTER USER postgres PASSWORD 'moat-test'\"" >&2
        su postgres -c "psql -q -tc \"SELECT 1 FROM pg_database WHERE datname='test'\" | grep -q 1 || createdb test" >&2
        PG_URL="postgres://postgres:moat-test@127.0.0.1:5432/test"
    fi
fi
echo "export MOAT_TEST_POSTGRES_URL='$PG_URL'"
