#!/usr/bin/env bash
# The whole suite; pytest's exit 5 (no tests collected) is a failure, not a pass.
set -uo pipefail
py=${1:-.venv/bin/python}
"$py" -m pytest "${@:2}"
code=$?
if [ "$code" = 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi
exit "$code"
