"""The command of a `run:` step. Values go into it as data, never as shell code.

A `run:` string is a shell command. Each `${params.x}` / `${env.X}` in it becomes exactly one
shell word holding the value (`shlex.quote`), and so does each `{inputs.x}` / `{outputs.y}`
(a path, filled in by `mlopsctl.exec` when the step runs). That holds only where the shell
reads plain words, so a placeholder must not be written inside quotes ('...', "...", $'...'),
a comment, ${...}, an arithmetic expression ($((...)), ((...)), $[...]) or [[ ... ]], nor
right after a backslash or a '$'. `scan` finds every placeholder and says of each one that
cannot stand where it is why not; the plan reports those as spec errors. Quoting is automatic,
so the fix for a quoted placeholder is to drop the quotes.

The rule is checked by a small scanner of shell syntax (POSIX sh, plus bash's `[[`, `((` and
`$'...'`). Where it cannot be sure how the shell reads what follows (a here-document,
backticks, quotes inside ${...}, `case` inside $(...) or (...), an unclosed quote, a comment
right after `)` that holds quotes or brackets), every placeholder after that point is refused
rather than guessed at.

A `run:` list is an argv: no shell at all, each element one argument. Its rendered form (the
step's target, which enters the cache key and the run record) is the same words shell-quoted
and joined by spaces, with `{inputs.x}` / `{outputs.y}` left bare for `mlopsctl.exec` to fill
in; `argv` turns it back into the list.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = [
    "PLACEHOLDER",
    "Placeholder",
    "argv",
    "explain",
    "fill",
    "placeholders_in_item",
    "render_argv",
    "scan",
    "substitute",
]

PLACEHOLDER = re.compile(
    r"\$\{\s*(?P<ref>params|env)\.(?P<ref_name>[A-Za-z0-9_.\-]+)\s*\}"
    r"|\{(?P<io>inputs|outputs)\.(?P<io_name>[A-Za-z0-9_\-]+)\}"
)

_BLANKS = " \t\n"
_OPERATORS = ";&|<>"
_WORD = re.compile(r"[^\s;&|<>()]+")
# Where a comment right after `)` may not be one (bash: `a=(1 2)#x`, `<(cmd)#x`), these are
# the characters that would make the two readings differ.
_UNSURE_COMMENT = re.compile(r"['\"`\\$(){}\[\]<>]|\bcase\b|\besac\b")

_COMMAND_FRAMES = ("top", "cmd", "sub", "test")  # the shell reads words here
_IN_FRAME = {
    "dq": "is inside double quotes",
    "brace": "is inside ${...}",
    "arith": "is inside an arithmetic expression",
    "index": "is inside an arithmetic expression",
    "test": "is inside [[ ... ]], where bash may evaluate it as arithmetic",
}


@dataclass(frozen=True)
class Placeholder:
    """One placeholder in a command: where it is, what it names, and why it cannot stay there
    (None when it can)."""

    start: int
    end: int
    kind: str  # params | env | inputs | outputs
    name: str
    text: str
    problem: str | None = None
    quoted: bool = False  # inside quotes, a comment or an expansion: the shell reads it as text

    @property
    def is_path(self) -> bool:
        return self.kind in ("inputs", "outputs")


def explain(placeholder: Placeholder) -> str:
    """The problem of a placeholder as one message, with what to do about it."""
    problem = placeholder.problem or ""
    message = f"'{placeholder.text}' in run: {problem}"
    if problem.endswith("quotes") or problem.endswith("$'...'"):
        return f"{message}; values are shell-quoted automatically, so drop the quotes around it"
    return (
        f"{message}; write it where the shell reads a plain word (values are shell-quoted "
        "automatically), or give run: as a list [program, arg, ...] to run without a shell"
    )


class _Frame:
    __slots__ = ("depth", "kind")

    def __init__(self, kind: str) -> None:
        self.kind = kind  # top | cmd ($(...)) | sub ((...)) | test | dq | brace | arith | index
        self.depth = 0  # open brackets inside an arithmetic expression


def placeholders_in_item(text: str) -> list[Placeholder]:
    """Every placeholder in a text no shell reads (an element of a `run:` list)."""
    return [
        Placeholder(
            m.start(),
            m.end(),
            m.group("ref") or m.group("io"),
            m.group("ref_name") or m.group("io_name"),
            m.group(),
        )
        for m in PLACEHOLDER.finditer(text)
    ]


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.found: list[Placeholder] = []
        self.stack = [_Frame("top")]
        self.lost: str | None = None  # set once the shell's reading can no longer be followed
        self.word_start = True

    # -- results --------------------------------------------------------------------------
    def add(self, match: re.Match[str], problem: str | None, quoted: bool) -> None:
        kind = match.group("ref") or match.group("io")
        name = match.group("ref_name") or match.group("io_name")
        if problem is None and self.lost is not None:
            problem = self.lost
        self.found.append(
            Placeholder(match.start(), match.end(), kind, name, match.group(), problem, quoted)
        )

    def literal(self, start: int, end: int, problem: str) -> None:
        """Text the shell takes as it is (or skips): every placeholder in it is refused."""
        for match in PLACEHOLDER.finditer(self.text, start, end):
            self.add(match, problem, True)

    def give_up(self, why: str) -> None:
        if self.lost is None:
            self.lost = f"comes after {why}, where mlopsctl cannot tell how the shell reads it"

    # -- the walk -------------------------------------------------------------------------
    def scan(self) -> list[Placeholder]:
        i = 0
        while i < len(self.text):
            frame = self.stack[-1]
            match = PLACEHOLDER.match(self.text, i)
            if match:
                self.placeholder(match, frame)
                i = match.end()
            elif frame.kind in _COMMAND_FRAMES:
                i = self.command(i, frame)
            elif frame.kind == "dq":
                i = self.double_quoted(i)
            elif frame.kind == "brace":
                i = self.brace(i)
            else:
                i = self.arithmetic(i, frame)
        return self.found

    def placeholder(self, match: re.Match[str], frame: _Frame) -> None:
        problem = _IN_FRAME.get(frame.kind)
        if problem is None and self.text[match.start() - 1 : match.start()] == "$":
            problem = "comes right after a '$'"
        self.add(match, problem, frame.kind not in _COMMAND_FRAMES)
        self.word_start = False

    def after_backslash(self, i: int, problem: str, quoted: bool) -> int:
        """A backslash quotes the next character; a placeholder there would lose its quotes."""
        match = PLACEHOLDER.match(self.text, i + 1)
        if match is None:
            return i + 2
        self.add(match, problem, quoted)
        return match.end()

    def expansion(self, i: int) -> int:
        """At `$(`, `$((`, `$[` or `${`: enter it."""
        opener = self.text[i + 1]
        glued = PLACEHOLDER.match(self.text, i + 1) if opener == "{" else None
        if glued:  # `${inputs.x}`: the placeholder follows a '$'
            self.placeholder(glued, self.stack[-1])
            return glued.end()
        if opener == "(" and self.text.startswith("((", i + 1):
            self.stack.append(_Frame("arith"))
            return i + 3
        kind = {"(": "cmd", "[": "index", "{": "brace"}[opener]
        self.stack.append(_Frame(kind))
        self.word_start = kind == "cmd"
        return i + 2

    def pop(self) -> _Frame:
        frame = self.stack.pop()
        self.word_start = False
        return frame

    def command(self, i: int, frame: _Frame) -> int:
        text = self.text
        c, nxt = text[i], text[i + 1 : i + 2]
        if c in _BLANKS:
            self.word_start = True
            return i + 1
        if c == "\\":
            self.word_start = False
            return self.after_backslash(i, "comes right after a backslash", False)
        if c == "#" and self.word_start:
            return self.comment(i)
        if c == "'":
            end = text.find("'", i + 1)
            if end < 0:
                self.literal(i + 1, len(text), "is inside single quotes")
                self.give_up("an unclosed single quote")
                return len(text)
            self.literal(i + 1, end, "is inside single quotes")
            self.word_start = False
            return end + 1
        if c == "$" and nxt == "'":
            end = i + 2
            while end < len(text) and text[end] != "'":
                end += 2 if text[end] == "\\" else 1
            self.literal(i + 2, min(end, len(text)), "is inside $'...'")
            if end >= len(text):
                self.give_up("an unclosed $'...'")
            self.word_start = False
            return end + 1
        if c == '"' or (c == "$" and nxt == '"'):
            self.stack.append(_Frame("dq"))
            self.word_start = False
            return i + (1 if c == '"' else 2)
        if c == "`":
            self.give_up("a `...` command substitution (write $(...) instead)")
            self.word_start = False
            return i + 1
        if c == "$" and nxt and nxt in "([{":
            return self.expansion(i)
        if c == "(":
            if nxt == "(":
                self.stack.append(_Frame("arith"))
                return i + 2
            self.stack.append(_Frame("sub"))
            self.word_start = True
            return i + 1
        if c == ")":
            if frame.kind in ("cmd", "sub"):
                self.pop()
                # `$(...)` ends inside a word; `(...)` is an operator, so a new word follows
                self.word_start = frame.kind == "sub"
            else:
                self.word_start = True  # a `case` pattern, or a syntax error for the shell
            return i + 1
        if text.startswith("<<", i):
            if text.startswith("<<<", i):  # a here-string: the next word is a plain word
                self.word_start = True
                return i + 3
            self.give_up("a here-document (<<)")
            self.word_start = True
            return i + 2
        if self.word_start:
            word = _WORD.match(text, i)
            token = word.group() if word else ""
            if token == "[[":
                self.stack.append(_Frame("test"))
                return i + 2
            if token == "]]" and frame.kind == "test":
                self.pop()
                return i + 2
            if token == "case" and any(f.kind in ("cmd", "sub") for f in self.stack):
                self.give_up("'case' inside $(...) or (...)")
        self.word_start = c in _OPERATORS
        return i + 1

    def comment(self, i: int) -> int:
        text = self.text
        end = text.find("\n", i)
        end = len(text) if end < 0 else end
        self.literal(i, end, "is inside a comment")
        if text[i - 1 : i] == ")" and _UNSURE_COMMENT.search(text, i + 1, end):
            self.give_up("a '#' right after ')' followed by quotes or brackets")
        return end

    def double_quoted(self, i: int) -> int:
        c, nxt = self.text[i], self.text[i + 1 : i + 2]
        if c == "\\":
            return self.after_backslash(i, _IN_FRAME["dq"], True)
        if c == '"':
            self.pop()
            return i + 1
        if c == "`":
            self.give_up("a `...` command substitution (write $(...) instead)")
        elif c == "$" and nxt and nxt in "([{":
            return self.expansion(i)
        return i + 1

    def brace(self, i: int) -> int:
        c, nxt = self.text[i], self.text[i + 1 : i + 2]
        if c == "}":
            self.pop()
            return i + 1
        if c == "\\":
            return self.after_backslash(i, _IN_FRAME["brace"], True)
        if c in "'`":
            self.give_up("quotes or backticks inside ${...}")
        elif c == '"':
            self.stack.append(_Frame("dq"))
        elif c == "$" and nxt and nxt in "([{":
            return self.expansion(i)
        return i + 1

    def arithmetic(self, i: int, frame: _Frame) -> int:
        c, nxt = self.text[i], self.text[i + 1 : i + 2]
        if c in "'\"`\\":
            self.give_up("quotes or a backslash inside an arithmetic expression")
            return i + 1
        if c == "$" and nxt and nxt in "([{":
            return self.expansion(i)
        opener, closer = ("(", ")") if frame.kind == "arith" else ("[", "]")
        if c == opener:
            frame.depth += 1
        elif c == closer:
            if frame.depth:
                frame.depth -= 1
                return i + 1
            self.pop()
            if frame.kind == "arith":
                if nxt == ")":
                    return i + 2
                self.give_up("an arithmetic expression that does not end with '))'")
        return i + 1


def scan(command: str) -> list[Placeholder]:
    """Every placeholder in a `run:` string, in order, each with its problem (None if none)."""
    return _Scanner(command).scan()


def substitute(
    text: str, placeholders: list[Placeholder], value: Callable[[Placeholder], str | None]
) -> str:
    """`text` with each placeholder that `value` gives a value for replaced by that value as
    one shell word; the others stay as written."""
    parts: list[str] = []
    last = 0
    for placeholder in placeholders:
        found = value(placeholder)
        if found is None:
            continue
        parts += [text[last : placeholder.start], shlex.quote(found)]
        last = placeholder.end
    parts.append(text[last:])
    return "".join(parts)


def render_argv(items: list[str], value: Callable[[int, Placeholder], str | None]) -> str:
    """The target of a `run:` list: each element one shell-quoted word (its literal text and
    the values of its ${params.x} / ${env.X} quoted, its {inputs.x} / {outputs.y} left bare),
    joined by spaces."""
    words: list[str] = []
    for index, item in enumerate(items):
        parts: list[str] = []
        last = 0
        for placeholder in placeholders_in_item(item):
            if placeholder.start > last:
                parts.append(shlex.quote(item[last : placeholder.start]))
            found = None if placeholder.is_path else value(index, placeholder)
            if placeholder.is_path:
                parts.append(placeholder.text)  # bare, for exec to fill in
            else:
                parts.append(shlex.quote(placeholder.text if found is None else found))
            last = placeholder.end
        if last < len(item) or not parts:
            parts.append(shlex.quote(item[last:]))
        words.append("".join(parts))
    return " ".join(words)


def fill(command: str, paths: Mapping[str, str]) -> str:
    """At run time: each bare {inputs.x} / {outputs.y} of a rendered command replaced by its
    path (`paths` maps 'inputs.x' to it) as one shell word. A placeholder inside quotes is
    text of a value, never filled in."""
    return substitute(
        command,
        scan(command),
        lambda p: paths.get(f"{p.kind}.{p.name}") if p.is_path and not p.quoted else None,
    )


def argv(command: str, paths: Mapping[str, str]) -> list[str]:
    """At run time: the argument list of a rendered `run:` list, paths filled in."""
    return shlex.split(fill(command, paths))
