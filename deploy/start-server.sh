#!/usr/bin/env bash
# The write-up's start script, for lokin-doctor serve:
#   ./deploy/start-server.sh dev    # this machine only, text logs
#   ./deploy/start-server.sh prod   # all interfaces, JSON logs, restarted when it dies (prefer the systemd unit)
set -euo pipefail
mode=${1:-dev}
port=${PORT:-8080}
case "$mode" in
  dev)  exec lokin-doctor serve --host 127.0.0.1 --port "$port" ;;
  prod)
    : "${ALLOW_ORIGIN:?set ALLOW_ORIGIN to the site's origin, e.g. https://your-domain.example}"
    while true; do
      lokin-doctor serve --host 0.0.0.0 --port "$port" --log-format json --allow-origin "$ALLOW_ORIGIN" && break
      echo "lokin-doctor serve exited with $?; restarting in 2 s" >&2
      sleep 2
    done ;;
  *) echo "usage: $0 dev|prod" >&2; exit 2 ;;
esac
