"""The `run:` command: where a placeholder may stand, and that a value put there reaches the
program as one literal argument in the real shells (sh, and bash when installed), never as
code. A seeded fuzz of shell fragments checks the scanner's one promise: wherever it accepts a
placeholder, no value can run anything."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from mlopsctl.pipeline.command import argv, explain, fill, render_argv, scan, substitute

# sh (dash on Debian, bash elsewhere) runs `run:` commands; bash and dash are checked as well.
SHELLS = list(
    {os.path.realpath(p): n for n in ("sh", "bash", "dash") if (p := shutil.which(n))}.values()
)


def _nasty(marker: Path) -> list[str]:
    m = str(marker)
    return [
        f"$(touch {m})",
        f"`touch {m}`",
        f"x; touch {m}",
        f"x && touch {m} || touch {m}",
        f"x | touch {m}",
        f"x\ntouch {m}\n",
        f"'; touch {m}; echo '",
        f'"; touch {m}; echo "',
        f"a[$(touch {m})]",
        f"\nEOF\ntouch {m}\nEOF\n",
        f")) ; touch {m} ; echo $((",
        f"}} ; touch {m} ; echo ${{",
        f"\\'$(touch {m})",
        "* ? [a]",
        "-n",
        "",
        "it's",
        "a  b\tc",
        "{outputs.out}",
        "$HOME ${HOME}",
    ]


def _render(template: str, value: str) -> str:
    placeholders = scan(template)
    assert [p.problem for p in placeholders] == [None] * len(placeholders), template
    return substitute(template, placeholders, lambda p: None if p.is_path else value)


def _run(shell: str, command: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [shell, "-c", command],
        cwd=cwd,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=10,
        check=False,
    )


# Each prints the value once, NUL-terminated, with the placeholder somewhere the shell reads a
# plain word: (template, what the program gets around the value).
GOOD = [
    ("printf '%s\\0' ${params.v}", ""),
    ("printf '%s\\0' x${params.v}y", "x{}y"),
    ("printf '%s\\0' --flag=${params.v}", "--flag={}"),
    ("( printf '%s\\0' ${params.v} )", ""),
    ("if true; then printf '%s\\0' ${params.v}; fi", ""),
    ("printf '%s\\0' ${params.v} # a comment, after", ""),
    ("X=${params.v}; printf '%s\\0' \"$X\"", ""),
    ("case a in a) printf '%s\\0' ${params.v};; esac", ""),
    ("printf '%s\\0' \"$(printf '%s' x)\"${params.v}", "x{}"),
    ("printf '%s\\0' \"a)\"${params.v}", "a){}"),
    ("printf '%s\\0' \"$(printf '%s' ${params.v})\"", "strip"),
    ("printf '%s\\0' \"${HOME:+}\"${params.v}", ""),
    ("echo 'it''s' >/dev/null; printf '%s\\0' ${params.v}", ""),
    ("printf '%s\\0' \\\"${params.v}", '"{}'),
    ("cat <<< ${params.v} >/dev/null; printf '%s\\0' ${params.v}", ""),
]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(("template", "around"), GOOD, ids=[t for t, _ in GOOD])
def test_values_reach_the_program_byte_for_byte(
    shell: str, template: str, around: str, tmp_path: Path
) -> None:
    if "<<<" in template and shell != "bash":
        pytest.skip("here-strings are bash's")
    marker = tmp_path / "pwned"
    for value in _nasty(marker):
        command = _render(template, value)
        proc = _run(shell, command, tmp_path)
        assert proc.returncode == 0, (command, proc.stderr)
        words = proc.stdout.split(b"\0")[:-1]
        if around == "strip":  # command substitution drops trailing newlines
            expected = value.rstrip("\n")
        else:
            expected = around.replace("{}", value, 1) if around else value
        assert words[-1:] == [expected.encode()], (command, words)
        assert not marker.exists(), command


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ('echo "${params.v}"', "is inside double quotes"),
        ("echo \"a $(echo ')') ${params.v}\"", "is inside double quotes"),
        ("echo '${params.v}'", "is inside single quotes"),
        ("echo '{inputs.x}'", "is inside single quotes"),
        ("echo $'${params.v}'", "is inside $'...'"),
        ('echo $"${params.v}"', "is inside double quotes"),
        ("echo x # ${params.v}", "is inside a comment"),
        ("echo x\n# ${params.v}\necho y", "is inside a comment"),
        ("cat <<EOF\n${params.v}\nEOF", "here-document"),
        ("cat <<'EOF'\nx\nEOF\necho ${params.v}", "here-document"),
        ("echo $(( ${params.v} + 1 ))", "is inside an arithmetic expression"),
        ("(( ${params.v} ))", "is inside an arithmetic expression"),
        ("echo $[ ${params.v} ]", "is inside an arithmetic expression"),
        ("[[ ${params.v} -eq 1 ]]", "is inside [[ ... ]]"),
        ("echo ${X:-${params.v}}", "is inside ${...}"),
        ("echo `echo ${params.v}`", "`...` command substitution"),
        ("echo `date` ${params.v}", "`...` command substitution"),
        ("echo \\${params.v}", "comes right after a backslash"),
        ("echo $${params.v}", "comes right after a '$'"),
        ("echo ${inputs.x}", "comes right after a '$'"),
        ("echo $(case a in a) echo ${params.v};; esac)", "'case' inside $(...)"),
        ("echo 'unclosed ${params.v}", "is inside single quotes"),
        ('echo "unclosed ${params.v}', "is inside double quotes"),
        ("a=(1 2)#'\necho ${params.v}", "'#' right after ')'"),
        ("echo ${X:-'a'} ${params.v}", "quotes or backticks inside ${...}"),
    ],
)
def test_placeholders_the_shell_would_not_read_as_one_word(template: str, problem: str) -> None:
    found = scan(template)
    assert found, template
    assert problem in (found[-1].problem or ""), found
    message = explain(found[-1])
    assert message.startswith(f"'{found[-1].text}' in run: {found[-1].problem}; ")
    if problem.endswith(("quotes", "$'...'")):
        assert "drop the quotes" in message
    else:
        assert "run: as a list" in message


def test_placeholders_outside_quotes_are_accepted() -> None:
    found = scan("python src/f.py {inputs.train} ${params.msg} > {outputs.out} 2>&1")
    assert [(p.kind, p.name, p.problem) for p in found] == [
        ("inputs", "train", None),
        ("params", "msg", None),
        ("outputs", "out", None),
    ]
    assert scan("echo '{\"lines\": 2}' > $MLOPS_METRICS_FILE") == []


def test_fill_leaves_placeholders_inside_values_alone() -> None:
    template = "cat {inputs.x} ${params.v} > {outputs.out}"
    command = _render(template, "{outputs.out} '{inputs.x}'")
    filled = fill(command, {"inputs.x": "/in/x", "outputs.out": "/out dir/out"})
    assert filled == "cat /in/x '{outputs.out} '\"'\"'{inputs.x}'\"'\"'' > '/out dir/out'"


def test_argv_round_trip_is_one_argument_per_element(tmp_path: Path) -> None:
    items = ["python", "-c", "x = 'a b'", "", "--in={inputs.x}", "${params.v}", "{outputs.out}"]
    values = {"v": "$(touch pwned) {inputs.x} 'q'"}
    rendered = render_argv(items, lambda _, p: values.get(p.name))
    paths = {"inputs.x": "/tmp/in put", "outputs.out": "/tmp/out"}
    assert argv(rendered, paths) == [
        "python",
        "-c",
        "x = 'a b'",
        "",
        "--in=/tmp/in put",
        "$(touch pwned) {inputs.x} 'q'",
        "/tmp/out",
    ]
    # the rendered target reads as the shell command it stands for
    assert rendered.startswith("python -c 'x = '\"'\"'a b'\"'\"'' '' --in={inputs.x} ")


# -- the fuzz ------------------------------------------------------------------------------
FRAGMENTS = [
    "echo", "x", " ", " ", " ", "\n", ";", "&&", "|", "'", '"', "\\", "`", "$(", "(", ")",
    "${", "}", "$((", "))", "((", "#", "<<", "EOF", "<<<", "case", "in", "esac", ";;", "[[",
    "]]", "$'", "$", "=", "{", "a)", "-eq", "1",
]  # fmt: skip
VALUE_ATTACKS = [
    "'\"$(touch {m})\"'`touch {m}`",
    "\nEOF\ntouch {m}\n",
    "a[$(touch {m})]",
    "\\'$(touch {m})",
    ")) ; touch {m} ; ((",
]


@pytest.mark.parametrize("shell", SHELLS)
def test_fuzz_an_accepted_placeholder_never_runs_its_value(shell: str, tmp_path: Path) -> None:
    rng = random.Random(1303)
    marker = tmp_path / "pwned"
    accepted = 0
    for _ in range(600):
        pieces = [rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 10))]
        pieces.insert(rng.randint(0, len(pieces)), "${params.v}")
        pieces += [rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 4))]
        template = "".join(pieces)
        placeholders = scan(template)
        if any(p.problem for p in placeholders):
            continue
        accepted += 1
        for attack in VALUE_ATTACKS:
            value = attack.replace("{m}", str(marker))
            command = substitute(template, placeholders, lambda p, v=value: v)
            _run(shell, command, tmp_path)
            assert not marker.exists(), (template, command)
    assert accepted > 50  # the fuzz did exercise accepted placements
