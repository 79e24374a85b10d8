"""Racing CLI processes: each one imports what it needs, says ``ready``, and waits for one
line on stdin; all are released at once, so the interesting part overlaps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def release_together(
    racer: str, commands: list[list[str]], cwd: Path, timeout: float
) -> list[tuple[int, str, str]]:
    """Start ``python -c RACER *command`` for each command, release them together once all are
    ready, and return (exit code, stdout, stderr) of each, in order. None is left running."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", racer, *command],
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = [proc.communicate(timeout=timeout) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, results, strict=True)]
