"""Starting a server: one worker in this process, or, with ``workers > 1``, that many forked
workers on one port.

The parent binds the port first (so that ``--port 0`` is fixed for all), then forks the workers
before anything heavy is imported; each binds the same port with SO_REUSEPORT (the kernel
spreads connections) and runs worker.py. The parent relays SIGTERM/SIGINT to them, reports
ready once every worker is, respawns a worker that dies (with backoff, logged; a worker that
keeps dying right after its start is given up, and when every worker is given up the server
exits 1, saying so), and returns the worst exit status after a stop.

uvicorn's own multi-process supervisor is not used: it spawns workers that re-import the app
(here: reload the model in every worker before any is ready, and no fork before the heavy
imports), restarts without backoff, and has no way to report readiness of all workers to the
caller, which `mlopsctl deploy`'s handover waits for.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
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


# Respawn backoff: the first restart after this many seconds, doubling per quick death (a worker
# that lived RESPAWN_RESET_S resets it) up to RESPAWN_MAX_S; a slot whose worker died
# RESPAWN_GIVE_UP times in a row, each within RESPAWN_RESET_S, is given up.
RESPAWN_FIRST_S = 0.5
RESPAWN_MAX_S = 30.0
RESPAWN_RESET_S = 60.0
RESPAWN_GIVE_UP = 5


@dataclass
class _Slot:
    index: int
    pid: int = 0
    started: float = 0.0
    quick_deaths: int = 0
    due: float | None = None  # when to respawn it
    given_up: bool = False


def _supervise(
    options: ServeOptions,
    metrics_dir: Path,
    on_ready: Callable[[str], None],
    say: Callable[[str], None],
) -> int:
    """Fork the workers (before any heavy import), relay signals, report ready once all are;
    then respawn a worker that dies (with backoff, said on stderr; its counters stay in the
    metrics), and exit non-zero, saying so, once every worker is dead for good."""
    from mlopsctl.serving.metrics import forget_process

    # Bound for the server's whole life: fixes the port for --port 0 and keeps it while a
    # worker is respawned. Not listening, so the kernel gives it no connections.
    holder = bind(options.host, options.port, reuse_port=True)
    port = holder.getsockname()[1]
    read_end, write_end = os.pipe()
    slots = [_Slot(i) for i in range(options.workers)]
    by_pid: dict[int, _Slot] = {}
    stopping = False

    def spawn(slot: _Slot, ready_fd: int | None) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            if ready_fd is not None:  # the first workers; respawned ones have no pipe
                os.close(read_end)
            holder.close()
            code = 1
            try:
                sock = bind(options.host, port, reuse_port=True)
                code = run_worker(
                    options,
                    sock,
                    metrics_dir,
                    slot.index,
                    (lambda _url: _signal_ready(ready_fd)) if ready_fd is not None else _nothing,
                    say,
                )
            except MlopsError as exc:
                say(f"mlopsctl: error: worker {slot.index}: {exc.one_line()}")
            except BaseException as exc:  # noqa: BLE001 - a child must never return into the CLI
                say(f"mlopsctl: worker {slot.index} failed: {type(exc).__name__}: {exc}")
            finally:
                sys.stderr.flush()
                os._exit(code)
        slot.pid = pid
        slot.started = time.monotonic()
        slot.due = None
        by_pid[pid] = slot

    for slot in slots:
        spawn(slot, write_end)
    os.close(write_end)

    def relay(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(by_pid):
            try:
                os.kill(pid, signal.SIGTERM)
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
    all_ready = ready == options.workers
    if all_ready and not stopping:
        on_ready(url(options.host, port))
    else:
        relay(signal.SIGTERM, None)

    worst = 0
    try:
        while by_pid or (not stopping and any(s.due is not None for s in slots)):
            try:
                pid, status = os.waitpid(-1, os.WNOHANG) if by_pid else (0, 0)
            except ChildProcessError:
                pid, status = 0, 0
            except InterruptedError:
                continue
            if pid == 0:
                now = time.monotonic()
                if not stopping:
                    for slot in slots:
                        if slot.due is not None and now >= slot.due:
                            say(f"restarting worker {slot.index}")
                            spawn(slot, None)
                time.sleep(0.05)
                continue
            slot_or_none = by_pid.pop(pid, None)
            code = os.waitstatus_to_exitcode(status)
            if stopping or slot_or_none is None:
                if code != 0:
                    worst = code if code > 0 else 1  # killed by a signal
                continue
            slot = slot_or_none
            forget_process(metrics_dir, pid)
            lived = time.monotonic() - slot.started
            slot.quick_deaths = slot.quick_deaths + 1 if lived < RESPAWN_RESET_S else 1
            how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
            if slot.quick_deaths >= RESPAWN_GIVE_UP:
                slot.given_up = True
                say(
                    f"warning: worker {slot.index} (pid {pid}) {how}; it died "
                    f"{slot.quick_deaths} times in a row within {RESPAWN_RESET_S:g} s of "
                    "starting: not restarting it"
                )
            else:
                delay = min(RESPAWN_MAX_S, RESPAWN_FIRST_S * 2 ** (slot.quick_deaths - 1))
                slot.due = time.monotonic() + delay
                say(
                    f"warning: worker {slot.index} (pid {pid}) {how}; restarting it in "
                    f"{delay:g} s (its counters are kept)"
                )
            if not by_pid and all(s.given_up for s in slots):
                say(
                    f"mlopsctl: error: all {options.workers} workers died and none can be "
                    "restarted; stopping"
                )
                worst = 1
                break
    finally:
        holder.close()
    if not all_ready:
        return max(worst, 1)
    return worst


def _signal_ready(fd: int) -> None:
    os.write(fd, b"r")


def _nothing(_url: str) -> None:
    return None
