"""Starting a server: one worker in this process, or, with ``workers > 1``, that many forked
workers on one port.

The parent binds the port first (so that ``--port 0`` is fixed for all), then forks the workers
before anything heavy is imported; each binds the same port with SO_REUSEPORT (the kernel
spreads connections) and runs worker.py. The parent relays SIGTERM/SIGINT to them, reports
ready once every worker is, and returns the worst exit status.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlopsctl.errors import MlopsError, UsageError
from mlopsctl.serving.listen import bind, url
from mlopsctl.serving.options import ServeOptions, check_options
from mlopsctl.serving.worker import run_worker


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
            sock = bind(options.host, options.port, reuse_port=options.share_port)
            return run_worker(options, sock, metrics_dir, 0, on_ready, say)
        return _supervise(options, metrics_dir, on_ready, say)
    finally:
        import shutil

        shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(
    options: ServeOptions,
    metrics_dir: Path,
    on_ready: Callable[[str], None],
    say: Callable[[str], None],
) -> int:
    """Fork the workers (before any heavy import), relay signals, report ready once all are."""
    holder = bind(options.host, options.port, reuse_port=True)  # fixes the port for --port 0
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
                sock = bind(options.host, port, reuse_port=True)
                code = run_worker(
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
        on_ready(url(options.host, port))
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
