"""What a command shows while it works, on stderr: the steps of a run and the bytes of large
transfers. The services report through callbacks (RunOptions.progress, store.transfer's
observer) and never print; this module turns those reports into lines.

- On a terminal: a line per step event, as they happen, and a byte progress bar (rich) for
  each transfer of more than a few MB.
- Not on a terminal (CI logs, pipes): one line per step start and end, with the time of day
  and how long the step took; no bars.
- `--quiet`: none of it. Errors and the command's own output are printed all the same.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mlopsctl.store.transfer import Direction, Meter

# Transfers smaller than this end before a bar would tell anyone anything.
BAR_MIN_BYTES = 8 << 20

_quiet = False
_bars = False  # whether TransferBars is the store's transfer observer


def configure(*, quiet: bool) -> None:
    """Set once per command by the root callback (cli/main.py). On a terminal (and unless
    quiet) large transfers get a byte progress bar."""
    global _quiet, _bars
    _quiet = quiet
    if not quiet and sys.stderr.isatty():
        from mlopsctl.store.transfer import set_observer

        set_observer(TransferBars())
        _bars = True


def reset() -> None:
    """Back to the defaults once a command is over (the observer holds a terminal display)."""
    global _quiet, _bars
    _quiet = False
    if _bars:
        from mlopsctl.store.transfer import set_observer

        set_observer(None)
        _bars = False


def is_quiet() -> bool:
    return _quiet


class StepProgress:
    """The `progress` callback of a pipeline run: called as (step, state) with the states the
    executor reports: waiting, running, cached, skipped, interrupted, "done in 1.2 s",
    "failed after 1.2 s".

    `terminal` None: whether stderr is one. `verbose` on a terminal changes nothing; off a
    terminal every line is printed as for a log anyway."""

    _ENDS = ("done", "failed", "cached", "skipped", "interrupted")

    def __init__(
        self,
        *,
        terminal: bool | None = None,
        quiet: bool | None = None,
        stream: IO[str] | None = None,
        width: int = 12,
    ) -> None:
        self.quiet = is_quiet() if quiet is None else quiet
        self.stream = stream
        self.terminal = self._out().isatty() if terminal is None else terminal
        self.width = width
        self._started: dict[str, float] = {}
        self._t0 = time.monotonic()
        self._lock = threading.Lock()

    def _out(self) -> IO[str]:
        return self.stream if self.stream is not None else sys.stderr

    def __call__(self, step: str, state: str) -> None:
        if self.quiet:
            return
        with self._lock:
            now = time.monotonic()
            if state == "running":
                self._started[step] = now
            line = (
                f"  {step:<{self.width}} {state}"
                if self.terminal
                else self._log_line(step, state, now)
            )
            if line is None:
                return
            out = self._out()
            out.write(line + "\n")
            out.flush()

    def _log_line(self, step: str, state: str, now: float) -> str | None:
        """A line for a log: the time of day, the time since the run started, the step and
        what happened; None for states that are neither a start nor an end (waiting)."""
        if state == "running":
            said = "started"
        elif state.startswith(self._ENDS):
            said = state
            began = self._started.get(step)
            if state == "interrupted" and began is not None:
                said = f"interrupted after {now - began:.1f} s"
        else:
            return None
        clock = time.strftime("%H:%M:%S")
        return f"{clock} +{now - self._t0:7.1f}s  {step:<{self.width}} {said}"


class TransferBars:
    """The transfer observer on a terminal: a rich progress bar per transfer of at least
    BAR_MIN_BYTES, shown while it runs and removed when it ends. rich is imported only when the
    first such transfer starts."""

    def __init__(self, min_bytes: int = BAR_MIN_BYTES, stream: IO[str] | None = None) -> None:
        self.min_bytes = min_bytes
        self.stream = stream
        self._lock = threading.Lock()
        self._progress: Any = None
        self._open = 0

    def __call__(self, direction: Direction, key: str, total: int) -> Meter | None:
        if total < self.min_bytes:
            return None
        return _Bar(self, direction, key, total)

    def _add(self, description: str, total: int) -> Any:
        with self._lock:
            if self._progress is None:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    DownloadColumn,
                    Progress,
                    TextColumn,
                    TimeRemainingColumn,
                    TransferSpeedColumn,
                )

                console = Console(file=self.stream or sys.stderr)
                self._progress = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    DownloadColumn(binary_units=True),
                    TransferSpeedColumn(),
                    TimeRemainingColumn(),
                    console=console,
                    transient=True,
                )
                self._progress.start()
            self._open += 1
            return self._progress.add_task(description, total=total)

    def _advance(self, task: Any, n: int) -> None:
        progress = self._progress
        if progress is not None:
            progress.advance(task, n)

    def _remove(self, task: Any) -> None:
        with self._lock:
            progress = self._progress
            if progress is None:
                return
            progress.remove_task(task)
            self._open -= 1
            if self._open == 0:
                progress.stop()
                self._progress = None


class _Bar:
    """One transfer's bar, created on its first bytes (a transfer that ends before moving
    any, say an upload of what the store already holds, shows nothing)."""

    def __init__(self, owner: TransferBars, direction: Direction, key: str, total: int) -> None:
        self.owner = owner
        self.total = total
        name = key.rsplit("/", 1)[-1]
        self.description = f"{'upload  ' if direction == 'upload' else 'download'} {name[:16]}"
        self._task: Any = None
        self._lock = threading.Lock()
        self._closed = False

    def advance(self, n: int) -> None:
        with self._lock:
            if self._closed:
                return
            if self._task is None:
                self._task = self.owner._add(self.description, self.total)
        self.owner._advance(self._task, n)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            task, self._task = self._task, None
        if task is not None:
            self.owner._remove(task)
