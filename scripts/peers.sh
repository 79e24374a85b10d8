#!/usr/bin/env bash
# The peers' own virtualenvs, which the integration tests run for real (each pins libraries that
# would downgrade .venv's, so none of them goes into .venv):
#   feast   .bench/feast-venv   Feast's local provider (duckdb offline store): the point-in-time
#                               agreement tests (test_features_feast.py) and bench/features.py
#   kserve  .bench/kserve-venv  the KServe SDK's REST client, v1 and v2 (test_serving_clients.py)
#   mlflow-client  .bench/mlflow-client-venv  MLflow's scoring client (test_serving_hardening.py):
#                               mlflow-skinny, pandas and scipy (its dump_input_data looks
#                               scipy.sparse up and fails without scipy), 400 MB
#   mlflow  .bench/mlflow-venv  full MLflow with the model's libraries (bench/requirements-
#                               mlflow.txt), bench/serving.py's peer; only when named: 1.6 GB,
#                               several times slower to install than mlflow-client
# A venv whose stamp (DIR/NAME-venv/bench-requirements.txt, the requirements it was made from)
# matches is left alone, so a warm call takes a second. The venvs install in parallel, each
# logging to DIR/peers-NAME.log; while one runs DIR/NAME.pending holds this script's PID, and
# at its end DIR/NAME.ready is written, or DIR/NAME.failed with the log's tail.
# tests/integration/peers.py waits for those markers. scripts/test.sh starts this script in the
# background right after scripts/venv.sh, so the installs overlap lint, type checks and the
# unit tests.
# Usage: bash scripts/peers.sh [NAME...]   (default: feast kserve mlflow-client; PEERS_DIR=DIR
# instead of .bench)
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${PEERS_DIR:-.bench}
PYTHON=${PYTHON:-python3}
mkdir -p "$DIR"

requirements() {
    case "$1" in
    feast) printf '%s\n' 'feast[duckdb]==0.67.0' ;;
    kserve) printf '%s\n' 'kserve==0.21.0' ;;
    mlflow-client) printf '%s\n' 'mlflow-skinny==3.17.2' 'pandas==3.1.1' 'scipy==1.17.1' ;;
    mlflow) cat bench/requirements-mlflow.txt ;;
    *)
        echo "peers.sh: unknown peer '$1' (feast, kserve, mlflow-client or mlflow)" >&2
        return 2
        ;;
    esac
}

# One peer, under a lock of its own (two runs at once wait for each other, never mix).
install_peer() {
    local name=$1 venv="$DIR/$1-venv" log="$DIR/peers-$1.log"
    local stamp="$venv/bench-requirements.txt" start
    start=$(date +%s)
    exec 9>"$DIR/$name.lock"
    flock 9
    rm -f "$DIR/$name.ready" "$DIR/$name.failed"
    echo $$ >"$DIR/$name.pending"
    if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] &&
        requirements "$name" | cmp -s - "$stamp"; then
        echo "== $name: $venv is up to date ($(date -u +%FT%TZ))" >"$log"
    elif {
        echo "== $name: installing into $venv ($(date -u +%FT%TZ))"
        { [ -x "$venv/bin/python" ] || "$PYTHON" -m venv "$venv"; } &&
            requirements "$name" >"$venv/requirements.in" &&
            "$venv/bin/python" -m pip install --progress-bar off --disable-pip-version-check \
                --no-compile -r "$venv/requirements.in" &&
            cp "$venv/requirements.in" "$stamp"
    } >"$log" 2>&1; then
        echo "== $name: installed in $(($(date +%s) - start)) s" >>"$log"
    else
        grep -v '^WARNING: Location' "$log" | tail -n 40 >"$DIR/$name.failed" || true
        rm -f "$DIR/$name.pending"
        echo "== peers: $name FAILED after $(($(date +%s) - start)) s; see $log" >&2
        return 1
    fi
    echo "$(($(date +%s) - start))" >"$DIR/$name.ready"
    rm -f "$DIR/$name.pending"
    echo "== peers: $name ready in $(($(date +%s) - start)) s ($venv)" >&2
}

names=("$@")
[ ${#names[@]} -gt 0 ] || names=(feast kserve mlflow-client)
for name in "${names[@]}"; do
    requirements "$name" >/dev/null # an unknown name fails here, before anything starts
done
pids=()
for name in "${names[@]}"; do
    install_peer "$name" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=1
done
exit $status
