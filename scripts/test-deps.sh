#!/usr/bin/env bash
# Install and start what moat's tests need, on a fresh Debian machine or one
# that already has them. Idempotent. Prints the environment the tests should use.
#
#   ClamAV (clamd, clamscan)   apt: clamav clamav-daemon (tests start their own clamd)
#   ClamAV's test files        apt: clamav-testfiles (differential tests)
#   7z                         apt: p7zip-full (archives built by tests)
#   qpdf                       apt: qpdf (encrypted PDFs built by tests)
#   gcab                       apt: gcab (the cabinet reader's oracle)
#   makensis                   apt: nsis (NSIS installers built by tests)
#   arj                        apt: arj (ARJ archives built by tests)
#   chmcmd                     apt: fp-utils (CHM files built by tests)
#   genisoimage                apt: genisoimage (ISO 9660 images built by tests)
#   PostgreSQL on 127.0.0.1:5432 with a database `test`
#   python3                    for ../shared/bench generators
#   RabbitMQ on 127.0.0.1:5672 (guest/guest)      apt: rabbitmq-server
#   NATS with JetStream on 127.0.0.1:4222         apt: nats-server
#   a Python virtualenv with moto[server] (S3 and SQS) and boto3, and the
#   clamd client libraries clamd 1.0.2 and clamav-client 0.7.2
#   clamdscan                  apt: clamdscan (the clamd server's tests)
#   c-icap-client, squid       apt: c-icap squid (the ICAP server's tests, and
#                              the updater's HTTP proxy)
#   dnsmasq                    apt: dnsmasq-base (the updater's DNS TXT tests)
#   c-icap's virus_scan        apt: libc-icap-mod-virus-scan (the icap engine's
#                              tests start their own c-icap daemon over clamd)
#   node + npm tus-js-client in ~/.cache/moat-test-node  apt: nodejs npm
#   the web UI's browser tests: Chromium (apt: chromium) driven by npm
#   playwright-core in the same node cache (its own browser download is not used);
#   Firefox (apt: firefox-esr) over WebDriver BiDi with npm ws
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
command -v clamdscan >/dev/null || apt_install clamdscan
# --- the ICAP server's tests: c-icap-client, and Squid as an ICAP client
command -v c-icap-client >/dev/null || apt_install c-icap
compgen -G '/usr/lib/*/c_icap/virus_scan.so' >/dev/null || [ -e /usr/lib/c_icap/virus_scan.so ] ||
    apt_install libc-icap-mod-virus-scan
command -v squid >/dev/null || [ -x /usr/sbin/squid ] || apt_install squid
# --- the signature updater's tests: a real DNS server for the TXT version
# record (dnsmasq-base: the binary without the system service); Squid above
# is also their HTTP proxy
command -v dnsmasq >/dev/null || [ -x /usr/sbin/dnsmasq ] || apt_install dnsmasq-base
# --- builtin engine differential tests: PE (MinGW) and ELF (gcc) built at
# test time, ClamAV's harmless test files
command -v x86_64-w64-mingw32-gcc >/dev/null || apt_install gcc-mingw-w64-x86-64
command -v gcc >/dev/null || apt_install gcc
[ -e /usr/share/clamav-testfiles/clam.exe ] || apt_install clamav-testfiles
# qpdf, to encrypt PDFs at test time (the PDF decryption differential test)
command -v qpdf >/dev/null || apt_install qpdf
# gcab, the oracle for the cabinet reader (its LZX test)
command -v gcab >/dev/null || apt_install gcab
# makensis, to build NSIS installers at test time
command -v makensis >/dev/null || apt_install nsis
# arj, to build ARJ archives at test time
command -v arj >/dev/null || apt_install arj
# chmcmd (Free Pascal), to build CHM files at test time
command -v chmcmd >/dev/null || apt_install --no-install-recommends fp-utils
# genisoimage, to build ISO 9660 images at test time
command -v genisoimage >/dev/null || apt_install genisoimage
# 7z, to build archives at test time
command -v 7z >/dev/null || apt_install p7zip-full || apt_install 7zip
# --- the portal's e-mail tests: a real SMTP server
/usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || apt_install python3-aiosmtpd
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

# --- RabbitMQ
if ! port_open 5672; then
    [ -x /usr/sbin/rabbitmq-server ] || apt_install rabbitmq-server
    log "starting RabbitMQ"
    (rabbitmq-server -detached >/dev/null 2>&1 || service rabbitmq-server start >/dev/null 2>&1) || true
    for _ in $(seq 1 60); do port_open 5672 && break; sleep 1; done
    port_open 5672 || { log "RabbitMQ did not start"; exit 1; }
fi
echo "export MOAT_TEST_AMQP_URL='${MOAT_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}'"

# --- NATS with JetStream
if ! port_open 4222; then
    command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || apt_install nats-server
    NATS_DIR="${TMPDIR:-/tmp}/moat-test-nats"
    mkdir -p "$NATS_DIR"
    log "starting nats-server with JetStream"
    PATH="$PATH:/usr/sbin" nohup nats-server -a 127.0.0.1 -p 4222 -js -sd "$NATS_DIR" >"$NATS_DIR/log" 2>&1 &
    for _ in $(seq 1 30); do port_open 4222 && break; sleep 1; done
    port_open 4222 || { log "nats-server did not start"; exit 1; }
fi
echo "export MOAT_TEST_NATS_URL='${MOAT_TEST_NATS_URL:-nats://127.0.0.1:4222}'"

# --- Python virtualenv: moto (S3 + SQS server) and boto3 (a real S3 client)
VENV="${MOAT_TEST_VENV:-$HOME/.cache/moat-test-venv}"
if [ ! -x "$VENV/bin/moto_server" ] || ! "$VENV/bin/python" -c 'import boto3, moto' 2>/dev/null; then
    python3 -m venv "$VENV" >&2 2>/dev/null || { apt_install python3-venv; python3 -m venv "$VENV" >&2; }
    log "installing moto[server] and boto3 into $VENV"
    "$VENV/bin/pip" install -q 'moto[server]' boto3 >&2
fi
if ! "$VENV/bin/python" -c 'import clamd, clamav_client' 2>/dev/null; then
    log "installing the clamd client libraries into $VENV"
    "$VENV/bin/pip" install -q 'clamd==1.0.2' 'clamav-client==0.7.2' >&2
fi
echo "export MOAT_TEST_PYTHON='$VENV/bin/python'"
echo "export MOAT_TEST_MOTO_SERVER='$VENV/bin/moto_server'"

# --- node with the npm tus-js-client (moat-vault's tus router test)
command -v node >/dev/null || apt_install nodejs
command -v npm >/dev/null || apt_install npm
NODE_CACHE="${MOAT_TEST_NODE_CACHE:-$HOME/.cache/moat-test-node}"
if [ ! -d "$NODE_CACHE/node_modules/tus-js-client" ]; then
    mkdir -p "$NODE_CACHE"
    log "installing tus-js-client into $NODE_CACHE"
    (cd "$NODE_CACHE" && npm install -q --no-audit --no-fund tus-js-client@4 >&2)
fi
echo "export MOAT_TEST_NODE_MODULES='$NODE_CACHE/node_modules'"

# --- the web UI's browser tests: Debian's Chromium, driven by playwright-core
[ -x /usr/bin/chromium ] || apt_install chromium
[ -x /usr/bin/firefox-esr ] || apt_install firefox-esr
if [ ! -d "$NODE_CACHE/node_modules/ws" ]; then
    log "installing ws into $NODE_CACHE"
    (cd "$NODE_CACHE" && npm install -q --no-audit --no-fund ws@8 >&2)
fi
if [ ! -d "$NODE_CACHE/node_modules/playwright-core" ]; then
    log "installing playwright-core into $NODE_CACHE"
    (cd "$NODE_CACHE" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install -q --no-audit --no-fund playwright-core@1 >&2)
fi
