#!/usr/bin/env bash
# The main job on a fresh machine, on the default local store: install mlopsctl into .venv,
# scaffold a project in a temporary folder, validate it, check the set-up, run its training
# pipeline (breast cancer, XGBoost) and show the run; a second run is served from the cache.
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
[ -f mlops.yaml ] || "$mlopsctl" init .
"$mlopsctl" validate
"$mlopsctl" doctor
echo "== first run: every step executes" >&2
"$mlopsctl" run pipelines/train.yaml
echo "== second run: every step comes from the cache" >&2
"$mlopsctl" run pipelines/train.yaml
"$mlopsctl" runs show latest
echo "quickstart project: $project (try: cd $project && $mlopsctl runs list)" >&2
