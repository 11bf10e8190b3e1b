#!/usr/bin/env bash
# Make sure Postgres and Redis answer at DATABASE_URL / REDIS_URL: use running ones, else start
# local ones, else install them (Debian/Ubuntu). Idempotent; prints what it did.
set -euo pipefail

DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/gomflow}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
PY=${PY:-python3}

# host and port of a URL, through Python (no extra tools needed)
hostport() { "$PY" -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(p.hostname or "127.0.0.1", p.port or int(sys.argv[2]))' "$1" "$2"; }
reachable() { "$PY" -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()' "$1" "$2" 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else echo "need root for: $*" >&2; return 1; fi; }
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq "$@" >/dev/null
}
wait_for() { for _ in $(seq 1 50); do reachable "$1" "$2" && return 0; sleep 0.2; done; return 1; }

read -r PG_HOST PG_PORT < <(hostport "$DATABASE_URL" 5432)
read -r REDIS_HOST REDIS_PORT < <(hostport "$REDIS_URL" 6379)
is_local() { case "$1" in 127.*|localhost|::1) return 0;; *) return 1;; esac; }

if reachable "$PG_HOST" "$PG_PORT"; then
  echo "postgres: reachable at $PG_HOST:$PG_PORT"
elif ! is_local "$PG_HOST"; then
  echo "postgres: $PG_HOST:$PG_PORT is not reachable and is not local; check DATABASE_URL" >&2; exit 1
else
  if ! command -v pg_ctlcluster >/dev/null; then
    echo "postgres: installing (apt-get install postgresql)"
    apt_install postgresql
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n1)
  if [ -z "$version" ]; then echo "postgres: no cluster found under /etc/postgresql" >&2; exit 1; fi
  hba=/etc/postgresql/$version/main/pg_hba.conf
  # A cluster we set up for local development trusts loopback, as the test machines do.
  if ! as_root grep -q "gomflow-local" "$hba"; then
    as_root sed -i '1i host all all 127.0.0.1/32 trust # gomflow-local\nhost all all ::1/128 trust # gomflow-local' "$hba"
  fi
  echo "postgres: starting cluster $version/main"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for "$PG_HOST" "$PG_PORT" || { echo "postgres: did not come up on $PG_PORT" >&2; exit 1; }
fi

if reachable "$REDIS_HOST" "$REDIS_PORT"; then
  echo "redis: reachable at $REDIS_HOST:$REDIS_PORT"
elif ! is_local "$REDIS_HOST"; then
  echo "redis: $REDIS_HOST:$REDIS_PORT is not reachable and is not local; check REDIS_URL" >&2; exit 1
else
  if ! command -v redis-server >/dev/null; then
    echo "redis: installing (apt-get install redis-server)"
    apt_install redis-server
  fi
  echo "redis: starting on port $REDIS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /tmp --logfile /tmp/gomflow-redis.log
  wait_for "$REDIS_HOST" "$REDIS_PORT" || { echo "redis: did not come up on $REDIS_PORT" >&2; exit 1; }
fi

# The database itself (CREATE DATABASE has no IF NOT EXISTS).
"$PY" - "$DATABASE_URL" <<'PYEOF'
import asyncio, sys, urllib.parse as u
import asyncpg

async def main(url: str) -> None:
    parts = u.urlsplit(url)
    name = parts.path.lstrip("/") or "postgres"
    admin = u.urlunsplit(parts._replace(path="/postgres"))
    conn = await asyncpg.connect(admin, timeout=5)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
            print(f"postgres: created database {name}")
    finally:
        await conn.close()

asyncio.run(main(sys.argv[1]))
PYEOF
