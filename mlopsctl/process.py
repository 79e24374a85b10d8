"""Process helpers shared by the server's helper processes and the test services."""

from __future__ import annotations

import contextlib
import os
import signal
import sys


def die_with_parent(parent: int | None = None, sig: int = signal.SIGKILL) -> None:
    """Have the kernel send `sig` to this process when the thread that started it ends (its
    parent killed with SIGKILL included), so that no orphan is left holding memory and pipes.
    With `parent` (its pid, as the parent knew it), exit now if it is already gone. Linux
    only; elsewhere the parent's own stop is all there is."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, sig)
    if parent is not None and os.getppid() != parent:
        os._exit(0)  # the parent died before the signal was armed
