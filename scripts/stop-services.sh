#!/usr/bin/env bash
# Stop what scripts/ensure-services.sh started for this project (its private Postgres and
# Redis under GOMFLOW_DATA_DIR, default .data/), and nothing else. The data stays; delete the
# folder to start from nothing.
set -euo pipefail
DATA_DIR=${GOMFLOW_DATA_DIR:-$PWD/.data}
stopped=0

pg_ctl_bin() {
  if command -v pg_ctl >/dev/null; then command -v pg_ctl; return; fi
  ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n1
}

for dir in "$DATA_DIR"/postgres-*; do
  [ -f "$dir/postmaster.pid" ] || continue
  owner=$(stat -c %U "$dir")
  run=()
  [ "$(id -un)" = "$owner" ] || run=(runuser -u "$owner" --)
  "${run[@]}" "$(pg_ctl_bin)" -D "$dir" -m fast -w stop >/dev/null
  echo "postgres: stopped the private cluster in $dir"
  stopped=1
done

for pidfile in "$DATA_DIR"/redis-*.pid; do
  [ -f "$pidfile" ] || continue
  pid=$(cat "$pidfile")
  # Only a redis-server still holding that pid: a stale file must not kill another process.
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = redis-server ]; then
    kill "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    echo "redis: stopped the private server ${pidfile##*/redis-} (pid $pid)" | sed 's/\.pid//'
    stopped=1
  fi
  rm -f "$pidfile"
done

[ "$stopped" = 1 ] || echo "nothing to stop: no private Postgres or Redis of this project is running"
