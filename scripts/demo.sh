#!/usr/bin/env bash
# `make demo`: start RideFlow (`rideflow up`, as `make run` does) and a city simulation against
# it; open nothing, print where the dashboard is and how to log in. Ctrl-C ends the simulation
# (its tail and report still run), a second Ctrl-C, or one after the report, stops everything.
#   DEMO_DRIVERS (50), DEMO_RATE (orders/min, 40), DEMO_DURATION (s, 600), DEMO_SEED (1),
#   DEMO_STRATEGY (the city's default), DEMO_TIME_SCALE (10) tune the simulation.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT="${RIDEFLOW_PORT:-8000}"
HOST="${RIDEFLOW_HOST:-127.0.0.1}"
URL="http://$HOST:$PORT"
mkdir -p var
# The simulation logs every driver and customer in from this one address: let it.
if [ -z "${RIDEFLOW_LOGIN_IP_LIMIT:-}" ]; then
  export RIDEFLOW_LOGIN_IP_LIMIT='{"algorithm": "sliding_window", "limit": 100000, "window_s": 60}'
fi

# Its own session, so a Ctrl-C meant for the simulation does not stop the stack too.
setsid "$BIN/rideflow" up >var/demo-up.log 2>&1 &
UP=$!
stop() { kill -TERM "$UP" 2>/dev/null && wait "$UP" 2>/dev/null; echo "demo: stopped"; }
trap stop EXIT
for _ in $(seq 1 120); do
  curl -fs "$URL/readyz" >/dev/null 2>&1 && break
  kill -0 "$UP" 2>/dev/null || { echo "demo: rideflow up failed; see var/demo-up.log" >&2; tail -20 var/demo-up.log >&2; exit 1; }
  sleep 0.5
done
curl -fs "$URL/readyz" >/dev/null || { echo "demo: RideFlow did not become ready at $URL" >&2; exit 1; }

# A demo ADMIN account, its password kept (mode 0600) for the next demo.
ADMIN_EMAIL=demo-admin@example.com
PASSFILE=var/demo-admin.password
admin=(--admin-email "$ADMIN_EMAIL")
if [ ! -s "$PASSFILE" ]; then
  (umask 077; "$BIN/python" -c 'import secrets; print(secrets.token_urlsafe(15))' >"$PASSFILE")
  if ! "$BIN/rideflow" users create --role admin --email "$ADMIN_EMAIL" --name "Demo Admin" \
       --password-stdin <"$PASSFILE" >/dev/null; then
    rm -f "$PASSFILE"
    echo "demo: $ADMIN_EMAIL exists but its password is lost: no restaurants this time" >&2
    admin=()
  fi
fi
echo
echo "RideFlow is up at $URL (API docs: $URL/docs; stack log: var/demo-up.log)"
echo "Dashboard: $URL/dashboard"
[ ${#admin[@]} -gt 0 ] && echo "Log in as $ADMIN_EMAIL, password $(cat "$PASSFILE") (kept in $PASSFILE)"
echo

set +e
RIDEFLOW_ADMIN_PASSWORD="$(cat "$PASSFILE" 2>/dev/null || true)" "$BIN/rideflow" simulate \
  --base-url "$URL" --drivers "${DEMO_DRIVERS:-50}" --rate "${DEMO_RATE:-40}" \
  --duration "${DEMO_DURATION:-600}" --seed "${DEMO_SEED:-1}" \
  --time-scale "${DEMO_TIME_SCALE:-10}" ${DEMO_STRATEGY:+--strategy "$DEMO_STRATEGY"} "${admin[@]}"
set -e
echo
echo "Simulation over; RideFlow stays up at $URL/dashboard. Ctrl-C stops it."
wait "$UP"
