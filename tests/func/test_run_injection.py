"""Values reach `run:` commands as data, never as shell code: `-p` values, spec params and
environment variables, in the shell-string form and in the argv-list form. Each case writes the
arguments the program received; none may create the marker file a shell would have made."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from mlopsctl.pipeline.params import parse_override

from .conftest import Invoke

SHOW_PY = """
import json, sys
*values, out = sys.argv[1:]
with open(out, "w", encoding="utf-8") as handle:
    json.dump(values, handle)
"""

# Each value, were it pasted into a shell command unquoted, would touch MARKER (or mangle
# itself: quotes, globs, a leading dash, a placeholder written as data).
NASTY = [
    "$(touch MARKER)",
    "`touch MARKER`",
    "x; touch MARKER",
    "x && touch MARKER",
    "x | touch MARKER",
    "x\ntouch MARKER",
    "it's \"quoted\" 'twice'",
    "*",
    "-rf",
    "a  b\tc",
    "{outputs.out}",
    "$HOME ${HOME} \\ \\n",
    "'; touch MARKER; echo '",
    '"; touch MARKER; echo "',
]


def _values(marker: Path) -> list[str]:
    return [v.replace("MARKER", str(marker)) for v in NASTY]


def _text(value: Any) -> str:
    """How a value is written into a command: text as is, a mapping or list as JSON."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def _spec(form: str, refs: list[str]) -> str:
    python = sys.executable
    if form == "string":
        run = " ".join([shlex.quote(python), "show.py", *refs, "{outputs.out}"])
        run_yaml = json.dumps(run)
    else:
        run_yaml = json.dumps([python, "show.py", *refs, "{outputs.out}"])
    return f"""apiVersion: mlopsctl/v1
kind: Pipeline
name: quoting
params: {{}}
steps:
  show:
    run: {run_yaml}
    code: [show.py]
    outputs: [out]
"""


def _received(project: Path, cli: Invoke, spec: str, *args: str) -> list[Any]:
    path = project / "pipelines" / "quoting.yaml"
    path.write_text(spec)
    (project / "show.py").write_text(SHOW_PY)
    result = cli("run", str(path), "--json", *args, cwd=project)
    assert result.exit_code == 0, result.stderr + result.stdout
    record = json.loads(result.stdout)
    assert record["status"] == "succeeded"
    digest = record["steps"]["show"]["outputs"]["out"]["digest"]
    hexdigest = digest.split(":", 1)[1]
    blob = next(p for p in project.rglob(f"*{hexdigest}*") if p.is_file())
    received: list[Any] = json.loads(blob.read_text(encoding="utf-8"))
    return received


@pytest.mark.parametrize("form", ["string", "argv"])
def test_override_values_are_one_literal_argument(
    project: Path, cli: Invoke, tmp_path: Path, form: str
) -> None:
    marker = tmp_path / "pwned"
    values = _values(marker)
    names = [f"v{i}" for i in range(len(values))]
    spec = _spec(form, [f"${{params.{n}}}" for n in names]).replace(
        "params: {}", "params: {" + ", ".join(f"{n}: x" for n in names) + "}"
    )
    args: list[str] = []
    for name, value in zip(names, values, strict=True):
        args += ["-p", f"{name}={value}"]
    received = _received(project, cli, spec, *args)
    expected = [_text(parse_override(f"{n}={v}")[1]) for n, v in zip(names, values, strict=True)]
    assert received == expected
    assert not marker.exists()


@pytest.mark.parametrize("form", ["string", "argv"])
def test_spec_params_are_one_literal_argument(
    project: Path, cli: Invoke, tmp_path: Path, form: str
) -> None:
    marker = tmp_path / "pwned"
    values = _values(marker)
    params: dict[str, Any] = {f"v{i}": v for i, v in enumerate(values)}
    params["mapping"] = {"cmd": f"$(touch {marker})", "list": ["a b", "`x`"]}
    params["number"] = 6
    refs = [f"${{params.{n}}}" for n in params]
    spec = _spec(form, refs).replace("params: {}", "params: " + json.dumps(params))
    received = _received(project, cli, spec)
    expected = [*values, json.dumps(params["mapping"], sort_keys=True), "6"]
    assert received == expected
    assert not marker.exists()


@pytest.mark.parametrize("form", ["string", "argv"])
def test_environment_values_are_one_literal_argument(
    project: Path, cli: Invoke, tmp_path: Path, form: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"
    values = _values(marker)
    for i, value in enumerate(values):
        monkeypatch.setenv(f"MLOPSCTL_TEST_V{i}", value)
    refs = [f"${{env.MLOPSCTL_TEST_V{i}}}" for i in range(len(values))]
    received = _received(project, cli, _spec(form, refs))
    assert received == values
    assert not marker.exists()


def test_placeholders_inside_words_and_substitutions(
    project: Path, cli: Invoke, tmp_path: Path
) -> None:
    """A placeholder glued to other text stays one literal part of that word; one inside
    $(...) is a word of the inner command."""
    marker = tmp_path / "pwned"
    python = shlex.quote(sys.executable)
    run = (
        f'{python} show.py --msg=${{params.msg}}.txt "$(printf %s ${{params.msg}})" {{outputs.out}}'
    )
    spec = _spec("string", []).replace(
        json.dumps(" ".join([shlex.quote(sys.executable), "show.py", "{outputs.out}"])),
        json.dumps(run),
    )
    spec = spec.replace("params: {}", "params: {msg: x}")
    value = f"a b; touch {marker}"
    received = _received(project, cli, spec, "-p", f"msg={value}")
    assert received == [f"--msg={value}.txt", value]
    assert not marker.exists()


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        ('echo "${params.msg}" > {outputs.out}', "'${params.msg}' in run: is inside double quotes"),
        ("echo '${params.msg}' > {outputs.out}", "'${params.msg}' in run: is inside single quotes"),
        ("echo x > '{outputs.out}'", "'{outputs.out}' in run: is inside single quotes"),
        ("cat <<EOF > {outputs.out}\n${params.msg}\nEOF", "here-document"),
        ("echo $(( ${params.msg} + 1 )) > {outputs.out}", "arithmetic"),
        ("echo \\${params.msg} > {outputs.out}", "backslash"),
    ],
    ids=["double-quotes", "single-quotes", "quoted-output", "heredoc", "arithmetic", "backslash"],
)
def test_placeholders_the_shell_would_not_read_as_one_word_are_spec_errors(
    project: Path, cli: Invoke, run: str, expected: str
) -> None:
    spec = f"""apiVersion: mlopsctl/v1
kind: Pipeline
name: quoting
params: {{msg: hi}}
steps:
  show:
    run: {json.dumps(run)}
    outputs: [out]
"""
    path = project / "pipelines" / "quoting.yaml"
    path.write_text(spec)
    for args in (("validate", str(path)), ("run", str(path), "--dry-run")):
        result = cli(*args, cwd=project)
        assert result.exit_code == 3, result.stdout + result.stderr
        text = result.stdout + result.stderr
        assert "pipelines/quoting.yaml:7:" in text, text
        assert expected in text, text
        assert "step 'show'" in text
    assert not (project / ".mlops" / "runs").exists()


def test_argv_form_runs_without_a_shell_and_enters_the_cache_key(
    project: Path, cli: Invoke, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    spec = _spec("argv", ["${params.msg}", ">", str(marker), ";", "&&"]).replace(
        "params: {}", "params: {msg: hello}"
    )
    assert _received(project, cli, spec) == ["hello", ">", str(marker), ";", "&&"]
    assert not marker.exists()
    path = project / "pipelines" / "quoting.yaml"
    again = cli("run", str(path), "--json", cwd=project)
    assert json.loads(again.stdout)["steps"]["show"]["status"] == "cached"
    changed = cli("run", str(path), "--json", "-p", "msg=bye", cwd=project)
    assert json.loads(changed.stdout)["steps"]["show"]["status"] == "executed"
