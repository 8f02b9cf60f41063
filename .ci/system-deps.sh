#!/usr/bin/env bash
# Install the Debian packages the test suite needs, when missing and when we can.
set -u
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
# Throwaway servers for the store and fleet tests (tests/pg.py, tests/prom.py). Debian
# keeps PostgreSQL's server binaries off PATH, under /usr/lib/postgresql/<major>/bin.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || need+=(prometheus)  # promtool too
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: missing ${need[*]}; not root or no apt-get, dependent tests will skip (and fail under CI)" >&2
    exit 0
fi
echo "system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || { echo "system-deps: apt-get install ${need[*]} failed" >&2; exit 1; }
exit 0
