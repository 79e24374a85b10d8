#!/usr/bin/env bash
# The main job on a fresh machine, on the default local store: install mlopsctl into .venv,
# scaffold a project in a temporary folder, validate it, check the set-up, run its training
# pipeline (breast cancer, XGBoost) and show the run; a second run is served from the cache.
# Then the rest of the lifecycle with the example specs: monitor held-out data (passes) and a
# shifted copy (drift found, exit 4, HTML report), let the trigger retrain on that finding, and
# serve the model over HTTP for one prediction. Then the loop closed: serve the champion, send
# it shifted traffic and the outcomes, let the monitor find drift in what it served, and let the
# loop trigger retrain on the served and labelled window (plus the original set), naming the
# logs in the new version and checking its gates. Last, roll a retrained candidate out as a
# canary (50%, then 100% of the traffic, judged on the server's logs; then the alias moves).
# Usage: bash scripts/quickstart.sh [PROJECT_DIR]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
if [ ! -x "$repo/.venv/bin/python" ]; then
    "$PYTHON" -m venv "$repo/.venv"
fi
"$repo/.venv/bin/python" -m pip install -q --disable-pip-version-check -e "$repo"
mlopsctl="$repo/.venv/bin/mlopsctl"

# server_url LOG PID: wait (at most 60 s) for the server PID to say where it listens in LOG.
server_url() {
    for _ in $(seq 600); do
        grep -q "serving .* on http" "$1" && break
        kill -0 "$2" 2>/dev/null || { cat "$1" >&2; return 1; }
        sleep 0.1
    done
    sed -n 's/.* on \(http[^ ]*\).*/\1/p' "$1" | head -n 1 | grep . || { cat "$1" >&2; return 1; }
}

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

echo "== the example specs: train breast-cancer (steps shared with the run above come from the cache)" >&2
mkdir -p specs/examples data reports
cp "$repo"/specs/examples/quickstart.yaml "$repo"/specs/examples/quickstart-monitor.yaml \
    "$repo"/specs/examples/quickstart-trigger.yaml specs/examples/
"$mlopsctl" run specs/examples/quickstart.yaml
# Held-out rows the model never trained on (the pipeline's own test split), and a copy with
# the "mean"/"worst" measurements 1.5 times larger.
"$repo/.venv/bin/python" - <<'PY'
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split

frame = load_breast_cancer(as_frame=True).frame
held_out = train_test_split(frame, test_size=0.25, random_state=42, stratify=frame.target)[1]
held_out.to_csv("data/current.csv", index=False)
shifted = held_out.copy()
for column in shifted.columns:
    if column.startswith(("mean ", "worst ")):
        shifted[column] *= 1.5
shifted.to_csv("data/shifted.csv", index=False)
PY
echo "== monitor: held-out data (no drift expected)" >&2
"$mlopsctl" monitor check specs/examples/quickstart-monitor.yaml
echo "== monitor: the shifted copy (drift expected: exit 4)" >&2
status=0
"$mlopsctl" monitor check specs/examples/quickstart-monitor.yaml --current data/shifted.csv \
    --report reports/shifted.html || status=$?
if [ "$status" -ne 4 ]; then
    echo "quickstart: expected exit 4 (drift) from the shifted data, got $status" >&2
    exit 1
fi
echo "== continuous training: the drift finding fires the trigger, which retrains" >&2
"$mlopsctl" ct check specs/examples/quickstart-trigger.yaml --run
"$mlopsctl" runs show latest

echo "== serving: one prediction over HTTP, then a graceful stop" >&2
"$mlopsctl" serve breast-cancer:latest --port 0 2>serve.log &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
url=$(server_url serve.log "$server")
"$repo/.venv/bin/python" - "$url" <<'PY'
import csv
import json
import sys
import urllib.request

with open("data/current.csv") as f:
    rows = list(csv.DictReader(f))
columns = [c for c in rows[0] if c != "target"]
body = {"dataframe_split": {"columns": columns, "data": [[float(rows[0][c]) for c in columns]]}}
request = urllib.request.Request(
    sys.argv[1] + "/invocations",
    data=json.dumps(body).encode(),
    headers={"Content-Type": "application/json"},
)
with urllib.request.urlopen(request, timeout=10) as response:
    print(f"POST /invocations -> {response.read().decode()} (version "
          f"{response.headers['X-Model-Version']}, truth {rows[0]['target']})")
PY
kill -TERM "$server"
wait "$server" || true
trap - EXIT
echo "== the loop closed: serve the champion, shifted traffic with outcomes, drift found in what it served, retrain on the served and labelled window" >&2
for name in retrain window served-monitor loop-release loop-trigger; do
    cp "$repo/specs/examples/quickstart-$name.yaml" specs/examples/
done
champion=$("$mlopsctl" models show breast-cancer:latest --json |
    "$repo/.venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["version"])')
"$mlopsctl" models alias set breast-cancer champion "$champion"
"$mlopsctl" serve breast-cancer@champion --port 0 --log-interval 1 2>loop.log &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
url=$(server_url loop.log "$server")
# The shifted held-out rows, one request each, then every outcome through POST /feedback.
"$repo/.venv/bin/python" - "$url" <<'PY'
import csv
import json
import sys
import urllib.request

with open("data/shifted.csv") as f:
    rows = list(csv.DictReader(f))
columns = [c for c in rows[0] if c != "target"]
outcomes = []
for i, row in enumerate(rows):
    body = {"dataframe_split": {"columns": columns, "data": [[float(row[c]) for c in columns]]}}
    request = urllib.request.Request(
        sys.argv[1] + "/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Request-ID": f"loop-{i}"},
    )
    urllib.request.urlopen(request, timeout=10).read()
    outcomes.append({"request_id": f"loop-{i}", "actual": int(row["target"])})
request = urllib.request.Request(
    sys.argv[1] + "/feedback",
    data=json.dumps(outcomes).encode(),
    headers={"Content-Type": "application/json"},
)
with urllib.request.urlopen(request, timeout=10) as response:
    print(f"served {len(rows)} shifted rows; POST /feedback -> {response.read().decode()}")
PY
kill -TERM "$server"   # a graceful stop writes every logged row
wait "$server" || true
trap - EXIT
status=0
"$mlopsctl" monitor check specs/examples/quickstart-served-monitor.yaml >/dev/null || status=$?
if [ "$status" -ne 4 ]; then
    echo "quickstart: expected exit 4 (drift) from the served traffic, got $status" >&2
    exit 1
fi
echo "drift found in the served traffic (reports/quickstart-served.html)" >&2
"$mlopsctl" ct check specs/examples/quickstart-loop-trigger.yaml --run
"$mlopsctl" runs show latest | grep -E "^(run|reason|params|metric     train_rows)"
"$mlopsctl" models show breast-cancer:latest --json >reports/retrained-version.json
"$repo/.venv/bin/python" - <<'PY'
import json

with open("reports/retrained-version.json") as f:
    version = json.load(f)
data = version["reason"]["dataset"]
print(f"{version['name']}:{version['version']} was trained on dataset {data['name']} {data['digest']}")
for kind in ("predictions", "feedback"):
    print(f"  {data[kind]['files']} file(s) under {data[kind]['prefix']}")
print(f"  mixed with {', '.join(data['mix'])}; {data['counts']['labelled_rows']} labelled rows")
PY
echo "== canary rollout: a retrained candidate takes 50%, then 100% of live traffic, judged on what the server logged" >&2
cp "$repo"/specs/examples/quickstart-canary-release.yaml specs/examples/
champion=$("$mlopsctl" models show breast-cancer:latest --json |
    "$repo/.venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["version"])')
"$mlopsctl" models alias set breast-cancer production "$champion"
"$mlopsctl" run specs/examples/quickstart.yaml -p model.n_estimators=150 >/dev/null
"$mlopsctl" release check specs/examples/quickstart-canary-release.yaml
"$mlopsctl" serve breast-cancer@production --port 0 --log-interval 1 --poll 0.5 2>canary.log &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
url=$(server_url canary.log "$server")
splits() { grep -c "traffic for breast-cancer:" canary.log || true; }
follow() { # wait until the server applied one more split of the deployment record
    local seen=$1
    for _ in $(seq 600); do
        [ "$(splits)" -gt "$seen" ] && return 0
        sleep 0.1
    done
    echo "quickstart: the server did not follow the deployment record" >&2
    exit 1
}
traffic() { # 200 held-out rows, one request each, then time for the server to log them
    "$repo/.venv/bin/python" - "$url" <<'PY'
import csv
import json
import sys
import urllib.request
import uuid

with open("data/current.csv") as f:
    rows = list(csv.DictReader(f))
columns = [c for c in rows[0] if c != "target"]
arms = {}
for i in range(200):
    row = rows[i % len(rows)]
    body = {"dataframe_split": {"columns": columns, "data": [[float(row[c]) for c in columns]]}}
    request = urllib.request.Request(
        sys.argv[1] + "/invocations",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-Request-ID": uuid.uuid4().hex},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        arm = f"version {response.headers['X-Model-Version']}"
        arms[arm] = arms.get(arm, 0) + 1
print("traffic: " + ", ".join(f"{n} to {arm}" for arm, n in sorted(arms.items())))
PY
    sleep 2.5
}
spec=specs/examples/quickstart-canary-release.yaml
seen=$(splits)
"$mlopsctl" release rollout "$spec"   # step 1: 50% to the candidate
follow "$seen"                        # the server follows the deployment record (--poll)
traffic
seen=$(splits)
"$mlopsctl" release rollout "$spec"   # every check passed: step 2, 100%
follow "$seen"
traffic
"$mlopsctl" release rollout "$spec"   # the alias moves; the deployment is one arm again
"$mlopsctl" release status "$spec" --json |
    "$repo/.venv/bin/python" -c 'import json, sys; s = json.load(sys.stdin); print(s["message"]); sys.exit(s["status"] != "done")'
kill -TERM "$server"
wait "$server" || true
trap - EXIT
echo "quickstart project: $project (try: cd $project && $mlopsctl runs list;" \
    "open reports/shifted.html; $mlopsctl datasets show breast-cancer-served)" >&2
