"""What a run shows while it works: off a terminal (CI logs) one line per step start and end
with timings, nothing with --quiet; on a terminal (a real pseudo-terminal here) a byte progress
bar for transfers of more than a few MB, and none for small ones or with --quiet."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

from mlopsctl.cli.progress import StepProgress

from .conftest import Invoke

CHAIN = """apiVersion: mlopsctl/v1
kind: Pipeline
name: chain
steps:
  first:
    run: "sleep 0.3 && echo one > {outputs.out}"
    outputs: [out]
  second:
    run: "cat {inputs.a} > {outputs.out}"
    inputs: {a: first.out}
    outputs: [out]
"""

LINE = re.compile(r"^\d\d:\d\d:\d\d \+ *\d+\.\ds  (?P<step>\S+) +(?P<what>.+)$")


def _progress_lines(stderr: str) -> list[tuple[str, str]]:
    return [(m["step"], m["what"]) for m in map(LINE.match, stderr.splitlines()) if m]


def test_a_run_off_a_terminal_prints_each_step_start_and_end(project: Path, cli: Invoke) -> None:
    (project / "pipelines/chain.yaml").write_text(CHAIN)
    result = cli("run", "pipelines/chain.yaml", cwd=project)
    assert result.exit_code == 0, result.stderr
    lines = _progress_lines(result.stderr)
    assert [step for step, _ in lines] == ["first", "first", "second", "second"]
    assert lines[0][1] == "started" and lines[2][1] == "started"
    assert re.fullmatch(r"done in \d+\.\d s", lines[1][1])
    assert float(lines[1][1].split()[2]) >= 0.3  # the step's own time
    assert "waiting" not in result.stderr
    # Served from the cache: one line per step all the same.
    again = cli("run", "pipelines/chain.yaml", cwd=project)
    assert _progress_lines(again.stderr) == [("first", "cached"), ("second", "cached")]


def test_quiet_prints_no_progress_but_the_result_and_errors(project: Path, cli: Invoke) -> None:
    (project / "pipelines/chain.yaml").write_text(CHAIN)
    result = cli("--quiet", "run", "pipelines/chain.yaml", cwd=project)
    assert result.exit_code == 0
    assert result.stderr == ""
    assert result.stdout.startswith("run ")  # the summary is the command's output
    (project / "pipelines/bad.yaml").write_text(CHAIN.replace("cat {inputs.a}", "false"))
    failed = cli("-q", "run", "pipelines/bad.yaml", cwd=project)
    assert failed.exit_code == 1
    assert _progress_lines(failed.stderr) == []
    assert "step 'second' failed" in failed.stderr


def test_failed_and_skipped_steps_end_with_a_line_too() -> None:
    stream = io.StringIO()
    progress = StepProgress(terminal=False, quiet=False, stream=stream)
    for step, state in [
        ("a", "waiting"),
        ("b", "waiting"),
        ("a", "running"),
        ("a", "failed after 1.5 s"),
        ("b", "skipped"),
    ]:
        progress(step, state)
    got = _progress_lines(stream.getvalue())
    assert got == [("a", "started"), ("a", "failed after 1.5 s"), ("b", "skipped")]
    # On a terminal every event shows, as it always has.
    stream = io.StringIO()
    StepProgress(terminal=True, quiet=False, stream=stream)("a", "waiting")
    assert stream.getvalue() == "  a            waiting\n"


PTY_SCRIPT = """
import sys
from pathlib import Path
from mlopsctl.cli import progress
from mlopsctl.store.local import LocalStore

progress.configure(quiet=sys.argv[1] == "quiet")
folder = Path(sys.argv[2])
store = LocalStore(folder / "store")
for name, size in (("big.bin", 24 << 20), ("small.bin", 1 << 20)):
    path = folder / name
    path.write_bytes(b"x" * size)
    store.put_file("blobs/" + name, path)
    store.get_file("blobs/" + name, folder / ("back-" + name))
progress.reset()
print("END", flush=True)
"""


def _in_a_terminal(*args: str) -> str:
    """Run PTY_SCRIPT with stdout and stderr on a pseudo-terminal; everything it wrote."""
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", PTY_SCRIPT, *args],
        stdin=subprocess.DEVNULL,
        stdout=child,
        stderr=child,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120"},
    )
    os.close(child)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([main], [], [], 60)
            if not ready:
                break
            try:
                data = os.read(main, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(main)
        assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode("utf-8", errors="replace")


def test_large_transfers_show_byte_progress_on_a_terminal(tmp_path: Path) -> None:
    shown = _in_a_terminal("bars", str(tmp_path))
    assert "END" in shown
    assert "upload   big.bin" in shown and "download big.bin" in shown
    assert "24.0 MiB" in shown  # the bar's byte count
    assert "small.bin" not in shown  # 1 MiB: no bar
    assert (tmp_path / "back-big.bin").stat().st_size == 24 << 20


def test_quiet_shows_no_bars_on_a_terminal(tmp_path: Path) -> None:
    shown = _in_a_terminal("quiet", str(tmp_path))
    assert "END" in shown and "big.bin" not in shown and "MiB" not in shown


def test_the_flag_reaches_the_store_observer(project: Path, cli: Invoke) -> None:
    from mlopsctl.store import transfer

    # Not a terminal (CliRunner): no bars, and nothing left installed after the command.
    result = cli("runs", "list", "--json", cwd=project)
    assert result.exit_code == 0 and json.loads(result.stdout) == []
    assert transfer.set_observer(None) is None
