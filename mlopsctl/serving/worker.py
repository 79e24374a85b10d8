"""One serving worker: open the store, load the model (or its weighted arms), start the
request and feedback log writers and the follower of aliases and the deployment record, then
serve HTTP on an already bound socket until SIGTERM/SIGINT, and stop gracefully: stop
accepting, let requests already received finish (at most ``SHUTDOWN_GRACE_S``), flush the logs.

Its modules (app, http, logs, follow, the model) are imported here, inside the functions, so
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
from mlopsctl.serving.listen import url
from mlopsctl.serving.options import ServeOptions

if TYPE_CHECKING:
    from mlopsctl.serving.app import App
    from mlopsctl.store.base import ObjectStore

SHUTDOWN_GRACE_S = 10.0


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
        on_ready(url(options.host, port))
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
