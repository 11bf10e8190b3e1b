#!/usr/bin/env bash
# Write .env from .env.example the first time (never overwrites it): a fresh SERVICE_SECRET,
# and DATABASE_URL, REDIS_URL and PORT as given to make (`DATABASE_URL=... make dev`), so the
# commands typed later in another shell use the same services.
set -euo pipefail
python=${1:-python3}
[ -f .env ] && exit 0
secret=$("$python" -c 'import secrets; print(secrets.token_urlsafe(36))')
cp .env.example .env.tmp
sed -i "s|^SERVICE_SECRET=.*|SERVICE_SECRET=$secret|" .env.tmp
for name in DATABASE_URL REDIS_URL PORT; do
  value=${!name:-}
  [ -n "$value" ] && sed -i "s|^$name=.*|$name=$value|" .env.tmp
done
mv .env.tmp .env
echo "wrote .env (with a fresh SERVICE_SECRET)"
