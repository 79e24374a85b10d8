#!/usr/bin/env bash
# The main job on a fresh machine, on the default local store: install mlopsctl into .venv,
# scaffold a project in a temporary folder, validate its specs and check the set-up.
# Usage: bash scripts/quickstart.sh [PROJECT_DIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
if [ ! -x "$repo/.venv/bin/python" ]; then
    "$PYTHON" -m venv "$repo/.venv"
fi
"$repo/.venv/bin/python" -m pip install -q --disable-pip-version-check -e "$repo"
mlopsctl="$repo/.venv/bin/mlopsctl"

project=${1:-$(mktemp -d)/demo}
mkdir -p "$project"
cd "$project"
git init -q . 2>/dev/null || true
"$mlopsctl" init .
"$mlopsctl" validate
"$mlopsctl" doctor
echo "quickstart project: $project" >&2
