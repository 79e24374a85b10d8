"""Read one YAML file into plain JSON-like data, remembering where every value came from.

PyYAML's constructors lose positions, build arbitrary objects for some tags and expand aliases
without limit, so the loader composes the node graph (which keeps marks and shares aliased nodes
instead of copying them) and builds the data itself:

- every value's and every mapping key's position is indexed by its JSON path;
- only JSON-shaped standard tags are accepted; `!!python/...` and custom tags are refused;
- duplicate keys are errors (PyYAML would silently keep the last one);
- alias expansion is counted, so a "billion laughs" file fails fast instead of eating memory;
- plain scalars that YAML 1.1 turns into something other than their text (`no` -> false,
  `1.10` -> 1.1, `0755` -> 493, `1:30` -> 90) are remembered, so validation can explain them;
- timestamps stay text: specs are JSON data, and a date is a string there.

The pure-Python parser is used on purpose: libyaml words its errors differently and places some
of them elsewhere, and `mlopsctl validate` should say the same thing on every machine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mlopsctl.errors import Diagnostic, SpecError, UsageError

JsonPath = tuple[Any, ...]
Position = tuple[int, int]

# Aliases let a few lines stand for an exponential number of values ("billion laughs"). Real
# specs repeat a handful of anchored blocks (`<<: *defaults` in each step), so a small budget
# for values reached a second time stops a bomb within milliseconds and never a real spec.
MAX_ALIAS_VALUES = 10_000
MAX_DEPTH = 100

# The pure-Python parser needs about a second and 40 MB of memory per MiB of YAML, so a spec is
# capped by size before it is read: a real spec is a few KiB, and a huge file (a data file
# given by mistake, or a crafted one) fails at once instead of holding a CI job for minutes.
MAX_SPEC_BYTES = 1 << 20
SPEC_BYTES_ENV = "MLOPSCTL_MAX_SPEC_BYTES"

_STD = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_STD + t for t in ("str", "int", "float", "bool", "null"))
_MAP, _SEQ, _MERGE = _STD + "map", _STD + "seq", _STD + "merge"
# Both become text: a date is a string in JSON, and `=` is the YAML 1.1 "value" key nobody means.
_AS_TEXT = frozenset({_STR, _STD + "timestamp", _STD + "value"})
_SCALARS = frozenset({_INT, _FLOAT, _BOOL, _NULL})
_PLAIN_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


class Surprise:
    """A plain scalar that YAML 1.1 read as something other than its text."""

    __slots__ = ("text", "value")

    def __init__(self, text: str, value: Any) -> None:
        self.text = text
        self.value = value

    def message(self) -> str:
        """Say what happened and how to keep the text."""
        text, value = self.text, self.value
        if isinstance(value, bool):
            return (
                f"'{text}' was read as the boolean {str(value).lower()}; "
                f'quote it ("{text}") to mean the text'
            )
        if value is None:
            return f"'{text}' was read as null (no value); quote it (\"{text}\") to mean the text"
        if isinstance(value, int) and ":" in text:
            how = f"the number {value} (base 60, as in a clock time)"
        elif isinstance(value, int) and value and text.lstrip("+-").startswith("0"):
            kind = {"x": "hexadecimal", "b": "binary"}.get(text.lstrip("+-")[1:2].lower(), "octal")
            how = f"the {kind} number {value}"
        else:
            how = f"the number {_number_text(value)}"
        return f'{text} was read as {how}; quote it ("{text}") to keep it as text'

    def __repr__(self) -> str:
        return f"Surprise({self.text!r} -> {self.value!r})"


class LoadedYaml:
    """One parsed file: plain data plus where each value and key was written.

    `surprises` maps the paths of plain scalars that YAML 1.1 read as a non-string to what was
    written; `key_surprises` does the same for mapping keys (kept in `data` as the written text);
    `broken` holds paths the loader already reported (duplicate keys, refused tags); `text` is
    the YAML as parsed, for placing a problem inside a long value.
    """

    __slots__ = (
        "broken",
        "data",
        "display",
        "key_surprises",
        "keys",
        "path",
        "surprises",
        "text",
        "values",
    )

    def __init__(self, data: Any, path: Path, display: str) -> None:
        self.data = data
        self.path = path
        self.display = display
        self.values: dict[JsonPath, Position] = {}
        self.keys: dict[JsonPath, Position] = {}
        self.surprises: dict[JsonPath, Surprise] = {}
        self.key_surprises: dict[JsonPath, Surprise] = {}
        self.broken: set[JsonPath] = set()
        self.text = ""

    def position(self, json_path: JsonPath | list[Any]) -> Position:
        """1-based (line, column) of a node; a mapping entry points at its key.

        A path that does not exist (a missing key) falls back to its nearest existing ancestor,
        which is where a human would look to add it.
        """
        path = tuple(json_path)
        while path:
            found = self.keys.get(path) or self.values.get(path)
            if found:
                return found
            path = path[:-1]
        return self.values.get((), (1, 1))

    def value_position(self, json_path: JsonPath | list[Any]) -> Position:
        """1-based (line, column) of the value itself (for a mapping entry, after the colon)."""
        path = tuple(json_path)
        return self.values.get(path) or self.position(path)

    def __repr__(self) -> str:
        return f"LoadedYaml({self.display!r})"


def load_yaml(path: Path, display: str | None = None) -> LoadedYaml:
    """Load one YAML document; raise SpecError listing every problem the loader found."""
    loaded, problems = read_yaml(path, display)
    if problems or loaded is None:
        raise SpecError(problems)
    return loaded


def read_yaml(path: Path, display: str | None = None) -> tuple[LoadedYaml | None, list[Diagnostic]]:
    """Like load_yaml, but return the problems instead of raising.

    Fatal problems (unreadable file, syntax error, alias bomb) return no data. Problems that
    spoil one value (duplicate key, refused tag) still return the rest of the document, so that
    validation can report the other mistakes in the same run.
    """
    shown = display if display is not None else str(path)
    limit = max_spec_bytes()
    try:
        # Sized first, then read no further than one byte past the cap: a file that grows
        # between the two, or a FIFO, cannot make the loader read more than that either.
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > limit:
                return None, [too_big(shown, size, limit)]
            raw = handle.read(limit + 1)
    except OSError as exc:
        return None, [Diagnostic(shown, 1, 1, f"cannot read the file: {exc.strerror or exc}")]
    return parse_yaml_bytes(raw, path, shown)


def max_spec_bytes() -> int:
    """The size cap for one spec: MLOPSCTL_MAX_SPEC_BYTES when set, else MAX_SPEC_BYTES."""
    value = os.environ.get(SPEC_BYTES_ENV, "").strip()
    if not value:
        return MAX_SPEC_BYTES
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise UsageError(
            f"{SPEC_BYTES_ENV}={value!r} is not a size in bytes",
            f"set it to a positive whole number, like {4 * MAX_SPEC_BYTES}, or unset it",
        )
    return limit


def too_big(display: str, size: int, limit: int) -> Diagnostic:
    """The one-line problem of a spec over the size cap."""
    return Diagnostic(
        display,
        1,
        1,
        f"the file is {size} bytes, over the limit of {limit} bytes for a spec; "
        f"if it really is a spec, raise the limit with {SPEC_BYTES_ENV}={max(size, limit * 2)}",
    )


def parse_yaml_bytes(
    raw: bytes, path: Path, display: str
) -> tuple[LoadedYaml | None, list[Diagnostic]]:
    """Check the size and encoding of a spec's bytes (a file's or a git blob's), then parse
    them; see read_yaml."""
    limit = max_spec_bytes()
    if len(raw) > limit:
        return None, [too_big(display, len(raw), limit)]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [Diagnostic(display, 1, 1, f"not UTF-8 text ({exc.reason}); save it as UTF-8")]
    # Universal newlines, as text-mode reading does: \r\n and a lone \r end a line.
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return parse_yaml(text, path, display)


def parse_yaml(text: str, path: Path, display: str) -> tuple[LoadedYaml | None, list[Diagnostic]]:
    """Parse YAML text that came from `path`; see read_yaml."""
    loader = None
    try:
        # The reader checks for unprintable characters as soon as it is created.
        loader = yaml.SafeLoader(text)
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        return None, [_syntax_diagnostic(exc, display)]
    except yaml.YAMLError as exc:
        return None, [_reader_diagnostic(exc, text, display)]
    except RecursionError:
        return None, [Diagnostic(display, 1, 1, "the YAML is nested too deeply to be a spec")]
    finally:
        if loader is not None:
            loader.dispose()
    loaded = LoadedYaml(None, path, display)
    loaded.text = text
    if root is None:
        return loaded, []
    builder = _Builder(loaded, text)
    try:
        loaded.data = builder.build(root, ())
    except _Fatal as fatal:
        return None, [fatal.diagnostic]
    loaded.broken = builder.broken
    # An aliased node is walked once per alias, so the same problem can be found several times.
    return loaded, list(dict.fromkeys(builder.problems))


def _number_text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _mark(node: Node) -> Position:
    return node.start_mark.line + 1, node.start_mark.column + 1


def _tag_text(tag: str) -> str:
    return "!!" + tag[len(_STD) :] if tag.startswith(_STD) else tag


def _syntax_diagnostic(exc: yaml.MarkedYAMLError, display: str) -> Diagnostic:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    if exc.problem == "but found another document":
        return Diagnostic(
            display, line, column, "a spec file holds one YAML document; remove this second '---'"
        )
    problem = (exc.problem or "invalid YAML").strip()
    if exc.context and exc.context_mark and exc.context_mark is not mark:
        started = exc.context_mark.line + 1
        where = "" if started == line else f" that started on line {started}"
        problem = f"{problem} ({exc.context.strip()}{where})"
    return Diagnostic(display, line, column, f"YAML syntax error: {problem}")


def _reader_diagnostic(exc: yaml.YAMLError, text: str, display: str) -> Diagnostic:
    # The reader reports a character offset rather than a mark.
    index = getattr(exc, "position", 0) or 0
    before = text[:index]
    line = before.count("\n") + 1
    column = index - (before.rfind("\n") + 1) + 1
    reason = getattr(exc, "reason", None) or str(exc).splitlines()[0]
    return Diagnostic(display, line, column, f"YAML syntax error: {reason}")


class _Fatal(Exception):
    def __init__(self, diagnostic: Diagnostic) -> None:
        super().__init__(diagnostic.render())
        self.diagnostic = diagnostic


class _Builder:
    """Walks the composed node graph once, expanding aliases under a budget."""

    _constructor = yaml.constructor.SafeConstructor()

    def __init__(self, loaded: LoadedYaml, text: str) -> None:
        self.loaded = loaded
        self.text = text
        self.problems: list[Diagnostic] = []
        self.broken: set[JsonPath] = set()
        self.seen: set[int] = set()
        self.repeated = 0
        # Nodes being built right now: meeting one again means a recursive alias (`&a [*a]`).
        self.active: set[int] = set()

    def problem(self, node: Node, message: str, path: JsonPath | None = None) -> None:
        line, column = _mark(node)
        self.problems.append(Diagnostic(self.loaded.display, line, column, message))
        if path is not None:
            self.broken.add(path)

    def fatal(self, node: Node, message: str) -> _Fatal:
        line, column = _mark(node)
        return _Fatal(Diagnostic(self.loaded.display, line, column, message))

    def enter(self, node: Node, path: JsonPath) -> None:
        # The composer hands back the same node object for every alias of an anchor, so a node
        # met again is a value copied by an alias.
        if id(node) in self.seen:
            self.repeated += 1
            if self.repeated > MAX_ALIAS_VALUES:
                raise self.fatal(
                    node,
                    f"anchors and aliases expand to more than {MAX_ALIAS_VALUES} values; "
                    "refusing to load it (a spec never needs this many)",
                )
        else:
            self.seen.add(id(node))
        if len(path) > MAX_DEPTH:
            raise self.fatal(node, f"the YAML is nested more than {MAX_DEPTH} levels deep")
        if not isinstance(node, ScalarNode):
            if id(node) in self.active:
                raise self.fatal(
                    node,
                    "this value contains an alias to itself (a loop); specs cannot be recursive",
                )
            self.active.add(id(node))

    def build(self, node: Node, path: JsonPath) -> Any:
        self.enter(node, path)
        self.loaded.values.setdefault(path, _mark(node))
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        try:
            if isinstance(node, SequenceNode):
                if node.tag != _SEQ:
                    return self.refuse(node, path)
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            if node.tag != _MAP or not isinstance(node, MappingNode):
                return self.refuse(node, path)
            return self.mapping(node, path)
        finally:
            self.active.discard(id(node))

    def refuse(self, node: Node, path: JsonPath) -> None:
        tag = node.tag
        shown = _tag_text(tag)
        if tag.startswith(_STD + "python/"):
            message = (
                f"the tag '{shown}' is refused: specs are data, and mlopsctl never builds "
                "Python objects from YAML"
            )
        elif tag.startswith(_STD):
            message = (
                f"the tag '{shown}' is not supported in specs; use plain strings, numbers, "
                "booleans, lists and mappings"
            )
        else:
            message = f"the custom tag '{shown}' is not supported; specs are plain YAML"
        self.problem(node, message, path)

    def scalar(self, node: ScalarNode, path: JsonPath) -> Any:
        tag = node.tag
        if tag in _AS_TEXT:
            return node.value
        if tag not in _SCALARS:
            return self.refuse(node, path)
        try:
            value = self.construct(node)
        except (ValueError, yaml.YAMLError):
            return self.problem(node, f"'{node.value}' is not a valid {_tag_text(tag)}", path)
        if self.is_plain(node):
            text = node.value
            if isinstance(value, bool):
                odd = text.lower() not in ("true", "false")
            elif value is None:
                odd = text not in _PLAIN_NULLS
            else:
                odd = text != _number_text(value)
            if odd:
                self.loaded.surprises[path] = Surprise(text, value)
        return value

    def construct(self, node: ScalarNode) -> Any:
        return getattr(self._constructor, "construct_yaml_" + node.tag[len(_STD) :])(node)

    def is_plain(self, node: ScalarNode) -> bool:
        """An unquoted scalar without an explicit tag: YAML guessed its type from the text."""
        if node.style is not None:
            return False
        # An anchor or tag written before the value moves start_mark onto it.
        start, end = node.start_mark.index, node.end_mark.index
        return "!" not in self.text[start : max(start, end - len(node.value))]

    def mapping(
        self, node: MappingNode, path: JsonPath, skip: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_seen: dict[str, int] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            key = self.key(key_node, path)
            if key is None:
                continue
            if key in first_seen:
                self.problem(
                    key_node,
                    f"duplicate key '{key}' (first defined on line {first_seen[key]}); "
                    "YAML keeps only one of them, so delete or rename one",
                    (*path, key),
                )
                continue
            first_seen[key] = key_node.start_mark.line + 1
            if key in skip:
                continue
            child = (*path, key)
            self.loaded.keys.setdefault(child, _mark(key_node))
            result[key] = self.build(value_node, child)
        # `<<: *defaults` fills in only the keys the mapping does not write itself, and with
        # `<<: [*a, *b]` the first source wins, as YAML's merge-key spec says.
        for value_node in merges:
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in sources:
                if not isinstance(source, MappingNode):
                    self.problem(source, "'<<' merges mappings only; give it an alias to one")
                    continue
                self.enter(source, path)
                try:
                    result.update(self.mapping(source, path, skip | result.keys()))
                finally:
                    self.active.discard(id(source))
        return result

    def key(self, key_node: Node, path: JsonPath) -> str | None:
        if not isinstance(key_node, ScalarNode):
            self.problem(key_node, "mapping keys must be plain text, not a list or a mapping")
            return None
        text = str(key_node.value)
        if key_node.tag in _AS_TEXT:
            return text
        if key_node.tag not in _SCALARS:
            self.refuse(key_node, path)
            return None
        # Keys in specs are always text, so a key YAML turned into another type is reported
        # (`on:` must not quietly become `True:`) and kept as the text that was written.
        try:
            value = self.construct(key_node)
        except (ValueError, yaml.YAMLError):
            value = text
        if key_node.style is None:
            self.loaded.key_surprises[path + (text,)] = Surprise(text, value)
        return text
