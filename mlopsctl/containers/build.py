"""`mlopsctl build`: turn a pipeline into a container image.

The build context is assembled here, never from the working folder as a whole: a Dockerfile
rendered from templates/docker/Dockerfile.tmpl, mlopsctl's own source and dependency list (so no
PyPI release is needed), the project's requirements file, and the project's files as git sees
them. The image is tagged `<registry>/<project>/<pipeline>:<git-sha>` and with a content tag,
the digest of everything in that context plus the base image's id: when an image with the
content tag already exists (on the engine or in the registry) there is nothing to build.
`--push` pushes both tags and records the manifest digest in the store
(`images/<project>/<pipeline>/<content-tag>.json`, put-if-absent) with an audit event."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mlopsctl import __version__
from mlopsctl.containers import DEFAULT_BASE, DEFAULT_NETWORK, IMAGE_PROJECT_DIR, LABEL
from mlopsctl.errors import (
    AlreadyExists,
    BuildFailed,
    NotFound,
    RegistryUnreachable,
    UsageError,
)
from mlopsctl.records import image as image_kind

if TYPE_CHECKING:
    import docker

    from mlopsctl.config import Project
    from mlopsctl.records.common import Actor, GitInfo
    from mlopsctl.records.image import ImageRecord

Log = Callable[[str], None]

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the mlopsctl package
_MTIME = 315532800  # 1980-01-01: fixed file times keep the context (and layers) reproducible
_TAIL_LINES = 30
RECORDS = "images/"
# Never part of an image: version control, virtualenvs, caches.
_ALWAYS_SKIPPED = (".git", ".venv", "venv", "__pycache__", ".mypy_cache", ".ruff_cache")


@dataclass
class ContextFile:
    arcname: str
    mode: int
    path: Path | None = None
    data: bytes | None = None

    def digest(self) -> str:
        from mlopsctl.digest import sha256_bytes
        from mlopsctl.pipeline.hashing import path_digest

        if self.path is not None:
            return path_digest(self.path)  # remembered by (size, mtime, inode): no re-read
        return sha256_bytes(self.data or b"")

    def read(self) -> bytes:
        return self.path.read_bytes() if self.path is not None else (self.data or b"")


@dataclass
class BuildPlan:
    """Everything decided before the engine is asked anything."""

    project: str
    pipeline: str
    repository: str
    base: str
    project_root: Path
    spec_display: str
    spec_digest: str
    git: dict[str, Any]
    files: list[ContextFile] = field(default_factory=list)

    @property
    def git_tag(self) -> str | None:
        commit = self.git.get("commit")
        if not commit:
            return None
        return f"{commit[:12]}-dirty" if self.git.get("dirty") else str(commit[:12])

    def content_digest(self, base_id: str) -> str:
        from mlopsctl.digest import canonical_json

        material = {
            "base_id": base_id,
            "files": [[f.arcname, f.mode, f.digest()] for f in self.files],
        }
        return hashlib.sha256(canonical_json(material)).hexdigest()

    def tar(self, labels: dict[str, str] | None = None) -> bytes:
        """The context as a tar stream. `labels` become one LABEL line at the end of the
        Dockerfile (one layer, not one per label; not part of the content digest, since they
        say when and from which commit the image was built, not what is in it)."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for item in self.files:
                data = item.read()
                if item.arcname == "Dockerfile" and labels:
                    pairs = " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(labels.items()))
                    data += f"LABEL {pairs}\n".encode()
                info = tarfile.TarInfo(item.arcname)
                info.size, info.mode, info.mtime = len(data), item.mode, _MTIME
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()


def content_tag(digest: str) -> str:
    return f"content-{digest[:20]}"


# -- the build context ----------------------------------------------------------------------


def plan_build(project: Project, spec: Path) -> BuildPlan:
    """Read the pipeline spec and assemble the build context (no engine needed)."""
    from mlopsctl.containers.registry import repository
    from mlopsctl.provenance import git_info
    from mlopsctl.templates import render, template_root

    data, image = _pipeline_image(project, spec)
    root = project.root
    spec = spec.resolve()
    try:
        display = spec.relative_to(root).as_posix()
    except ValueError:
        display = str(spec)
    git = git_info(root)
    if git:
        git["dirty"] = bool(git.get("dirty")) or _has_untracked(root)
    plan = BuildPlan(
        project=project.name,
        pipeline=str(data["name"]),
        repository=repository(project.registry, project.name, str(data["name"])),
        base=str(image.get("base") or DEFAULT_BASE),
        project_root=root,
        spec_display=display,
        spec_digest="sha256:" + hashlib.sha256(spec.read_bytes()).hexdigest(),
        git=git,
    )
    files = [*_project_files(project), *_mlopsctl_files()]
    requirements = _requirements_file(root, image.get("requirements"))
    block = ""
    if requirements:
        block = (
            f"COPY project/{requirements} /opt/mlopsctl/project-requirements.txt\n"
            "RUN python -m pip install --no-cache-dir -q "
            "-r /opt/mlopsctl/project-requirements.txt"
        )
    template = (template_root() / "docker" / "Dockerfile.tmpl").read_text()
    dockerfile = render(
        template,
        {"base": plan.base, "project_requirements": block, "project_dir": IMAGE_PROJECT_DIR},
    )
    files.append(ContextFile("Dockerfile", 0o644, data=dockerfile.encode()))
    plan.files = sorted(files, key=lambda f: f.arcname)
    return plan


def requirements_path(project: Project, spec: Path) -> Path | None:
    """The requirements file a pipeline's image installs: the spec's `image.requirements`,
    else the project's, else requirements.txt when the project has one (None: no file)."""
    _, image = _pipeline_image(project, spec)
    found = _requirements_file(project.root, image.get("requirements"))
    return project.root / found if found else None


def _pipeline_image(project: Project, spec: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pipeline spec, and its `image:` block over the project's."""
    from mlopsctl.spec import load_spec

    if not spec.is_file():
        raise NotFound(f"no such pipeline spec: {spec}", "give the path of a kind: Pipeline file")
    data = load_spec(spec, kind="Pipeline")
    return data, {**project.image, **(data.get("image") or {})}


def _requirements_file(root: Path, configured: Any) -> str | None:
    if configured:
        base = root.resolve()
        path = (root / str(configured)).resolve()
        if not path.is_relative_to(base):
            raise UsageError(
                f"requirements file {configured} (image.requirements) is outside the project",
                "name a file inside the project folder, relative to its root",
            )
        if not path.is_file():
            raise NotFound(
                f"requirements file {configured} (image.requirements) does not exist",
                "fix image.requirements, or leave it out to use requirements.txt when present",
            )
        return path.relative_to(base).as_posix()
    return "requirements.txt" if (root / "requirements.txt").is_file() else None


def _has_untracked(root: Path) -> bool:
    proc = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard", "-z"],
        cwd=root,
        capture_output=True,
        timeout=30,
        check=False,
    )
    return proc.returncode == 0 and bool(proc.stdout)


def _project_files(project: Project) -> list[ContextFile]:
    """The project as git sees it (tracked files plus untracked ones it does not ignore), or
    every file outside version control, caches and the store when it is not a repository;
    minus .dockerignore patterns."""
    root = project.root
    names = _git_files(root)
    if names is None:
        names = [
            p.relative_to(root).as_posix()
            for p in sorted(root.rglob("*"))
            if p.is_file() and not any(part in _ALWAYS_SKIPPED for part in p.parts)
        ]
    skipped = _ignore_patterns(root)
    store = local_store_dir(project)
    found = []
    for name in names:
        path = root / name
        if not path.is_file() or any(part in _ALWAYS_SKIPPED for part in Path(name).parts):
            continue
        if store is not None and _inside(path, store):
            continue
        if any(_matches(name, pattern) for pattern in skipped):
            continue
        mode = 0o755 if os.access(path, os.X_OK) else 0o644
        found.append(ContextFile(f"project/{name}", mode, path=path))
    return found


def _git_files(root: Path) -> list[str] | None:
    try:
        proc = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=root,
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return sorted({n for n in proc.stdout.decode().split("\0") if n})


def _ignore_patterns(root: Path) -> list[str]:
    path = root / ".dockerignore"
    if not path.is_file():
        return []
    patterns = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")):
            patterns.append(line.strip("/"))
    return patterns


def _matches(name: str, pattern: str) -> bool:
    parts = name.split("/")
    return any(fnmatch("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1))


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder)
    except ValueError:
        return False
    return True


def local_store_dir(project: Project) -> Path | None:
    from mlopsctl.store import local_root

    if project.store_url.startswith("s3://"):
        return None
    return local_root(project.store_url, project.root).resolve()


def _mlopsctl_files() -> list[ContextFile]:
    """mlopsctl's source (with its templates) and its runtime dependencies."""
    from mlopsctl.templates import template_root

    files = []
    for path in sorted(_PACKAGE_DIR.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            rel = path.relative_to(_PACKAGE_DIR).as_posix()
            files.append(ContextFile(f"_mlopsctl/src/mlopsctl/{rel}", 0o644, path=path))
    templates = template_root()
    if not _inside(templates, _PACKAGE_DIR):  # a checkout: templates/ beside the package
        for path in sorted(templates.rglob("*")):
            if path.is_file():
                rel = path.relative_to(templates).as_posix()
                files.append(
                    ContextFile(f"_mlopsctl/src/mlopsctl/_templates/{rel}", 0o644, path=path)
                )
    requirements = "\n".join(_mlopsctl_requirements()) + "\n"
    files.append(ContextFile("_mlopsctl/requirements.txt", 0o644, data=requirements.encode()))
    return files


def _mlopsctl_requirements() -> list[str]:
    """mlopsctl's runtime dependencies: from pyproject.toml in a checkout (the installed
    metadata of an editable install can be older), else from the installed metadata."""
    pyproject = _PACKAGE_DIR.parent / "pyproject.toml"
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = None
    if tomllib is not None and pyproject.is_file():
        data = tomllib.loads(pyproject.read_text())
        if data.get("project", {}).get("name") == "mlopsctl":
            return [str(d) for d in data["project"].get("dependencies", [])]
    from importlib import metadata

    return [r for r in metadata.requires("mlopsctl") or [] if "extra ==" not in r]


# -- building -------------------------------------------------------------------------------


def build_image(
    project: Project,
    spec: Path,
    *,
    push: bool = False,
    network: str | None = None,
    log: Log | None = None,
    need_local: bool = False,
    allow_build: bool = True,
) -> dict[str, Any]:
    """Build (or find already built) the pipeline's image; push it with `push`. With
    `need_local`, an image found only in the registry is pulled; without `allow_build`, an
    image that would have to be built is a NotFound. Returns what happened."""
    from mlopsctl.containers import registry as oci
    from mlopsctl.containers.engine import DEFAULT_ENGINE, engines

    if push and not (project.registry or {}).get("url"):
        raise UsageError(
            "--push needs an image registry, and mlops.yaml has none",
            "add registry: {url: host:port} to mlops.yaml",
        )
    plan = plan_build(project, spec)
    engine = engines(project)[DEFAULT_ENGINE]
    client = engine.client()
    try:
        base_id = _resolve_base(client, plan.base, log)
        tag = content_tag(plan.content_digest(base_id))
        ref = f"{plan.repository}:{tag}"
        result: dict[str, Any] = {
            "image": plan.repository,
            "ref": ref,
            "content_tag": tag,
            "git_tag": plan.git_tag,
            "base": {"ref": plan.base, "id": base_id},
            "image_id": engine_image_id(client, ref),
            "built": False,
            "skipped": None,
            "pushed": False,
            "digest": None,
            "record": None,
        }
        registry_digest = None
        if result["image_id"]:
            result["skipped"] = "an image with this content tag is on the engine"
        elif project.registry and project.registry.get("url"):
            registry_digest = oci.manifest_digest(project.registry, plan.repository, tag)
            if registry_digest:
                result["skipped"] = "an image with this content tag is in the registry"
                result["digest"] = registry_digest
                if push or need_local:
                    result["image_id"] = pull_image(client, plan.repository, tag, log)
        if result["skipped"] is None:
            if not allow_build:
                raise NotFound(
                    f"the pipeline's image {ref} is not built yet",
                    "run 'mlopsctl build SPEC' first, or run without --dry-run (it builds it)",
                )
            labels = _labels(plan, tag)
            result["image_id"] = _run_build(client, plan, ref, labels, network, log)
            result["built"] = True
            result["labels"] = labels
        if plan.git_tag and result["image_id"]:
            client.tag(result["image_id"], plan.repository, plan.git_tag)
        result["tags"] = [t for t in (tag, plan.git_tag) if t]
        if push:
            oci.check_reachable(project.registry or {})
            digest = None
            for pushed in result["tags"]:
                digest = _push(client, plan.repository, pushed, log) or digest
                if pushed == tag:
                    result["digest"] = digest
            result["pushed"] = True
            result["record"] = _record_push(project, plan, result)
        return result
    finally:
        client.close()


def _resolve_base(client: docker.APIClient, base: str, log: Log | None) -> str:
    from docker.errors import ImageNotFound

    try:
        return str(client.inspect_image(base)["Id"])
    except ImageNotFound:
        pass
    from docker.utils import parse_repository_tag

    repo, tag = parse_repository_tag(base)
    problem = _pull_problem(client, repo, tag or "latest", log)
    try:
        return str(client.inspect_image(base)["Id"])
    except ImageNotFound:
        raise NotFound(
            f"base image {base} is not on the Docker engine and could not be pulled"
            + (f" ({problem})" if problem else ""),
            "build or pull it first (as root, bash scripts/testbed-docker.sh makes "
            "mlopsctl-base:bookworm and mlopsctl-base:deps), or set image.base in the "
            "pipeline spec or mlops.yaml",
        ) from None


def _pull_problem(client: docker.APIClient, repo: str, tag: str, log: Log | None) -> str | None:
    """Pull repo:tag; the error text when that failed, else None."""
    from docker.errors import APIError

    from mlopsctl.containers.engine import api_error_text

    try:
        for event in client.pull(repo, tag=tag, stream=True, decode=True):
            if "error" in event:
                return " ".join(str(event["error"]).split())[:300]
            if log and event.get("status") and "progress" not in event:
                log(f"{event.get('id', repo)}: {event['status']}\n")
    except APIError as exc:
        return api_error_text(exc)
    return None


def pull_image(client: docker.APIClient, repo: str, tag: str, log: Log | None) -> str:
    problem = _pull_problem(client, repo, tag, log)
    image_id = engine_image_id(client, f"{repo}:{tag}")
    if image_id is None:
        raise RegistryUnreachable(
            f"could not pull {repo}:{tag}" + (f": {problem}" if problem else ""),
            "is the registry running, and does the engine hold its credentials (docker login)?",
        )
    return image_id


def engine_image_id(client: docker.APIClient, ref: str) -> str | None:
    from docker.errors import ImageNotFound

    try:
        return str(client.inspect_image(ref)["Id"])
    except ImageNotFound:
        return None


def _labels(plan: BuildPlan, tag: str) -> dict[str, str]:
    from mlopsctl.runs import now_iso

    labels = {
        "org.opencontainers.image.title": f"{plan.project}/{plan.pipeline}",
        "org.opencontainers.image.created": now_iso(),
        "org.opencontainers.image.revision": plan.git.get("commit") or "",
        "org.opencontainers.image.source": plan.git.get("remote") or "",
        "org.opencontainers.image.base.name": plan.base,
        f"{LABEL}.version": __version__,
        f"{LABEL}.project": plan.project,
        f"{LABEL}.pipeline": plan.pipeline,
        f"{LABEL}.spec": plan.spec_display,
        f"{LABEL}.spec-digest": plan.spec_digest,
        f"{LABEL}.content-tag": tag,
        f"{LABEL}.git-dirty": str(bool(plan.git.get("dirty"))).lower(),
        f"{LABEL}.project-dir": IMAGE_PROJECT_DIR,
    }
    return {k: v for k, v in labels.items() if v}


def _run_build(
    client: docker.APIClient,
    plan: BuildPlan,
    ref: str,
    labels: dict[str, str],
    network: str | None,
    log: Log | None,
) -> str:
    from docker.errors import APIError

    from mlopsctl.containers.engine import api_error_text

    step, error = "", None
    tail: list[str] = []
    try:
        events: Iterator[dict[str, Any]] = client.build(
            fileobj=io.BytesIO(plan.tar(labels)),
            custom_context=True,
            tag=ref,
            rm=True,
            forcerm=True,
            pull=False,
            network_mode=network or DEFAULT_NETWORK,
            decode=True,
        )
        for event in events:
            text = event.get("stream")
            if text:
                if log:
                    log(text)
                for line in text.splitlines():
                    if line.startswith("Step "):
                        step, tail = line.strip(), []
                    elif line.strip():
                        tail = [*tail[-(_TAIL_LINES - 1) :], line.rstrip()]
            elif "error" in event:
                error = " ".join(str(event["error"]).split())
            elif log and event.get("status") and "progress" not in event:
                log(f"{event['status']}\n")
    except APIError as exc:
        error = api_error_text(exc)
    if error:
        where = f" at {step}" if step else ""
        raise BuildFailed(
            f"image build failed{where}: {error}",
            "the last lines of that build step are above; fix it and rebuild",
            tail=[step, *tail] if step else tail,
        )
    image_id = engine_image_id(client, ref)
    if image_id is None:  # the builder said nothing wrong, yet there is no image
        raise BuildFailed(f"image build of {ref} ended without an image", tail=tail)
    return image_id


def _push(client: docker.APIClient, repo: str, tag: str, log: Log | None) -> str | None:
    from docker.errors import APIError

    from mlopsctl.containers.engine import api_error_text

    digest, error = None, None
    try:
        for event in client.push(repo, tag=tag, stream=True, decode=True):
            if "error" in event:
                error = " ".join(str(event["error"]).split())
            elif "aux" in event and event["aux"].get("Digest"):
                digest = str(event["aux"]["Digest"])
            elif log and event.get("status") and "progress" not in event:
                log(f"{event.get('id', tag)}: {event['status']}\n")
    except APIError as exc:
        error = api_error_text(exc)
    if error:
        raise RegistryUnreachable(
            f"push of {repo}:{tag} failed: {error}",
            "is the registry running, and does the engine hold its credentials (docker login)?",
        )
    return digest


def _record_push(project: Project, plan: BuildPlan, result: dict[str, Any]) -> str:
    """images/<project>/<pipeline>/<content-tag>.json (put-if-absent) and an audit event."""
    from mlopsctl.config import open_project_store
    from mlopsctl.events import record_event
    from mlopsctl.provenance import who
    from mlopsctl.runs import now_iso

    key = f"{RECORDS}{plan.project}/{plan.pipeline}/{result['content_tag']}.json"
    record: ImageRecord = {
        "project": plan.project,
        "pipeline": plan.pipeline,
        "image": plan.repository,
        "content_tag": result["content_tag"],
        "tags": result["tags"],
        "digest": result["digest"],
        "image_id": result["image_id"],
        "base": result["base"],
        "spec": {"path": plan.spec_display, "digest": plan.spec_digest},
        "git": cast("GitInfo", plan.git),  # provenance builds both untyped
        "mlopsctl": __version__,
        "pushed": now_iso(),
        "by": cast("Actor", who(plan.project_root)),
    }
    with open_project_store(project) as store:
        try:
            store.put_if_absent(key, image_kind.to_json(record))
        except AlreadyExists:
            existing = image_kind.from_json(store.get(key))
            result["recorded_digest"] = existing.get("digest")
        record_event(
            store,
            "image.push",
            project=plan.project,
            pipeline=plan.pipeline,
            image=plan.repository,
            tags=result["tags"],
            digest=result["digest"],
            image_id=result["image_id"],
            commit=plan.git.get("commit"),
        )
    return key
