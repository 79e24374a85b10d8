"""The YAML loader: positions, duplicate keys, refused tags, alias bombs and YAML 1.1 surprises."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mlopsctl.errors import ExitCode, SpecError
from mlopsctl.spec import LoadedYaml, load_yaml
from mlopsctl.spec.loader import MAX_ALIAS_VALUES, read_yaml


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> LoadedYaml:
    return load_yaml(write(tmp_path, text), display="spec.yaml")


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load(tmp_path, text)
    assert caught.value.exit_code == ExitCode.INVALID_SPEC
    return [d.render() for d in caught.value.diagnostics]


def test_plain_data_and_display(tmp_path: Path) -> None:
    loaded = load(tmp_path, "a: 1\nb: [x, {c: null}]\nd: 2.5\ne: true\n")
    assert loaded.data == {"a": 1, "b": ["x", {"c": None}], "d": 2.5, "e": True}
    assert loaded.display == "spec.yaml"
    assert loaded.path == tmp_path / "spec.yaml"
    assert load_yaml(tmp_path / "spec.yaml").display == str(tmp_path / "spec.yaml")


def test_positions_of_keys_values_and_items(tmp_path: Path) -> None:
    text = "name: x\nsteps:\n  train:\n    component: train\n    outputs: [a, b]\nflow: {k: v}\n"
    loaded = load(tmp_path, text)
    assert loaded.position(()) == (1, 1)
    assert loaded.position(("name",)) == (1, 1)
    assert loaded.value_position(("name",)) == (1, 7)
    assert loaded.position(("steps", "train")) == (3, 3)
    assert loaded.position(("steps", "train", "component")) == (4, 5)
    assert loaded.value_position(("steps", "train", "component")) == (4, 16)
    assert loaded.position(("steps", "train", "outputs", 1)) == (5, 18)
    assert loaded.position(("flow", "k")) == (6, 8)
    assert loaded.value_position(("flow", "k")) == (6, 11)


def test_position_of_missing_path_is_nearest_ancestor(tmp_path: Path) -> None:
    loaded = load(tmp_path, "# header\nsteps:\n  train: {component: t}\n")
    assert loaded.position(("steps", "train", "resources", "gpus")) == (3, 3)
    assert loaded.position(("nothing", "here")) == (2, 1)
    assert loaded.position(["steps"]) == (2, 1)


def test_duplicate_key_reports_second_occurrence(tmp_path: Path) -> None:
    found = problems(tmp_path, "name: a\nsteps: {}\nname: b\n")
    assert found == [
        "spec.yaml:3:1: duplicate key 'name' (first defined on line 1); "
        "YAML keeps only one of them, so delete or rename one"
    ]


def test_every_duplicate_key_is_reported(tmp_path: Path) -> None:
    found = problems(tmp_path, "a: 1\na: 2\nb:\n  c: 1\n  d: 2\n  c: 3\n")
    assert [line.split(": duplicate")[0] for line in found] == ["spec.yaml:2:1", "spec.yaml:6:3"]


def test_python_tags_are_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, "a: !!python/object/apply:os.system [echo hi]\n")
    assert len(found) == 1
    assert found[0].startswith(
        "spec.yaml:1:4: the tag '!!python/object/apply:os.system' is refused"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: !include other.yaml\n", "the custom tag '!include' is not supported"),
        ("a: !!binary aGVsbG8=\n", "the tag '!!binary' is not supported"),
        ("a: !!set {x, y}\n", "the tag '!!set' is not supported"),
        ("a: !!python/name:os.system\n", "the tag '!!python/name:os.system' is refused"),
        ("!!python/object:x {}\n", "the tag '!!python/object:x' is refused"),
    ],
)
def test_non_standard_tags_are_refused(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert any(expected in line for line in found), found


def test_standard_json_tags_are_fine(tmp_path: Path) -> None:
    loaded = load(tmp_path, "a: !!str 1.10\nb: !!int '7'\nc: !!bool yes\n")
    assert loaded.data == {"a": "1.10", "b": 7, "c": True}
    # An explicit tag says what the writer meant, so nothing is surprising.
    assert loaded.surprises == {}


def test_anchors_aliases_and_merge_keys(tmp_path: Path) -> None:
    text = (
        "defaults: &d {cpus: 2, memory: 4g}\n"
        "steps:\n"
        "  a: {<<: *d, cpus: 8}\n"
        "  b:\n"
        "    <<: [*d, {gpus: 1, cpus: 1}]\n"
        "  c: *d\n"
    )
    loaded = load(tmp_path, text)
    steps = loaded.data["steps"]
    assert steps["a"] == {"cpus": 8, "memory": "4g"}
    assert steps["b"] == {"cpus": 2, "memory": "4g", "gpus": 1}
    assert steps["c"] == {"cpus": 2, "memory": "4g"}
    # The explicit key is where it was written; a merged one is found in its anchor.
    assert loaded.position(("steps", "a", "cpus")) == (3, 15)
    assert loaded.position(("steps", "a", "memory")) == (1, 24)


def test_alias_bomb_fails_fast(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    path = write(tmp_path, "\n".join(lines) + "\n")
    started = time.perf_counter()
    loaded, found = read_yaml(path, "spec.yaml")
    assert time.perf_counter() - started < 1.0
    assert loaded is None
    assert len(found) == 1
    assert f"anchors and aliases expand to more than {MAX_ALIAS_VALUES} values" in found[0].message


def test_modest_alias_use_is_fine(tmp_path: Path) -> None:
    text = "d: &d {a: 1, b: 2}\n" + "".join(f"s{i}: {{<<: *d, c: {i}}}\n" for i in range(200))
    assert load(tmp_path, text).data["s199"] == {"a": 1, "b": 2, "c": 199}


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, "a: &a [1, *a]\n")
    assert found == [
        "spec.yaml:1:4: this value contains an alias to itself (a loop); specs cannot be recursive"
    ]


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, "a: " + "[" * 150 + "]" * 150 + "\n")
    assert "nested more than" in found[0]
    # Deeper still, PyYAML's composer runs out of stack before the builder sees anything.
    found = problems(tmp_path, "a: " + "[" * 3000 + "]" * 3000 + "\n")
    assert found == ["spec.yaml:1:1: the YAML is nested too deeply to be a spec"]


@pytest.mark.parametrize(
    ("scalar", "value", "message"),
    [
        ("no", False, "'no' was read as the boolean false; quote it (\"no\") to mean the text"),
        ("on", True, "'on' was read as the boolean true; quote it (\"on\") to mean the text"),
        ("Off", False, "'Off' was read as the boolean false"),
        ("yes", True, "'yes' was read as the boolean true"),
        ("1.10", 1.1, '1.10 was read as the number 1.1; quote it ("1.10") to keep it as text'),
        (
            "0755",
            493,
            '0755 was read as the octal number 493; quote it ("0755") to keep it as text',
        ),
        ("0x1F", 31, "0x1F was read as the hexadecimal number 31"),
        (
            "1:30",
            90,
            '1:30 was read as the number 90 (base 60, as in a clock time); quote it ("1:30")',
        ),
        ("1_000", 1000, "1_000 was read as the number 1000"),
    ],
)
def test_yaml11_surprises_are_recorded(
    tmp_path: Path, scalar: str, value: object, message: str
) -> None:
    loaded = load(tmp_path, f"a: {scalar}\n")
    assert loaded.data == {"a": value}
    assert message in loaded.surprises[("a",)].message()


@pytest.mark.parametrize("text", ["a: true", "a: false", "a: 1.5", "a: 42", "a: '1.10'", "a: ~"])
def test_unsurprising_scalars(tmp_path: Path, text: str) -> None:
    assert load(tmp_path, text + "\n").surprises == {}


def test_single_letters_and_dates_stay_text(tmp_path: Path) -> None:
    loaded = load(tmp_path, "a: y\nb: n\nc: 2024-01-31\nd: 2024-01-31 12:00:00\n")
    assert loaded.data == {"a": "y", "b": "n", "c": "2024-01-31", "d": "2024-01-31 12:00:00"}


def test_keys_yaml_would_not_keep_as_text(tmp_path: Path) -> None:
    loaded = load(tmp_path, "on: push\n'off': x\n8080: port\n")
    assert loaded.data == {"on": "push", "off": "x", "8080": "port"}
    assert set(loaded.key_surprises) == {("on",), ("8080",)}
    assert loaded.key_surprises[("on",)].value is True
    assert loaded.position(("on",)) == (1, 1)


def test_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    found = problems(tmp_path, "a: 1\nsteps:\n  x: y: z\n")
    assert found == ["spec.yaml:3:7: YAML syntax error: mapping values are not allowed here"]


def test_syntax_error_names_where_the_construct_started(tmp_path: Path) -> None:
    found = problems(tmp_path, "a: [1, 2\nb: 3\n")
    assert found[0].startswith("spec.yaml:2:2: YAML syntax error: expected ',' or ']'")
    assert "started on line 1" in found[0]


def test_control_character_is_placed(tmp_path: Path) -> None:
    found = problems(tmp_path, "a: 1\nb: x\x07y\n")
    assert found[0].startswith("spec.yaml:2:5: YAML syntax error: ")


def test_several_documents_are_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, "a: 1\n---\nb: 2\n")
    assert found == ["spec.yaml:2:1: a spec file holds one YAML document; remove this second '---'"]


def test_empty_file_loads_as_none(tmp_path: Path) -> None:
    assert load(tmp_path, "# nothing here\n").data is None


def test_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "latin1.yaml").write_bytes(b"a: caf\xe9\n")
    with pytest.raises(SpecError, match="not UTF-8"):
        load_yaml(tmp_path / "latin1.yaml")
    with pytest.raises(SpecError, match="cannot read the file"):
        load_yaml(tmp_path / "missing.yaml")


# -- size cap -------------------------------------------------------------------------------


def _big_spec(path: Path, size: int) -> Path:
    """A Pipeline spec padded to `size` bytes with a long list of parameter values."""
    head = "apiVersion: mlopsctl/v1\nkind: Pipeline\nname: big\nparams:\n  values:\n"
    item = "    - 0123456789abcdef\n"
    body = item * ((size - len(head)) // len(item) + 1)
    path.write_text((head + body)[:size])
    return path


def test_a_spec_over_the_size_cap_fails_fast_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from mlopsctl.cli.main import app
    from mlopsctl.spec.loader import MAX_SPEC_BYTES, SPEC_BYTES_ENV

    monkeypatch.delenv(SPEC_BYTES_ENV, raising=False)
    assert MAX_SPEC_BYTES == 1 << 20
    path = _big_spec(tmp_path / "big.yaml", 2 << 20)
    started = time.perf_counter()
    with pytest.raises(SpecError) as caught:
        load_yaml(path, display="big.yaml")
    assert time.perf_counter() - started < 0.5
    assert caught.value.exit_code == ExitCode.INVALID_SPEC
    [only] = [d.render() for d in caught.value.diagnostics]
    assert only.startswith("big.yaml:1:1: ")
    assert "2097152 bytes" in only and "1048576" in only and SPEC_BYTES_ENV in only
    assert "\n" not in only

    monkeypatch.chdir(tmp_path)
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["validate", "big.yaml"], catch_exceptions=False)
    assert time.perf_counter() - started < 2
    assert result.exit_code == ExitCode.INVALID_SPEC
    assert result.stdout.strip().splitlines() == [only]


def test_the_size_cap_is_set_by_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlopsctl.errors import UsageError
    from mlopsctl.spec.loader import SPEC_BYTES_ENV

    path = _big_spec(tmp_path / "spec.yaml", 3000)
    monkeypatch.setenv(SPEC_BYTES_ENV, "2999")
    with pytest.raises(SpecError, match=r"3000 bytes.*over the limit of 2999"):
        load_yaml(path)
    monkeypatch.setenv(SPEC_BYTES_ENV, "3000")
    assert load_yaml(path).data["name"] == "big"
    monkeypatch.setenv(SPEC_BYTES_ENV, "lots")
    with pytest.raises(UsageError, match=SPEC_BYTES_ENV):
        load_yaml(path)


def test_windows_line_ends_read_as_before(tmp_path: Path) -> None:
    (tmp_path / "crlf.yaml").write_bytes(b"a: 1\r\nb:\r\n  c: x\r\n")
    loaded = load_yaml(tmp_path / "crlf.yaml")
    assert loaded.data == {"a": 1, "b": {"c": "x"}}
    assert loaded.value_position(("b", "c")) == (3, 6)
