#!/usr/bin/env bash
# Docker test bed for mlopsctl's container tests and benchmarks (run as root):
#   - installs Debian's docker.io, docker-registry and debootstrap when missing;
#   - starts dockerd (overlay2, no iptables, no bridge: containers use host networking) with its
#     own data-root under DIR, unless an engine already answers on the socket;
#   - starts an OCI registry on 127.0.0.1:5000 with its own config (no htpasswd), unless one
#     already answers there;
#   - builds mlopsctl-base:bookworm (debootstrap minbase + python3, venv, pip, the host's CA
#     bundle; `docker import`) and mlopsctl-base:deps on top of it (a venv in /opt/venv with
#     mlopsctl's runtime dependencies pinned to the versions in .venv, so a container run
#     computes exactly what a local run computes).
# Every step is skipped when already done; a warm call takes a second or two.
# PIDs go to DIR/dockerd.pid and DIR/registry.pid; `stop` ends exactly those processes.
#
# Usage: bash scripts/testbed-docker.sh [start|stop|status] [DIR]
#   DIR defaults to $MLOPSCTL_DOCKER_DIR or /var/lib/mlopsctl-docker.
#   MLOPSCTL_DOCKER_SOCK  engine socket (default /var/run/docker.sock)
set -euo pipefail
cd "$(dirname "$0")/.."

ACTION=${1:-start}
DIR=${2:-${MLOPSCTL_DOCKER_DIR:-/var/lib/mlopsctl-docker}}
SOCK=${MLOPSCTL_DOCKER_SOCK:-/var/run/docker.sock}
REGISTRY=127.0.0.1:5000
BASE=mlopsctl-base:bookworm
DEPS=mlopsctl-base:deps
SUITE=bookworm
export DOCKER_HOST="unix://$SOCK"
export DOCKER_BUILDKIT=0 # the classic builder: what dockerd 20.10 ships without buildx

say() { echo "testbed-docker: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

engine_answers() { timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }
registry_answers() {
    python3 - "$REGISTRY" <<'PY' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(f"http://{sys.argv[1]}/v2/", timeout=3)
PY
}

# wait_for SECONDS DESCRIPTION LOG COMMAND... : poll COMMAND until it succeeds.
wait_for() {
    local seconds=$1 what=$2 log=$3
    shift 3
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            [ -f "$log" ] && tail -n 20 "$log" >&2
            die "$what did not answer within ${seconds}s (log: $log)"
        fi
        sleep 0.5
    done
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

install_packages() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker-registry >/dev/null || missing+=(docker-registry)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    [ ${#missing[@]} -eq 0 ] && return
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

start_dockerd() {
    if engine_answers; then
        say "engine answers on $SOCK (using it)"
        return
    fi
    pid_alive "$DIR/dockerd.pid" && die "dockerd $(cat "$DIR/dockerd.pid") runs but does not answer on $SOCK"
    mkdir -p "$DIR/data" "$DIR/exec"
    say "starting dockerd on $SOCK (data-root $DIR/data)"
    # setsid: the engine outlives this script and the CI step's process group.
    setsid dockerd --storage-driver=overlay2 --iptables=false --bridge=none \
        --data-root "$DIR/data" --exec-root "$DIR/exec" --pidfile "$DIR/dockerd.pid" \
        -H "unix://$SOCK" >"$DIR/dockerd.log" 2>&1 </dev/null &
    wait_for 60 dockerd "$DIR/dockerd.log" engine_answers
}

start_registry() {
    if registry_answers; then
        say "registry answers on $REGISTRY (using it)"
        return
    fi
    mkdir -p "$DIR/registry"
    # Debian's own /etc/docker/registry/config.yml turns on htpasswd auth; this one does not.
    cat >"$DIR/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $DIR/registry}, delete: {enabled: true}}
http: {addr: $REGISTRY}
EOF
    say "starting the registry on $REGISTRY"
    setsid docker-registry serve "$DIR/registry.yml" >"$DIR/registry.log" 2>&1 </dev/null &
    echo $! >"$DIR/registry.pid"
    wait_for 30 "the registry" "$DIR/registry.log" registry_answers
}

build_base() {
    if docker image inspect "$BASE" >/dev/null 2>&1; then
        say "$BASE present"
        return
    fi
    local rootfs="$DIR/rootfs-$SUITE"
    if [ ! -f "$rootfs/.complete" ]; then
        say "debootstrap $SUITE into $rootfs (about a minute)"
        rm -rf "$rootfs"
        debootstrap --variant=minbase \
            --include=python3,python3-venv,python3-pip,ca-certificates \
            "$SUITE" "$rootfs" >"$DIR/debootstrap.log" 2>&1 ||
            {
                tail -n 20 "$DIR/debootstrap.log" >&2
                die "debootstrap failed (log: $DIR/debootstrap.log)"
            }
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        touch "$rootfs/.complete"
    fi
    # The host reaches package indexes through a TLS proxy: its CA bundle must be trusted inside.
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    say "importing $BASE"
    tar -C "$rootfs" --exclude=./.complete -c . | docker import \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["python3"]' \
        - "$BASE" >/dev/null
    rm -rf "$rootfs"
}

# mlopsctl's runtime dependencies (pyproject.toml) and everything they pull in, pinned to the
# versions installed in .venv, so a container computes exactly what a local run computes;
# unpinned when there is no .venv yet.
write_requirements() {
    if [ -x .venv/bin/python ] && .venv/bin/python -c 'import packaging' 2>/dev/null; then
        .venv/bin/python - <<'PY'
import importlib.metadata as md
import tomllib
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

env = {**default_environment(), "extra": ""}
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
pins, todo = {}, [Requirement(r) for r in deps]
while todo:
    req = todo.pop()
    name = canonicalize_name(req.name)
    if name in pins or (req.marker and not req.marker.evaluate(env)):
        continue
    dist = md.distribution(req.name)
    pins[name] = f"{dist.metadata['Name']}=={dist.version}"
    todo.extend(Requirement(r) for r in dist.requires or [])
print("\n".join(sorted(pins.values(), key=str.lower)))
PY
    else
        say "no .venv yet: dependencies unpinned (run scripts/venv.sh first to pin them)"
        python3 - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print("\n".join(re.sub(r"\s*#.*", "", d) for d in deps))
PY
    fi
}

build_deps() {
    local ctx="$DIR/deps"
    mkdir -p "$ctx"
    write_requirements >"$ctx/requirements.txt"
    local want
    want=$( (docker image inspect -f '{{.Id}}' "$BASE" && cat "$ctx/requirements.txt") | sha256sum | cut -c1-64)
    local have
    have=$(docker image inspect -f '{{index .Config.Labels "io.mlopsctl.deps"}}' "$DEPS" 2>/dev/null || true)
    if [ "$have" = "$want" ]; then
        say "$DEPS present (dependencies unchanged)"
        return
    fi
    cat >"$ctx/Dockerfile" <<EOF
FROM $BASE
COPY requirements.txt /opt/mlopsctl-deps/requirements.txt
RUN python3 -m venv /opt/venv \\
 && /opt/venv/bin/python -m pip install --no-cache-dir --disable-pip-version-check -q \\
      -r /opt/mlopsctl-deps/requirements.txt
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL io.mlopsctl.deps=$want
EOF
    say "building $DEPS ($(wc -l <"$ctx/requirements.txt") packages from the package index; a few minutes)"
    docker build -q --network host -t "$DEPS" "$ctx" >"$DIR/deps-build.log" 2>&1 ||
        {
            tail -n 30 "$DIR/deps-build.log" >&2
            die "building $DEPS failed (log: $DIR/deps-build.log)"
        }
}

# The base image's layers in the registry: the first push of a pipeline image then mounts them
# instead of compressing and uploading ~1.5 GB again (a no-op when they are there already).
push_deps() {
    docker tag "$DEPS" "$REGISTRY/$DEPS"
    docker push -q "$REGISTRY/$DEPS" >"$DIR/deps-push.log" 2>&1 ||
        {
            tail -n 20 "$DIR/deps-push.log" >&2
            die "pushing $DEPS to $REGISTRY failed (log: $DIR/deps-push.log)"
        }
}

stop_pidfile() {
    local file=$1 what=$2
    if ! pid_alive "$file"; then
        rm -f "$file"
        return
    fi
    local pid
    pid=$(cat "$file")
    say "stopping $what (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$what did not stop in 30 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

case "$ACTION" in
start)
    [ "$(id -u)" -eq 0 ] || die "run as root (installs packages, starts dockerd)"
    mkdir -p "$DIR"
    t0=$SECONDS
    install_packages
    start_dockerd
    start_registry
    build_base
    build_deps
    push_deps
    say "ready in $((SECONDS - t0)) s: engine $DOCKER_HOST, registry $REGISTRY, images $BASE and $DEPS"
    ;;
stop)
    stop_pidfile "$DIR/registry.pid" "the registry"
    stop_pidfile "$DIR/dockerd.pid" dockerd
    # dockerd leaves its network namespace bind-mounted under the exec-root.
    grep -o " $DIR/exec/[^ ]*" /proc/mounts 2>/dev/null | xargs -r -n1 umount -l 2>/dev/null || true
    ;;
status)
    engine_answers && say "engine: answers on $SOCK" || say "engine: not answering on $SOCK"
    registry_answers && say "registry: answers on $REGISTRY" || say "registry: not answering"
    for image in "$BASE" "$DEPS"; do
        docker image inspect "$image" >/dev/null 2>&1 && say "$image: present" || say "$image: missing"
    done
    ;;
*)
    die "unknown action '$ACTION' (use start, stop or status)"
    ;;
esac
