#!/usr/bin/env bash
# Stops what start-swift.sh started (by the process ids it recorded); the data and rings stay for the next start.
set -euo pipefail
RUN=${SNAPGRAPH_SWIFT_DIR:-/srv/snapgraph-swift}/run
for name in proxy account container object memcached; do
  pidfile=$RUN/$name.pid
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  fi
  rm -f "$pidfile"
done
echo "stop-swift: stopped" >&2
