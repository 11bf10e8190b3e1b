#!/usr/bin/env bash
# Make sure a Chromium for the console's browser tests is installed: CHROMIUM if set, else
# Debian's `chromium` package (installed with apt-get when missing, as Postgres and Redis are
# by ensure-services.sh). Playwright drives it; its own browser download is never used.
set -euo pipefail
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else echo "need root for: $*" >&2; return 1; fi; }

if [ -x "$CHROMIUM" ]; then
  echo "chromium: found at $CHROMIUM"
  exit 0
fi
command -v apt-get >/dev/null || { echo "chromium: $CHROMIUM is missing and there is no apt-get; install Chromium and set CHROMIUM to its path" >&2; exit 1; }
echo "chromium: installing (apt-get install chromium)"
export DEBIAN_FRONTEND=noninteractive
as_root apt-get update -qq
as_root apt-get install -y -qq chromium >/dev/null
[ -x "$CHROMIUM" ] || { echo "chromium: installed, but $CHROMIUM is not there; set CHROMIUM to its path" >&2; exit 1; }
echo "chromium: installed at $CHROMIUM"
