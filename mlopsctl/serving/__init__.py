"""`mlopsctl serve`: a registered model as an HTTP prediction service.

    serve(options, on_ready=..., say=...)   blocks until SIGTERM/SIGINT, then stops gracefully

Layout: http.py (HTTP/1.1 on asyncio), app.py (routes), codecs.py (MLflow and Open Inference
Protocol inputs, signature checks), predictor.py (the numpy fast path), logs.py (prediction and
feedback logs to the store), follow.py (alias and deployment-record following, smoke loads),
arms.py (weighted sticky arms and the deployment record), metrics.py (Prometheus counters
shared across workers), feedback.py (ground truth from files), smoke.py (the child-process
smoke load).

One process by default. With ``workers > 1`` the parent binds the port and forks that many
workers before anything heavy is imported; each binds the same port with SO_REUSEPORT (the
kernel spreads connections), loads its own model, and has its own log writer and follower.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import MlopsError, UsageError

if TYPE_CHECKING:
    from mlopsctl.serving.app import App
    from mlopsctl.store.base import ObjectStore

DEFAULT_MAX_BODY = 8 << 20
SHUTDOWN_GRACE_S = 10.0


@dataclass
class ServeOptions:
    ref: str
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    model_dir: Path | None = None
    max_body: int = DEFAULT_MAX_BODY
    log: bool = True
    log_sample: float = 1.0
    log_batch: int = 1000
    log_interval: float = 5.0
    log_buffer: int = 100_000
    poll: float = 3.0
    arms: list[str] = field(default_factory=list)
    key: str | None = None
    deployment: str | None = None
    # SO_REUSEPORT on a single worker too, so that a second server can bind the same port while
    # this one still answers: the zero-downtime handover of `mlopsctl deploy`.
    share_port: bool = False
    # Load pickle-flavoured models (pickle can run any code): only for artifacts you made.
    trust: bool = False


def check_options(options: ServeOptions) -> None:
    if not 0 <= options.port <= 65535:
        raise UsageError(f"invalid port {options.port}", "give a port from 0 (any free) to 65535")
    if options.workers < 1:
        raise UsageError("--workers must be at least 1")
    if not 0.0 <= options.log_sample <= 1.0:
        raise UsageError("--log-sample must be between 0 and 1", "e.g. 0.1 logs one request in ten")
    if options.max_body < 1024:
        raise UsageError("--max-body must be at least 1024 bytes")
    if options.poll <= 0:
        raise UsageError("--poll must be above 0 seconds")
    if options.model_dir is not None and options.arms:
        raise UsageError("--arm needs the registry; it cannot be combined with --model-dir")


def serve(
    options: ServeOptions,
    *,
    on_ready: Callable[[str], None],
    say: Callable[[str], None],
) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit status (0 after a graceful stop)."""
    check_options(options)
    from mlopsctl.registry import parse_ref

    ref = parse_ref(options.ref)
    if options.model_dir is not None and ref.version is None:
        raise UsageError(
            f"--model-dir needs the model named as NAME:VERSION, not {options.ref!r}",
            "e.g. mlopsctl serve breast-cancer:3 --model-dir /model",
        )
    import tempfile

    metrics_dir = Path(tempfile.mkdtemp(prefix="mlopsctl-serve-"))
    try:
        if options.workers == 1:
            sock = _bind(options.host, options.port, reuse_port=options.share_port)
            return _worker(options, sock, metrics_dir, 0, on_ready, say)
        return _supervise(options, metrics_dir, on_ready, say)
    finally:
        import shutil

        shutil.rmtree(metrics_dir, ignore_errors=True)


def _bind(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise MlopsError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            "pick another --port (0 picks a free one) or stop what is using it",
        ) from None
    return sock


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _supervise(
    options: ServeOptions,
    metrics_dir: Path,
    on_ready: Callable[[str], None],
    say: Callable[[str], None],
) -> int:
    """Fork the workers (before any heavy import), relay signals, report ready once all are."""
    holder = _bind(options.host, options.port, reuse_port=True)  # fixes the port for --port 0
    port = holder.getsockname()[1]
    read_end, write_end = os.pipe()
    children: list[int] = []
    for index in range(options.workers):
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            holder.close()
            code = 1
            try:
                sock = _bind(options.host, port, reuse_port=True)
                code = _worker(
                    options,
                    sock,
                    metrics_dir,
                    index,
                    lambda _url: _signal_ready(write_end),
                    say,
                )
            except MlopsError as exc:
                say(f"mlopsctl: error: worker {index}: {exc.one_line()}")
            except BaseException as exc:  # noqa: BLE001 - a child must never return into the CLI
                say(f"mlopsctl: worker {index} failed: {type(exc).__name__}: {exc}")
            finally:
                sys.stderr.flush()
                os._exit(code)
        children.append(pid)
    os.close(write_end)
    stopping = False

    def relay(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, relay)
    signal.signal(signal.SIGINT, relay)
    ready = 0
    while ready < options.workers and not stopping:
        try:
            chunk = os.read(read_end, 64)
        except InterruptedError:
            continue
        if not chunk:
            break  # every worker's end closed: they died before getting ready
        ready += len(chunk)
    os.close(read_end)
    holder.close()
    if ready == options.workers:
        on_ready(_url(options.host, port))
    else:
        relay(signal.SIGTERM, None)
    worst = 0
    for child in children:
        while True:
            try:
                _, status = os.waitpid(child, 0)
                break
            except InterruptedError:
                continue
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            worst = code if code > 0 else 1  # killed by a signal
    return worst if ready == options.workers else max(worst, 1)


def _signal_ready(fd: int) -> None:
    os.write(fd, b"r")


def _open_store(options: ServeOptions, say: Callable[[str], None]) -> ObjectStore | None:
    from mlopsctl.config import (
        PROJECT_FILE,
        STORE_ENV,
        find_project_file,
        load_project,
        open_project_store,
    )

    if options.model_dir is None:
        return open_project_store(load_project())
    if not os.environ.get(STORE_ENV) and find_project_file(Path.cwd()) is None:
        say(f"warning: no store configured ({STORE_ENV} or {PROJECT_FILE}): request logging is off")
        return None
    store = open_project_store(load_project())
    try:
        store.probe()
    except MlopsError as exc:
        say(f"warning: the store is unreachable ({exc.one_line()}): request logging is off")
        store.close()
        return None
    return store


def _load_arms(
    options: ServeOptions, store: ObjectStore | None, say: Callable[[str], None]
) -> tuple[str, list[Any], list[float]]:
    from mlopsctl.registry import get_alias, parse_ref, resolve
    from mlopsctl.serving.app import Arm
    from mlopsctl.serving.arms import ArmSpec, check_arms, parse_arm
    from mlopsctl.serving.follow import load_predictor

    ref = parse_ref(options.ref)
    model = ref.name
    if options.model_dir is not None:
        from mlopsctl.models.artifact import load_model_dir
        from mlopsctl.serving.predictor import Predictor

        assert ref.version is not None
        predictor = Predictor(
            load_model_dir(options.model_dir, trust_pickle=options.trust), model, ref.version
        )
        return model, [Arm(str(ref.version), None, predictor)], [1.0]
    assert store is not None
    if options.arms:
        specs = check_arms([parse_arm(a) for a in options.arms])
    elif ref.alias:
        specs = [ArmSpec(ref.alias, 1.0)]
    else:
        version = ref.version or int(resolve(store, ref)["version"])
        specs = [ArmSpec(str(version), 1.0)]
    loaded: dict[int, Any] = {}
    arms, weights = [], []
    for spec in specs:
        etag = None
        if spec.version is not None:
            version = spec.version
        else:
            found = get_alias(store, model, spec.label)
            if found is None:
                from mlopsctl.errors import NotFound

                raise NotFound(
                    f"model '{model}' has no alias '{spec.label}'",
                    f"set it with: mlopsctl models alias set {model} {spec.label} VERSION",
                )
            version, etag = int(found[0]["version"]), found[1]
        if version not in loaded:
            loaded[version] = load_predictor(
                store, model, version, smoke=False, trust_pickle=options.trust
            )
        arm = Arm(spec.label, spec.label if spec.version is None else None, loaded[version])
        arm.etag = etag
        arms.append(arm)
        weights.append(spec.weight)
    return model, arms, weights


def _worker(
    options: ServeOptions,
    sock: socket.socket,
    metrics_dir: Path,
    index: int,
    on_ready: Callable[[str], None],
    say: Callable[[str], None],
) -> int:
    import asyncio

    from mlopsctl.serving.app import App, make_router
    from mlopsctl.serving.http import Server
    from mlopsctl.serving.metrics import Metrics

    store = _open_store(options, say)
    try:
        model, arms, weights = _load_arms(options, store, say)
        metrics = Metrics(metrics_dir, index, model)
        app = App(
            model,
            make_router(arms, weights),
            metrics,
            metrics_dir,
            key=options.key,
            log_sample=options.log_sample,
        )
        writers = _start_logs(options, store, app, say) if store is not None else []
        follower = None
        if store is not None and options.model_dir is None:
            from mlopsctl.serving.follow import Follower

            follower = Follower(
                app,
                store,
                model,
                deployment=options.deployment,
                poll=options.poll,
                metrics=metrics,
                say=say,
                worker=index,
                trust_pickle=options.trust,
            )
            if options.arms and index == 0:
                _publish_arms(store, model, options, say)
            follower.check_once()  # a deployment record already in the store applies now
            follower.start()

        http = Server(app.handle, options.max_body)
        loop = asyncio.new_event_loop()
        stop = asyncio.Event()
        sock.listen(1024)
        sock.setblocking(False)
        server = loop.run_until_complete(loop.create_server(http.protocol, sock=sock))
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        port = sock.getsockname()[1]
        _quiet_gc()
        on_ready(_url(options.host, port))
        try:
            loop.run_until_complete(stop.wait())
        finally:
            # Stop accepting, let requests already received finish, close idle connections.
            app.ready = False
            server.close()
            http.closing = True
            http.close_idle()
            deadline = time.monotonic() + SHUTDOWN_GRACE_S
            while http.connections and time.monotonic() < deadline:
                loop.run_until_complete(asyncio.sleep(0.02))
                http.close_idle()
            loop.run_until_complete(server.wait_closed())
            loop.close()
            if follower is not None:
                follower.stop()
            for writer in writers:
                writer.close()
            metrics.close()
        return 0
    finally:
        if store is not None:
            store.close()


def _quiet_gc() -> None:
    """Move everything loaded so far (libraries, the model) out of the collector's reach: a
    full collection over scikit-learn's and pandas' objects takes tens of milliseconds, which
    would land on some request's latency. Requests allocate few long-lived objects."""
    import gc

    gc.collect()
    gc.freeze()


def _publish_arms(
    store: ObjectStore, model: str, options: ServeOptions, say: Callable[[str], None]
) -> None:
    """--arm on the command line is the split this server starts with: it becomes the
    deployment record (unless the record already says the same), which `traffic set` edits."""
    from mlopsctl.serving.arms import arms_of, parse_arm, read_deployment, set_traffic

    wanted = [parse_arm(a) for a in options.arms]
    current = read_deployment(store, model, options.deployment)
    if (
        current is not None
        and arms_of(current[0]) == wanted
        and current[0].get("key") == options.key
    ):
        return
    set_traffic(
        store,
        model,
        wanted,
        deployment=options.deployment,
        key=options.key,
        reason="mlopsctl serve --arm",
    )


def _start_logs(
    options: ServeOptions, store: ObjectStore, app: App, say: Callable[[str], None]
) -> list[Any]:
    from mlopsctl.serving.logs import (
        FEEDBACK,
        PREDICTIONS,
        BufferedWriter,
        feedback_table,
        prediction_table,
    )

    predictor = app.router.weighted[0].predictor
    classification = predictor.task == "classification"
    app.classification = classification  # /feedback checks 'actual' against the log's type
    writers = []
    if options.log:
        app.log = BufferedWriter(
            store,
            PREDICTIONS,
            app.model,
            prediction_table(app.model),
            batch_rows=options.log_batch,
            interval=options.log_interval,
            max_rows=options.log_buffer,
            metrics=app.metrics,
            warn=say,
        )
        writers.append(app.log)
    app.feedback = BufferedWriter(
        store,
        FEEDBACK,
        app.model,
        feedback_table(classification),
        batch_rows=options.log_batch,
        interval=options.log_interval,
        max_rows=options.log_buffer,
        metrics=app.metrics,
        warn=say,
    )
    writers.append(app.feedback)
    return writers
