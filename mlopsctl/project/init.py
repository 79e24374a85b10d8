"""`mlopsctl init`: scaffold a project from templates/init without overwriting anything; and
the JSON Schemas of the spec kinds, exported for editors (`mlopsctl schema export`)."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from mlopsctl.config import DEFAULT_STORE, PROJECT_FILE
from mlopsctl.errors import MlopsError, UsageError
from mlopsctl.templates import render, template_root

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Template file -> where it lands. Templates end in .tmpl so that `validate` never mistakes
# their unrendered placeholders for a broken spec. "gitignore" is merged, never overwritten.
_FILES = {"mlops.yaml.tmpl": PROJECT_FILE, "pipelines/train.yaml.tmpl": "pipelines/train.yaml"}
_KINDS = {PROJECT_FILE: "Project", "pipelines/train.yaml": "Pipeline"}
_GITIGNORE = "gitignore"
# Where init puts the spec schemas in a project (committed, so every clone's editor has them);
# each file it writes starts with a yaml-language-server modeline pointing there.
SCHEMAS_DIR = ".mlopsctl/schemas"
MODELINE = "# yaml-language-server: $schema="


@dataclass
class InitResult:
    root: Path
    created: list[str] = field(default_factory=list)
    gitignore_added: list[str] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)  # written under SCHEMAS_DIR


def project_name_from(folder: Path) -> str:
    """A valid project name derived from a folder name ('My Project_2' -> 'my-project-2')."""
    slug = re.sub(r"[^a-z0-9]+", "-", folder.name.lower()).strip("-")[:63].strip("-")
    return slug or "project"


def init_project(target: Path, name: str | None = None, store: str | None = None) -> InitResult:
    target = target.resolve()
    if target.exists() and not target.is_dir():
        raise UsageError(
            f"{target} is a file, not a folder", "give a folder to create the project in"
        )
    name = name or project_name_from(target)
    if not _NAME_RE.match(name):
        raise UsageError(
            f"invalid project name {name!r}",
            "use lowercase letters, digits and '-' (at most 63 characters)",
        )
    existing = [dest for dest in _FILES.values() if (target / dest).exists()]
    if existing:
        raise MlopsError(
            f"{', '.join(existing)} already exist(s) in {target}; init never overwrites files",
            "remove them first, or run init in another folder",
        )

    templates = template_root() / "init"
    values = {"name": name, "store": store or DEFAULT_STORE}
    result = InitResult(root=target)
    for source, dest in _FILES.items():
        path = target / dest
        path.parent.mkdir(parents=True, exist_ok=True)
        text = render((templates / source).read_text(encoding="utf-8"), values)
        text = modeline(_KINDS[dest], path.parent, target / SCHEMAS_DIR) + "\n" + text
        # "x" mode: even a file that appeared since the check above is never overwritten.
        try:
            with path.open("x", encoding="utf-8") as handle:
                handle.write(text)
        except FileExistsError:
            raise MlopsError(
                f"{dest} appeared in {target} while init ran; init never overwrites files",
                "check what created it, then run init again",
            ) from None
        result.created.append(dest)

    result.gitignore_added = _merge_gitignore(target / ".gitignore", templates / _GITIGNORE)
    written = export_schemas(target / SCHEMAS_DIR, overwrite=False)
    result.schemas = [path.relative_to(target).as_posix() for path in written]
    return result


def schema_file_name(kind: str) -> str:
    return f"{kind.lower()}.schema.json"


def modeline(kind: str, folder: Path, schemas: Path) -> str:
    """The yaml-language-server comment that makes editors (VS Code's YAML extension, Neovim,
    Helix, ...) check a spec of `kind` in `folder` against the exported schema in `schemas`."""
    relative = Path(os.path.relpath(schemas / schema_file_name(kind), folder)).as_posix()
    return MODELINE + relative


def export_schemas(dest: Path, *, overwrite: bool = True) -> list[Path]:
    """Write the JSON Schema of every spec kind into `dest` (created if missing) as
    `<kind>.schema.json`: the very schemas `validate` checks specs against. Returns the files
    written; without `overwrite`, files already there are left as they are."""
    from mlopsctl.spec import SPEC_KINDS, schema_for

    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} is a file, not a folder", "give a folder to write the schemas to")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MlopsError(f"cannot create {dest}: {exc.strerror or exc}") from None
    written = []
    for kind in SPEC_KINDS:
        path = dest / schema_file_name(kind)
        if path.exists() and not overwrite:
            continue
        text = json.dumps(schema_for(kind), indent=2, ensure_ascii=False) + "\n"
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise MlopsError(f"cannot write {path}: {exc.strerror or exc}") from None
        written.append(path)
    return written


def _merge_gitignore(path: Path, template: Path) -> list[str]:
    """Append the template's lines that .gitignore lacks; keep everything already there."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    have = {line.strip() for line in text.splitlines()}
    wanted = template.read_text(encoding="utf-8").splitlines()
    missing = [line for line in wanted if line.strip() and line.strip() not in have]
    patterns = [line for line in missing if not line.startswith("#")]
    if not patterns:
        return []
    block = "\n".join(missing) + "\n"
    if text.strip():
        block = ("\n" if text.endswith("\n") else "\n\n") + block
    with path.open("a", encoding="utf-8") as handle:
        handle.write(block)
    return patterns
