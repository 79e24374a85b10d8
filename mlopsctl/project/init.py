"""`mlopsctl init`: scaffold a project from templates/init without overwriting anything."""

from __future__ import annotations

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
_GITIGNORE = "gitignore"


@dataclass
class InitResult:
    root: Path
    created: list[str] = field(default_factory=list)
    gitignore_added: list[str] = field(default_factory=list)


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
    return result


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
