#!/usr/bin/env bash
# Make sure the system programs RideFlow needs exist: redis-server, and Python's venv module;
# optionally PostGIS and Debian's Chromium (the dashboard's browser test and its benchmark).
# Installs Debian/Ubuntu packages when allowed to (root, or sudo without a password);
# otherwise stops and prints the exact command to run.
set -euo pipefail
python="${1:-python3}"
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
"$python" -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
# PostGIS for the local PostgreSQL 15 that the record's tests use (optional: without it those
# tests say why they are skipped).
optional=0
if [ -d /usr/share/postgresql/15/extension ] && [ ! -f /usr/share/postgresql/15/extension/postgis.control ]; then
  [ ${#missing[@]} -eq 0 ] && optional=1
  missing+=(postgresql-15-postgis-3)
fi
# Debian's Chromium for the dashboard's browser test and benchmark (optional: without it they
# skip saying why). Playwright drives it at /usr/bin/chromium; no browser is downloaded.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
  [ ${#missing[@]} -eq 0 ] && optional=1
  missing+=(chromium)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo="sudo -n"
else
  echo "RideFlow needs: ${missing[*]}. Install them with:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  [ "$optional" -eq 1 ] && exit 0
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "RideFlow needs ${missing[*]}; install them with your package manager." >&2
  exit 1
fi
echo "installing ${missing[*]} ..." >&2
install() {
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
  }
}
if [ "$optional" -eq 1 ]; then
  # Only optional packages were missing: their tests skip saying why; never fail the build.
  install || echo "could not install ${missing[*]}; try: sudo apt-get install -y ${missing[*]}" >&2
else
  install
fi
# The distribution's service would hold port 6379; RideFlow runs its own redis-server.
