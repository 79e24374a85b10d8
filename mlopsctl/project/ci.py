"""`mlopsctl ci init github|gitlab`: render the CI templates (templates/ci/) into a repository:
the release gate on pull/merge requests (promotion from the main branch) and the scheduled
continuous-training check, for the specs found in the repository or named.

mlopsctl is not on PyPI, so the jobs install it from where the user says: a git repository at a
pinned ref, or a package index of their own. Files are never overwritten without `force`."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlopsctl import __version__
from mlopsctl.digest import sha256_bytes
from mlopsctl.errors import MlopsError, UsageError
from mlopsctl.templates import render, template_root

PROVIDERS = ("github", "gitlab")
GITHUB_FILES = {
    "release": ".github/workflows/mlopsctl-release.yml",
    "ct": ".github/workflows/mlopsctl-ct.yml",
}
GITLAB_FILE = ".gitlab/mlopsctl.yml"
GITLAB_ROOT = ".gitlab-ci.yml"
DEFAULT_CRON = "17 * * * *"
_SAFE = re.compile(r"^[A-Za-z0-9._~:/?&=%+@,#-]+$")  # no spaces, quotes or shell characters
_CRON = re.compile(r"^\S+( \S+){4}$")
_BRANCH = re.compile(r"^[A-Za-z0-9._/-]+$")
_PYTHON = re.compile(r"^3\.\d+$")


@dataclass
class CiOptions:
    provider: str
    pipeline: Path | None = None
    release: Path | None = None
    trigger: Path | None = None
    git: str | None = None  # install mlopsctl from this git repository ...
    ref: str | None = None  # ... at this tag or commit (default v<version>)
    index_url: str | None = None  # or from this package index ...
    version: str | None = None  # ... at this version (default this one)
    branch: str = "main"
    cron: str = DEFAULT_CRON
    python: str = "3.11"
    timeout: int = 60  # minutes
    force: bool = False


@dataclass
class CiResult:
    provider: str
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    specs: dict[str, str] = field(default_factory=dict)  # pipeline/release/trigger -> path
    notes: list[str] = field(default_factory=list)


def pip_args(options: CiOptions) -> list[str]:
    """What `pip install` gets in the jobs: a pinned git ref or a version from an index."""
    if options.git and options.index_url:
        raise UsageError("give --git or --index-url, not both")
    if options.git:
        _check_safe("--git", options.git)
        ref = options.ref or f"v{__version__}"
        _check_safe("--ref", ref)
        url = options.git if options.git.startswith("git+") else f"git+{options.git}"
        return [f"mlopsctl @ {url}@{ref}"]
    if options.index_url:
        _check_safe("--index-url", options.index_url)
        version = options.version or __version__
        _check_safe("--version", version)
        return ["--index-url", options.index_url, f"mlopsctl=={version}"]
    raise UsageError(
        "say where the CI jobs install mlopsctl from (it is not on PyPI)",
        "--git https://github.com/OWNER/mlopsctl --ref v" + __version__ + " (a tag or commit), "
        "or --index-url URL of your own package index",
    )


def init_ci(root: Path, options: CiOptions, exclude: tuple[str, ...] = ()) -> CiResult:
    """Render the provider's workflows for the specs of the repository at `root`."""
    if options.provider not in PROVIDERS:
        raise UsageError(f"unknown CI provider {options.provider!r}", "use github or gitlab")
    _check_settings(options)
    args = pip_args(options)
    specs = choose_specs(root, options, exclude)
    values = {
        "pip_args": shlex.join(args),
        "install_key": sha256_bytes(shlex.join(args).encode()).split(":", 1)[1][:16],
        "branch": options.branch,
        "cron": options.cron,
        "python": options.python,
        "timeout": str(options.timeout),
        **specs,
    }
    result = CiResult(provider=options.provider, specs=dict(specs))
    folder = template_root() / "ci"
    files: dict[str, str] = {}
    if options.provider == "github":
        if "release" in specs:
            files[GITHUB_FILES["release"]] = _render(folder / "github-release.yml.tmpl", values)
        if "trigger" in specs:
            files[GITHUB_FILES["ct"]] = _render(folder / "github-ct.yml.tmpl", values)
    else:
        parts = [_render(folder / "gitlab-setup.yml.tmpl", values)]
        if "release" in specs:
            parts.append(_render(folder / "gitlab-release.yml.tmpl", values))
        if "trigger" in specs:
            parts.append(_render(folder / "gitlab-ct.yml.tmpl", values))
        files[GITLAB_FILE] = "".join(parts)
    _write_all(root, files, options.force, result)
    if options.provider == "gitlab":
        _include_from_gitlab_ci(root, result)
    if "release" not in specs:
        result.notes.append("no Release spec found: no release gate workflow (--release PATH)")
    if "trigger" not in specs:
        result.notes.append("no Trigger spec found: no continuous-training job (--trigger PATH)")
    return result


def choose_specs(root: Path, options: CiOptions, exclude: tuple[str, ...] = ()) -> dict[str, str]:
    """The pipeline, release and trigger specs the workflows name (paths relative to `root`):
    those given, else the only one of each kind found; the pipeline whose register: block
    makes the release's model, else the one the trigger runs."""
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {
        "Pipeline": [],
        "Release": [],
        "Trigger": [],
    }
    given = {"Pipeline": options.pipeline, "Release": options.release, "Trigger": options.trigger}
    if not all(given.values()):
        from mlopsctl.spec import find_specs

        for path in find_specs(root, exclude):
            data = _header(path)
            kind = data.get("kind")
            if kind in found:
                found[kind].append((path.relative_to(root).as_posix(), data))
    chosen: dict[str, str] = {}
    for kind, flag in (("Release", "--release"), ("Trigger", "--trigger")):
        named = given[kind]
        if named is not None:
            chosen[kind] = _given(root, named, kind)
        elif len(found[kind]) == 1:
            chosen[kind] = found[kind][0][0]
        elif len(found[kind]) > 1:
            names = ", ".join(p for p, _ in found[kind])
            raise UsageError(
                f"{len(found[kind])} {kind} specs in the repository ({names})",
                f"name the one the workflow uses with {flag} PATH",
            )
    if not chosen:
        raise UsageError(
            "no Release or Trigger spec to build a workflow for",
            "write one (see specs/examples), or name it with --release or --trigger",
        )
    pipeline = given["Pipeline"]
    if pipeline is not None:
        chosen["Pipeline"] = _given(root, pipeline, "Pipeline")
    elif "Release" in chosen:
        chosen["Pipeline"] = _pipeline_for_release(root, chosen["Release"], found["Pipeline"])
    result = {kind.lower(): path for kind, path in chosen.items()}
    return result


def _pipeline_for_release(
    root: Path, release: str, pipelines: list[tuple[str, dict[str, Any]]]
) -> str:
    model = _header(root / release).get("model")
    making = [p for p, data in pipelines if (data.get("register") or {}).get("model") == model]
    if len(making) == 1:
        return making[0]
    if not making and len(pipelines) == 1:
        return pipelines[0][0]
    names = ", ".join(making or [p for p, _ in pipelines]) or "none found"
    raise UsageError(
        f"cannot tell which pipeline trains model {model!r} for {release} ({names})",
        "name it with --pipeline PATH",
    )


def _given(root: Path, path: Path, kind: str) -> str:
    full = path if path.is_absolute() else Path.cwd() / path
    if not full.is_file():
        raise UsageError(f"no such spec: {path}", f"give the path of a kind: {kind} file")
    try:
        relative = full.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise UsageError(
            f"{path} is outside the repository at {root}", "the CI job only sees the repository"
        ) from None
    got = _header(full).get("kind")
    if got != kind:
        raise UsageError(f"{path} is a {got or 'file without a kind'}, not a {kind} spec")
    return relative


def _header(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _check_safe(flag: str, value: str) -> None:
    if not _SAFE.match(value):
        raise UsageError(
            f"{flag} {value!r} has characters a CI file cannot carry safely",
            "no spaces, quotes or shell characters",
        )


def _check_settings(options: CiOptions) -> None:
    if not _CRON.match(options.cron):
        raise UsageError(f"--cron {options.cron!r} is not five cron fields", 'e.g. "17 * * * *"')
    if not _BRANCH.match(options.branch):
        raise UsageError(f"--branch {options.branch!r} is not a branch name")
    if not _PYTHON.match(options.python):
        raise UsageError(f"--python {options.python!r} is not a Python version", "e.g. 3.11")
    if not 1 <= options.timeout <= 360:
        raise UsageError("--timeout is minutes, from 1 to 360")


def _render(template: Path, values: dict[str, str]) -> str:
    return render(template.read_text(encoding="utf-8"), values)


def _write_all(root: Path, files: dict[str, str], force: bool, result: CiResult) -> None:
    clashes = []
    for name, text in files.items():
        path = root / name
        if path.exists():
            if path.read_text(encoding="utf-8") == text:
                result.unchanged.append(name)
            elif not force:
                clashes.append(name)
    if clashes:
        raise MlopsError(
            f"{', '.join(clashes)} already exist(s) and differ(s) from what ci init renders",
            "compare and merge by hand, or run again with --force to replace",
        )
    for name, text in files.items():
        if name in result.unchanged:
            continue
        path = root / name
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise MlopsError(f"cannot write {path}: {exc.strerror or exc}") from None
        result.written.append(name)


def _include_from_gitlab_ci(root: Path, result: CiResult) -> None:
    """GitLab reads one file: create .gitlab-ci.yml including ours, or say what to add."""
    path = root / GITLAB_ROOT
    include = f"include:\n  - local: {GITLAB_FILE}\n"
    if not path.exists():
        path.write_text(f"# mlopsctl's jobs are in {GITLAB_FILE}.\n" + include, encoding="utf-8")
        result.written.append(GITLAB_ROOT)
    elif GITLAB_FILE not in path.read_text(encoding="utf-8"):
        result.notes.append(f"add to {GITLAB_ROOT}:\n{include.rstrip()}")
