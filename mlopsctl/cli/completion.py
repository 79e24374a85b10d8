"""Shell completion for bash, zsh and fish, answered in a few tens of milliseconds.

A shell asks by running `mlopsctl` with _MLOPSCTL_COMPLETE=complete_<shell> and the words typed
so far (COMP_WORDS and COMP_CWORD, as Typer and click pass them; or COMP_LINE and COMP_POINT).
`mlopsctl/cli/__init__.py` sends such a run here before Typer or any command module loads:
this module needs only the standard library. It reads

- the command tree (commands, options, arguments) from an index of the Typer app, built once by
  importing the app and kept in the user's cache folder, keyed by the version and the command
  modules' files, so a changed CLI rebuilds it by itself;
- model names, aliases, versions and run ids by listing a local store's folders (an S3 store
  is not asked: a network round trip per keypress would be too slow);
- spec paths by reading the first lines of the YAML files in the folder being typed.

`mlopsctl completion show|install SHELL` prints or installs the script a shell needs.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ENV_VAR = "_MLOPSCTL_COMPLETE"
SHELLS = ("bash", "zsh", "fish")
_CLI_DIR = Path(__file__).resolve().parent
_MAX_ITEMS = 200
_HEAD = 4096
_KIND = re.compile(r"^kind:\s*['\"]?(\w+)", re.MULTILINE)
_API = re.compile(r"^apiVersion:.*mlopsctl/", re.MULTILINE)
_SKIP_DIRS = {".git", ".mlops", ".venv", "venv", "node_modules", "__pycache__", ".tools"}

# The kind of spec a command's spec argument takes, by its first word (validate: any).
_SPEC_KIND = {
    "run": "Pipeline",
    "build": "Pipeline",
    "export": "Pipeline",
    "release": "Release",
    "monitor": "Monitor",
    "ct": "Trigger",
    "datasets": "Dataset",
    "features": "FeatureSet",
}
_SPEC_PARAMS = {"spec", "specs", "paths", "spec_path"}
_MODEL_PARAMS = {"ref", "model"}
_RUN_PARAMS = {"run_id", "run_ids", "run"}


# -- the entry point --------------------------------------------------------------------------
def complete_and_exit() -> None:
    """Answer the completion request in the environment and exit (0, or 1 on a bad request)."""
    instruction = os.environ.get(ENV_VAR, "")
    shell = instruction.removeprefix("complete_")
    if shell not in SHELLS:
        sys.stderr.write(f"mlopsctl: unknown completion request {instruction!r}\n")
        sys.exit(1)
    words, incomplete = request_words(os.environ)
    try:
        items = complete(words, incomplete)
    except Exception:  # noqa: BLE001 - a failing completion must never print a traceback
        items = []
    sys.stdout.write(render(shell, items, incomplete))
    sys.stdout.flush()
    sys.exit(0)


def request_words(env: Any) -> tuple[list[str], str]:
    """The words before the one being completed (without the program name), and that one."""
    if "COMP_LINE" in env and "COMP_WORDS" not in env:
        line = str(env["COMP_LINE"])
        point = int(env.get("COMP_POINT") or len(line))
        words = _split(line[:point])
        if line[:point].endswith((" ", "\t")) or not words:
            words.append("")
    else:
        words = _split(str(env.get("COMP_WORDS", "")))
        cword = int(env.get("COMP_CWORD") or len(words))
        words = words[: cword + 1]
        while len(words) <= cword:
            words.append("")
    return words[1:-1], words[-1]


def _split(text: str) -> list[str]:
    import shlex

    try:
        return shlex.split(text)
    except ValueError:  # an open quote: the word being typed
        return text.split()


# -- what to offer ----------------------------------------------------------------------------
def complete(words: list[str], incomplete: str) -> list[tuple[str, str]]:
    """(value, help) pairs for `incomplete` after `words`."""
    tree = command_tree()
    node = tree
    path: list[str] = []
    positional: list[str] = []
    store_flag: str | None = None
    pending: dict[str, Any] | None = None  # an option waiting for its value
    for word in words:
        if pending is not None:
            if pending["name"] == "store":
                store_flag = word
            pending = None
            continue
        if word.startswith("-") and len(word) > 1:
            option = _option(node, word.split("=", 1)[0])
            if option is not None and option["takes_value"] and "=" not in word:
                pending = option
            continue
        sub = node.get("commands", {}).get(word)
        if sub is not None and not positional:
            node, path = sub, [*path, word]
            continue
        positional.append(word)
    context = _Context(path, positional, store_flag)
    if pending is not None:
        return _values(pending, incomplete, context)
    if incomplete.startswith("-"):
        return [
            (name, option["help"])
            for option in node.get("options", [])
            for name in option["names"]
            if name.startswith(incomplete)
        ]
    commands = node.get("commands")
    if commands and not positional:
        return [(n, c["help"]) for n, c in commands.items() if n.startswith(incomplete)]
    arguments = node.get("arguments", [])
    index = len(positional)
    for argument in arguments:
        if argument["nargs"] == -1 or index == 0:
            return _values(argument, incomplete, context)
        index -= 1
    return []


class _Context:
    def __init__(self, path: list[str], positional: list[str], store_flag: str | None) -> None:
        self.path = path
        self.positional = positional
        self.store_flag = store_flag


def _option(node: dict[str, Any], name: str) -> dict[str, Any] | None:
    for option in node.get("options", []):
        if name in option["names"]:
            return dict(option)
    return None


def _values(param: dict[str, Any], incomplete: str, ctx: _Context) -> list[tuple[str, str]]:
    name = param["name"]
    if param.get("choices"):
        return [(c, "") for c in param["choices"] if c.startswith(incomplete)]
    if name == "store":
        return _paths(incomplete, folders_only=True)
    if name in _SPEC_PARAMS:
        kind = _SPEC_KIND.get(ctx.path[0]) if ctx.path else None
        return _paths(incomplete, spec_kind=kind or "any")
    if name in _RUN_PARAMS:
        return [(r, "") for r in _run_ids(_store_root(ctx.store_flag), incomplete)]
    if name in _MODEL_PARAMS or (name == "name" and ctx.path[:1] in (["models"], ["logs"])):
        return _model_refs(_store_root(ctx.store_flag), incomplete, refs=name in _MODEL_PARAMS)
    if name == "alias" and ctx.positional:
        model = re.split(r"[:@]", ctx.positional[0])[0]
        return [(a, "") for a in _aliases(_store_root(ctx.store_flag), model, incomplete)]
    if param.get("path"):
        return _paths(incomplete)
    return []


# -- files and specs --------------------------------------------------------------------------
def _paths(
    incomplete: str, *, folders_only: bool = False, spec_kind: str | None = None
) -> list[tuple[str, str]]:
    """Entries of the folder being typed: sub-folders (with a slash), and files (specs of the
    kind only, when a kind is asked for; "any" is any mlopsctl spec)."""
    folder, _, prefix = incomplete.rpartition("/")
    base = Path(os.path.expanduser(folder + "/")) if folder else Path(".")
    shown = folder + "/" if folder else ""
    items: list[tuple[str, str]] = []
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except OSError:
        return []
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix) or (name.startswith(".") and not prefix.startswith(".")):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            continue
        if is_dir:
            if name not in _SKIP_DIRS or prefix:
                items.append((f"{shown}{name}/", ""))
        elif not folders_only:
            if spec_kind is None:
                items.append((shown + name, ""))
            elif name.endswith((".yaml", ".yml")):
                kind = _spec_kind_of(entry.path)
                if kind is not None and spec_kind in ("any", kind):
                    items.append((shown + name, kind))
        if len(items) >= _MAX_ITEMS:
            break
    return items


def _spec_kind_of(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            head = handle.read(_HEAD).decode("utf-8", errors="replace")
    except OSError:
        return None
    if not _API.search(head):
        return None
    match = _KIND.search(head)
    return match[1] if match else None


# -- the store (a local folder only) ----------------------------------------------------------
def _store_root(flag: str | None) -> Path | None:
    """The local store folder: --store on the line (relative to here), else MLOPSCTL_STORE,
    mlops.yaml's store.url or .mlops (relative to the project root); None for an S3 (or any
    other non-local) store."""
    if flag:
        url, base = flag, Path.cwd()
    else:
        project = _project_file(Path.cwd())
        base = project.parent if project else _git_root(Path.cwd())
        found = os.environ.get("MLOPSCTL_STORE") or (_store_url_in(project) if project else None)
        url = found or ".mlops"
    if url.startswith("file://"):
        url = url[len("file://") :]
    elif "://" in url:
        return None
    path = Path(os.path.expanduser(url))
    return path if path.is_absolute() else base / path


def _project_file(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / "mlops.yaml"
        if candidate.is_file():
            return candidate
        if (folder / ".git").exists():
            return None
    return None


def _git_root(start: Path) -> Path:
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start


def _store_url_in(project: Path) -> str | None:
    """store.url of mlops.yaml, read by pattern: block (`store:` then an indented `url:`) or
    flow (`store: {url: X}`) style, the two forms the docs use."""
    try:
        text = project.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    flow = re.search(r"^store:\s*\{[^}]*\burl:\s*['\"]?([^,'\"}\s]+)", text, re.MULTILINE)
    if flow:
        return flow[1]
    block = re.search(r"^store:\s*\n(?:[ \t]+.*\n)*?[ \t]+url:\s*['\"]?([^'\"\s#]+)", text, re.M)
    return block[1] if block else None


def _names(folder: Path, suffix: str = "") -> Iterator[str]:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if suffix:
            if entry.name.endswith(suffix):
                yield entry.name[: -len(suffix)]
        elif entry.is_dir():
            yield entry.name


def _model_refs(store: Path | None, incomplete: str, *, refs: bool) -> list[tuple[str, str]]:
    if store is None:
        return []
    models = store / "models"
    if refs and ("@" in incomplete or ":" in incomplete):
        sep = "@" if "@" in incomplete else ":"
        model, _, rest = incomplete.partition(sep)
        if sep == "@":
            values = _aliases(store, model, rest)
        else:
            numbers = (n for n in _names(models / model / "versions", ".json") if n.isdigit())
            values = [n for n in sorted(numbers, key=int, reverse=True) if n.startswith(rest)]
        return [(f"{model}{sep}{v}", "") for v in values[:_MAX_ITEMS]]
    names = sorted(n for n in _names(models) if n.startswith(incomplete))
    return [(n, "model") for n in names[:_MAX_ITEMS]]


def _aliases(store: Path | None, model: str, prefix: str) -> list[str]:
    if store is None or not model:
        return []
    names = _names(store / "models" / model / "aliases", ".json")
    return sorted(a for a in names if a.startswith(prefix))


def _run_ids(store: Path | None, prefix: str) -> list[str]:
    if store is None:
        return []
    ids = sorted((r for r in _names(store / "runs", ".json") if r.startswith(prefix)), reverse=True)
    return ids[:_MAX_ITEMS]  # newest first: ids start with their time


# -- output for each shell --------------------------------------------------------------------
def render(shell: str, items: list[tuple[str, str]], incomplete: str) -> str:
    if shell == "bash":
        # bash splits words at ':' and '=' (COMP_WORDBREAKS): it replaces only what follows
        # the last one, so that is what it gets.
        cut = max(incomplete.rfind(":"), incomplete.rfind("="))
        return "".join(f"{value[cut + 1 :]}\n" for value, _ in items)
    if shell == "zsh":
        return "".join(
            f"{_zsh_escape(value)}:{_one_line(help_)}\n" if help_ else f"{_zsh_escape(value)}\n"
            for value, help_ in items
        )
    return "".join(
        f"{value}\t{_one_line(help_)}\n" if help_ else f"{value}\n" for value, help_ in items
    )


def _zsh_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _one_line(text: str) -> str:
    return " ".join(text.split())[:80]


# -- the command tree -------------------------------------------------------------------------
def command_tree() -> dict[str, Any]:
    """The CLI's commands, options and arguments, from the cache, (re)built when missing or
    when mlopsctl changed since."""
    path = _index_path()
    try:
        with open(path, encoding="utf-8") as handle:
            tree: dict[str, Any] = json.load(handle)
        return tree
    except (OSError, ValueError):
        pass
    tree = build_tree()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(tree, separators=(",", ":")), encoding="utf-8")
        os.replace(tmp, path)
        for old in path.parent.glob("commands-*.json"):
            if old != path:
                old.unlink(missing_ok=True)
    except OSError:
        pass  # no cache folder: built again next time, slower but right
    return tree


def _index_path() -> Path:
    import hashlib

    from mlopsctl import __version__

    digest = hashlib.sha256(f"{__version__}|{sys.executable}".encode())
    for entry in sorted(os.scandir(_CLI_DIR), key=lambda e: e.name):
        if entry.name.endswith(".py"):
            info = entry.stat()
            digest.update(f"|{entry.name}:{info.st_mtime_ns}:{info.st_size}".encode())
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "mlopsctl" / f"commands-{digest.hexdigest()[:16]}.json"


def build_tree() -> dict[str, Any]:
    """Walk the Typer app (imports every command module: done once per change of the CLI)."""
    import typer.main

    from mlopsctl.cli.main import app

    return _node(typer.main.get_command(app))


def _node(command: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"help": _short_help(command), "options": [], "arguments": []}
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        choices = list(getattr(param.type, "choices", None) or [])
        is_path = type(param.type).__name__ == "Path"
        if getattr(param, "param_type_name", "") == "option":
            names = [*param.opts, *param.secondary_opts]
            node["options"].append(
                {
                    "name": param.name,
                    "names": names,
                    "help": param.help or "",
                    "takes_value": not (param.is_flag or param.count),
                    "choices": [str(c) for c in choices],
                    "path": is_path,
                }
            )
        else:
            node["arguments"].append(
                {
                    "name": param.name,
                    "nargs": param.nargs,
                    "choices": [str(c) for c in choices],
                    "path": is_path,
                }
            )
    node["options"].append(
        {"name": "help", "names": ["--help"], "help": "Show help.", "takes_value": False}
    )
    commands = getattr(command, "commands", None)
    if commands:
        node["commands"] = {
            name: _node(sub) for name, sub in sorted(commands.items()) if not sub.hidden
        }
    return node


def _short_help(command: Any) -> str:
    text = command.short_help or command.help or ""
    return _one_line(text.split(". ")[0].split("\n\n")[0])


# -- scripts ----------------------------------------------------------------------------------
_SCRIPTS = {
    "bash": """\
# mlopsctl completion for bash (mlopsctl completion show bash)
_mlopsctl_completion() {
    local IFS=$'\\n'
    COMPREPLY=($(env COMP_LINE="$COMP_LINE" COMP_POINT="$COMP_POINT" \\
        _MLOPSCTL_COMPLETE=complete_bash "$1" 2>/dev/null))
    if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == */ ]]; then
        compopt -o nospace 2>/dev/null
    fi
    return 0
}
complete -o default -F _mlopsctl_completion mlopsctl
""",
    "zsh": """\
#compdef mlopsctl
# mlopsctl completion for zsh (mlopsctl completion show zsh)
_mlopsctl() {
    local -a items
    items=("${(@f)$(env COMP_WORDS="${words[*]}" COMP_CWORD=$((CURRENT - 1)) \\
        _MLOPSCTL_COMPLETE=complete_zsh mlopsctl 2>/dev/null)}")
    if [[ -n "${items[1]}" ]]; then
        _describe -V mlopsctl items
    else
        _files
    fi
}
if [[ "$funcstack[1]" == "_mlopsctl" ]]; then
    _mlopsctl "$@"
else
    compdef _mlopsctl mlopsctl
fi
""",
    "fish": """\
# mlopsctl completion for fish (mlopsctl completion show fish)
function __mlopsctl_complete
    set -l words (commandline -opc)
    set -l current (commandline -ct)
    env COMP_WORDS="$words $current" COMP_CWORD=(count $words) \\
        _MLOPSCTL_COMPLETE=complete_fish mlopsctl 2>/dev/null
end
complete -c mlopsctl -f -a '(__mlopsctl_complete)'
""",
}

# Where `completion install` puts the script: the folders each shell loads completions from.
_TARGETS = {
    "bash": "~/.local/share/bash-completion/completions/mlopsctl",
    "zsh": "~/.zfunc/_mlopsctl",
    "fish": "~/.config/fish/completions/mlopsctl.fish",
}
_NOTES = {
    "bash": "bash-completion loads it in new shells (or: source {path})",
    "zsh": "add to ~/.zshrc, before compinit: fpath=(~/.zfunc $fpath); autoload -Uz compinit; "
    "compinit",
    "fish": "fish loads it in new shells",
}


def script(shell: str) -> str:
    return _SCRIPTS[shell]


def detect_shell() -> str | None:
    """The user's shell from $SHELL, when it is one we complete for."""
    name = os.path.basename(os.environ.get("SHELL", ""))
    return name if name in SHELLS else None


def install(shell: str) -> tuple[Path, str]:
    """Write the shell's script where it loads completions from; warm the command index so
    that the first completion is fast too. Returns the file and what else to do."""
    path = Path(os.path.expanduser(_TARGETS[shell]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script(shell), encoding="utf-8")
    command_tree()
    return path, _NOTES[shell].format(path=path)
