"""One serving worker: open the store, load the model (or its weighted arms), start the
request and feedback log writers and the follower of aliases and the deployment record, then
serve HTTP on an already bound socket until SIGTERM/SIGINT, and stop gracefully: stop
accepting, let requests already received finish (at most ``SHUTDOWN_GRACE_S``), flush the logs.

HTTP is uvicorn (httptools and uvloop) with protocol.py's limits, running asgi.py's app. Its
modules (app, asgi, logs, follow, uvicorn, the model) are imported here, inside the functions, so
that a supervisor forks its workers before any of them is loaded.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import MlopsError
from mlopsctl.logformat import ERRORS, FEEDBACK, PREDICTIONS
from mlopsctl.serving.listen import url
from mlopsctl.serving.options import ServeOptions

if TYPE_CHECKING:
    from mlopsctl.serving.app import App
    from mlopsctl.store.base import ObjectStore

SHUTDOWN_GRACE_S = 10.0
# File descriptors kept free of connections: the listening socket, the store, log writes,
# model files, the follower's smoke loads and the answers to refused connections.
FD_RESERVE = 64
# Helper processes per worker that decode large request bodies.
DECODING_PROCESSES = 2


def run_worker(
    options: ServeOptions,
    sock: socket.socket,
    metrics_dir: Path,
    index: int,
    on_ready: Callable[[str], None],
    say: Callable[[str], None],
) -> int:
    """Serve on ``sock`` (bound, not yet listening) as worker ``index`` until SIGTERM or SIGINT;
    ``on_ready`` gets the URL once requests are answered. Returns 0 after a graceful stop."""
    from mlopsctl.serving.app import App, make_router
    from mlopsctl.serving.metrics import Metrics

    store = _open_store(options, say)
    try:
        model, arms, weights = _load_arms(options, store, say)
        metrics = Metrics(metrics_dir, index, model, say=say)
        app = App(
            model,
            make_router(arms, weights),
            metrics,
            metrics_dir,
            key=options.key,
            log_sample=options.log_sample,
            log_contributions=options.log_contributions if options.log else 0.0,
            strict=options.strict,
            max_rows=options.max_rows,
            say=say,
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
        try:
            _serve_http(options, sock, app, on_ready, say)
        finally:
            app.ready = False
            if follower is not None:
                follower.stop()
            for writer in writers:
                writer.close()
            metrics.close()
        return 0
    finally:
        if store is not None:
            store.close()


def connection_cap(wanted: int) -> int:
    """At most ``wanted`` connections, and fewer when the open-file limit would not leave room
    for the listening socket, the store, the logs and the answers of refused connections. The
    soft limit is raised to the hard one first."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > soft):
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return wanted
    reserve = max(FD_RESERVE, soft // 8)
    return max(1, min(wanted, soft - reserve))


def _serve_http(
    options: ServeOptions,
    sock: socket.socket,
    app: App,
    on_ready: Callable[[str], None],
    say: Callable[[str], None],
) -> None:
    """uvicorn (httptools, uvloop) on ``sock`` with the hardened protocol, until a signal."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    import uvicorn
    import uvloop

    from mlopsctl.serving.asgi import AsgiApp
    from mlopsctl.serving.protocol import Limits, protocol_class

    _quiet_uvicorn_logs(say)
    cap = connection_cap(options.max_connections)
    if cap < options.max_connections:
        say(
            f"note: at most {cap} connections per worker (the open-file limit allows no more; "
            "raise `ulimit -n` for more)"
        )
    limits = Limits(
        max_connections=cap,
        keep_alive_s=options.keep_alive,
        request_timeout_s=options.request_timeout,
        write_timeout_s=options.request_timeout,
    )
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="predict")
    processes = _decoding_processes(say)
    asgi = AsgiApp(
        app,
        max_body=options.max_body,
        body_budget=options.max_inflight,
        pool=pool,
        processes=processes,
        say=say,
    )
    config = uvicorn.Config(
        asgi,
        http=protocol_class(limits, lambda status: app.metrics.http("(http)", status), inline=asgi),
        loop="none",
        lifespan="off",
        ws="none",
        interface="asgi3",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        timeout_keep_alive=max(1, int(options.keep_alive)),
        timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S),
        backlog=2048,
    )
    server = _Server(config)
    sock.listen(2048)
    sock.setblocking(False)
    url_text = url(options.host, sock.getsockname()[1])

    async def main() -> None:
        task = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.005)
        if server.started:
            _quiet_gc()
            on_ready(url_text)
        await task

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main())
    finally:
        pool.shutdown(wait=True)
        if processes is not None:
            processes.shutdown(wait=False, cancel_futures=True)
        loop.close()


def _decoding_processes(say: Callable[[str], None]) -> Any:
    """Helper processes that decode large request bodies (asgi.py), started now; None when
    they cannot be started (large bodies are then decoded in the server process)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from mlopsctl.serving.decode import start_helper, warm

    try:
        processes = ProcessPoolExecutor(
            max_workers=DECODING_PROCESSES,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=start_helper,
            initargs=(os.getpid(),),
        )
        for _ in range(DECODING_PROCESSES):
            processes.submit(warm)
    except (OSError, RuntimeError) as exc:
        say(f"warning: no helper processes for large bodies ({exc}); decoding them in-process")
        return None
    return processes


def _quiet_uvicorn_logs(say: Callable[[str], None]) -> None:
    """uvicorn's and asyncio's own log lines go through ``say``, errors only, at most one a
    second (a flood of bad requests must not become a flood of log)."""
    import logging

    class Handler(logging.Handler):
        last = 0.0

        def emit(self, record: logging.LogRecord) -> None:
            now = time.monotonic()
            if now - Handler.last < 1.0:
                return
            Handler.last = now
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                text += f": {type(exc).__name__}: {exc}"
            say(f"server: {text}")

    handler = Handler(level=logging.ERROR)
    for name in ("uvicorn", "uvicorn.error", "asyncio"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(logging.ERROR)
        logger.propagate = False


def _server_class() -> Any:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, minus re-raising the stop signal after a graceful stop (this
        process then returns its exit status itself)."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True
            else:
                self.should_exit = True

    return Server


def _Server(config: Any) -> Any:
    return _server_class()(config)


def _quiet_gc() -> None:
    """Move everything loaded so far (libraries, the model) out of the collector's reach: a
    full collection over scikit-learn's and pandas' objects takes tens of milliseconds, which
    would land on some request's latency. Requests allocate few long-lived objects."""
    import gc

    gc.collect()
    gc.freeze()


def _open_store(options: ServeOptions, say: Callable[[str], None]) -> ObjectStore | None:
    from mlopsctl.config import (
        PROJECT_FILE,
        STORE_ENV,
        explicit_store_url,
        find_project_file,
        load_project,
        open_project_store,
    )

    if options.model_dir is None:
        return open_project_store(load_project())
    if explicit_store_url() is None and find_project_file(Path.cwd()) is None:
        say(
            f"warning: no store configured (--store, {STORE_ENV} or {PROJECT_FILE}): "
            "request logging is off"
        )
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
    from mlopsctl.serving.logs import BufferedWriter, error_table, feedback_table, prediction_table

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
        if app.log_contributions > 0.0:
            # Loads the explainer now, before the first sampled request would.
            for arm in app.router.arms:
                app.contribution_names(arm.predictor)
        app.errors = BufferedWriter(
            store,
            ERRORS,
            app.model,
            error_table(app.model),
            batch_rows=options.log_batch,
            interval=options.log_interval,
            max_rows=options.log_buffer,
            metrics=app.metrics,
            warn=say,
        )
        writers.append(app.errors)
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
