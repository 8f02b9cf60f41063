#!/usr/bin/env bash
# The machine-level parts healer and its tests need, installed when missing and when we can:
# Debian packages, and (as root) the `healer` system user the unprivileged side runs as.
set -u
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
# A throwaway CA and certificate for the fleet agent's TLS test (tests/fleet/test_tls.py).
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# The system's Python builds root's environment: the `healer` user must be able to run it.
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import ensurepip' >/dev/null 2>&1 \
    || need+=(python3 python3-venv)
# systemd-analyze scores the shipped units (tests/deploy/test_units.py).
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
# Throwaway servers for the store and fleet tests (tests/pg.py, tests/prom.py). Debian
# keeps PostgreSQL's server binaries off PATH, under /usr/lib/postgresql/<major>/bin.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || need+=(prometheus)  # promtool too
command -v prometheus-alertmanager >/dev/null 2>&1 || need+=(prometheus-alertmanager)
command -v prometheus-node-exporter >/dev/null 2>&1 || need+=(prometheus-node-exporter)
if [ "$(id -u)" != 0 ]; then
    [ ${#need[@]} -eq 0 ] || echo "system-deps: missing ${need[*]}; not root, dependent tests will skip (and fail under CI)" >&2
    exit 0
fi
# healer serve runs as this user (healer.privsep); the unit and `make` create it.
getent passwd healer >/dev/null 2>&1 \
    || useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin healer \
    || { echo "system-deps: cannot create the healer system user" >&2; exit 1; }
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: missing ${need[*]} and no apt-get" >&2
    exit 1
fi
echo "system-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
    || { echo "system-deps: apt-get install ${need[*]} failed" >&2; exit 1; }
exit 0
