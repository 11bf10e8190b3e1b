#!/usr/bin/env bash
# Make sure Postgres and Redis answer at DATABASE_URL / REDIS_URL. A server already listening
# there is used as it is: its configuration is never touched. On a local port where nothing
# listens, a private server is started for this project, its data under GOMFLOW_DATA_DIR
# (default .data/, gitignored); `make stop` (scripts/stop-services.sh) stops it. Missing
# programs are installed on Debian/Ubuntu. Idempotent; prints what it did, one line each.
set -euo pipefail

# As the app reads them: the environment first, then .env, then the defaults.
from_env_file() { [ -f .env ] && sed -n "s/^$1=//p" .env | tail -n1 || true; }
DATABASE_URL=${DATABASE_URL:-$(from_env_file DATABASE_URL)}
DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/gomflow}
REDIS_URL=${REDIS_URL:-$(from_env_file REDIS_URL)}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
PY=${PY:-python3}
DATA_DIR=${GOMFLOW_DATA_DIR:-$PWD/.data}

# host, port and user of a URL, through Python (no extra tools needed)
urlparts() { "$PY" -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(p.hostname or "127.0.0.1", p.port or int(sys.argv[2]), p.username or "postgres")' "$1" "$2"; }
reachable() { "$PY" -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()' "$1" "$2" 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else echo "need root for: $*" >&2; return 1; fi; }
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -qq
  as_root apt-get install -y -qq "$@" >/dev/null
}
wait_for() { for _ in $(seq 1 100); do reachable "$1" "$2" && return 0; sleep 0.2; done; return 1; }
is_local() { case "$1" in 127.*|localhost|::1) return 0;; *) return 1;; esac; }
fail() { echo "$1" >&2; exit 1; }

read -r PG_HOST PG_PORT PG_USER < <(urlparts "$DATABASE_URL" 5432)
read -r REDIS_HOST REDIS_PORT _ < <(urlparts "$REDIS_URL" 6379)

pg_bin() {
  # initdb and pg_ctl: on PATH, else Debian's versioned folder (the newest).
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then dirname "$(command -v pg_ctl)"; return; fi
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1
}

start_private_postgres() {
  local bin dir owner run
  bin=$(pg_bin)
  if [ -z "$bin" ]; then
    echo "postgres: installing (apt-get install postgresql), without Debian's default cluster"
    # Our server is private to this project: the package must not start one of its own.
    as_root mkdir -p /etc/postgresql-common/createcluster.d
    echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.d/gomflow-no-main.conf >/dev/null
    apt_install postgresql
    bin=$(pg_bin)
    [ -n "$bin" ] || fail "postgres: installed, but initdb and pg_ctl are not found"
  fi
  dir=$DATA_DIR/postgres-$PG_PORT
  # Postgres refuses to run as root: as root, the cluster belongs to the postgres user.
  run=()
  owner=$(id -un)
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || fail "postgres: running as root and there is no postgres user to run the server; run make as a normal user"
    owner=postgres
    run=(runuser -u postgres --)
  fi
  mkdir -p "$DATA_DIR"
  if [ ! -s "$dir/PG_VERSION" ]; then
    mkdir -p "$dir"
    [ "$owner" = "$(id -un)" ] || chown "$owner" "$dir"
    chmod 700 "$dir"
    "${run[@]}" test -w "$dir" || fail "postgres: the user $owner cannot write $dir; set GOMFLOW_DATA_DIR to a folder it can reach"
    echo "postgres: creating a private cluster in $dir (user $PG_USER, trusted on loopback only)"
    "${run[@]}" "$bin/initdb" -D "$dir" -U "$PG_USER" --auth=trust -E UTF8 --no-instructions >"$DATA_DIR/initdb-$PG_PORT.log" 2>&1 \
      || fail "postgres: initdb failed, see $DATA_DIR/initdb-$PG_PORT.log"
  fi
  echo "postgres: starting the private cluster on 127.0.0.1:$PG_PORT (make stop stops it)"
  # Port, address and socket folder on the command line: nothing is written to any config.
  "${run[@]}" "$bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $dir" start >/dev/null \
    || fail "postgres: did not start on $PG_PORT, see $dir/server.log"
  wait_for "$PG_HOST" "$PG_PORT" || fail "postgres: started but not answering on $PG_PORT, see $dir/server.log"
}

start_private_redis() {
  if ! command -v redis-server >/dev/null; then
    echo "redis: installing (apt-get install redis-server)"
    apt_install redis-server
  fi
  mkdir -p "$DATA_DIR"
  echo "redis: starting a private server on 127.0.0.1:$REDIS_PORT, nothing on disk (make stop stops it)"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$DATA_DIR" --pidfile "$DATA_DIR/redis-$REDIS_PORT.pid" --logfile "$DATA_DIR/redis-$REDIS_PORT.log"
  wait_for "$REDIS_HOST" "$REDIS_PORT" || fail "redis: did not come up on $REDIS_PORT, see $DATA_DIR/redis-$REDIS_PORT.log"
}

if reachable "$PG_HOST" "$PG_PORT"; then
  echo "postgres: reachable at $PG_HOST:$PG_PORT (used as it is)"
elif ! is_local "$PG_HOST"; then
  fail "postgres: $PG_HOST:$PG_PORT is not reachable and is not local; check DATABASE_URL"
else
  start_private_postgres
fi

if reachable "$REDIS_HOST" "$REDIS_PORT"; then
  echo "redis: reachable at $REDIS_HOST:$REDIS_PORT (used as it is)"
elif ! is_local "$REDIS_HOST"; then
  fail "redis: $REDIS_HOST:$REDIS_PORT is not reachable and is not local; check REDIS_URL"
else
  start_private_redis
fi

# The database itself (CREATE DATABASE has no IF NOT EXISTS).
"$PY" - "$DATABASE_URL" <<'PYEOF'
import asyncio, sys, urllib.parse as u
import asyncpg

async def main(url: str) -> None:
    parts = u.urlsplit(url)
    name = parts.path.lstrip("/") or "postgres"
    admin = u.urlunsplit(parts._replace(path="/postgres"))
    try:
        conn = await asyncpg.connect(admin, timeout=5)
    except Exception as exc:
        sys.exit(f"postgres: cannot connect as {parts.username or 'postgres'} to {parts.hostname}:{parts.port}: "
                 f"{type(exc).__name__}: {exc}; check DATABASE_URL (user and password)")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
            print(f"postgres: created database {name}")
    finally:
        await conn.close()

asyncio.run(main(sys.argv[1]))
PYEOF
