"""Parts shared by several records: who did something, on which host, from which commit, and a
stored output. Their JSON Schemas are the ``$defs`` of ``common.schema.json``."""

from __future__ import annotations

from typing import TypedDict


class Actor(TypedDict):
    """A person or CI actor (mlopsctl.provenance.who): ``source`` is git, os or a CI system."""

    name: str
    source: str


class Host(TypedDict):
    """The machine something ran on (mlopsctl.provenance.where)."""

    host: str
    platform: str
    python: str
    ci: bool


class GitInfo(TypedDict, total=False):
    """The project's commit (mlopsctl.provenance.git_info); empty outside a repository."""

    commit: str | None
    branch: str | None
    dirty: bool
    remote: str | None


class OutputRef(TypedDict):
    """A step output stored as a blob: a file, or a folder stored as a tar."""

    digest: str
    kind: str  # "file" or "dir"
    size: int


class SpecRef(TypedDict):
    """A spec file as the project names it, and the digest of its content."""

    path: str
    digest: str
