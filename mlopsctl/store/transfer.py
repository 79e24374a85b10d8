"""Byte progress of file transfers. A store reports each file it moves through `meter()`;
whoever wants to show progress (the CLI, on a terminal) installs an observer, which decides per
transfer whether to follow it (say, only above a few MB). With no observer a transfer's meter
does nothing, so the stores pay one call per part or chunk.

The store layer never prints: the observer is a callback given from above."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

Direction = Literal["upload", "download"]


class Meter(Protocol):
    """An observer's view of one transfer. `advance` may be called from several threads at
    once; `close` once, when the transfer ends (done or not)."""

    def advance(self, n: int) -> None: ...

    def close(self) -> None: ...


# (direction, key, total bytes) -> a Meter for this transfer, or None to leave it alone.
Observer = Callable[[Direction, str, int], "Meter | None"]

_observer: Observer | None = None


def set_observer(observer: Observer | None) -> Observer | None:
    """Install (None: remove) the process's observer of transfers; returns the previous one."""
    global _observer
    previous, _observer = _observer, observer
    return previous


class Transfer:
    """What a store feeds while it moves a file; a context manager that closes the meter.
    Progress is a courtesy: an observer that fails is dropped, never the transfer."""

    __slots__ = ("_meter",)

    def __init__(self, meter: Meter | None) -> None:
        self._meter = meter

    def advance(self, n: int) -> None:
        if self._meter is not None:
            try:
                self._meter.advance(n)
            except Exception:  # noqa: BLE001 - a display's failure must not fail a transfer
                self._meter = None

    def close(self) -> None:
        meter, self._meter = self._meter, None
        if meter is not None:
            try:
                meter.close()
            except Exception:  # noqa: BLE001 - as above
                pass

    def __enter__(self) -> Transfer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def meter(direction: Direction, key: str, total: int) -> Transfer:
    """The progress of moving `total` bytes of `key`, for the store to advance as bytes move."""
    observer = _observer
    if observer is None:
        return Transfer(None)
    try:
        return Transfer(observer(direction, key, total))
    except Exception:  # noqa: BLE001 - as above
        return Transfer(None)
