"""Choosing a store backend by URL scheme: backends are registered as "module:Class" strings
and imported on first use, so opening a local store never pulls in boto3."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from mlopsctl.errors import ConfigError
from mlopsctl.store.base import ObjectStore

BACKENDS: dict[str, str] = {
    "file": "mlopsctl.store.local:LocalStore",
    "s3": "mlopsctl.store.s3:S3Store",
}

S3_OPTIONS = ("endpoint_url", "region", "profile", "addressing_style")
_CREDENTIAL_OPTIONS = {
    "access_key",
    "access_key_id",
    "aws_access_key_id",
    "secret_key",
    "secret_access_key",
    "aws_secret_access_key",
    "session_token",
    "aws_session_token",
}
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def _backend(scheme: str) -> type[ObjectStore]:
    module_name, _, class_name = BACKENDS[scheme].partition(":")
    module = importlib.import_module(module_name)
    cls: type[ObjectStore] = getattr(module, class_name)
    return cls


def _known() -> str:
    return ", ".join(f"{scheme}://" for scheme in sorted(BACKENDS)) + ", or a plain folder path"


def local_root(url: str, base_dir: str | Path | None) -> Path:
    if url.startswith("file://"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            # file://relative/dir is a common slip for file:///abs or a plain path.
            path = Path(unquote(parts.netloc + parts.path))
        else:
            path = Path(unquote(parts.path))
    else:
        path = Path(url).expanduser()
    if not path.is_absolute():
        path = Path(base_dir if base_dir is not None else Path.cwd()) / path
    return path


def _check_s3_options(options: dict[str, Any]) -> dict[str, Any]:
    given = {k: v for k, v in options.items() if v is not None}
    creds = sorted(set(given) & _CREDENTIAL_OPTIONS)
    if creds:
        raise ConfigError(
            f"store.s3 must not hold credentials ({', '.join(creds)})",
            hint="remove them from mlops.yaml and use AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE or ~/.aws/credentials",
        )
    unknown = sorted(set(given) - set(S3_OPTIONS))
    if unknown:
        raise ConfigError(
            f"unknown store.s3 option{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
            hint=f"known options: {', '.join(S3_OPTIONS)}",
        )
    for name, value in given.items():
        if not isinstance(value, str):
            raise ConfigError(f"store.s3.{name} must be a string, not {type(value).__name__}")
    return given


def open_store(
    url: str,
    *,
    s3_options: dict[str, Any] | None = None,
    base_dir: str | Path | None = None,
) -> ObjectStore:
    """The store at ``url``: a folder path (relative to ``base_dir``, default the current
    directory), ``file://...`` or ``s3://bucket/prefix``. ConfigError for anything else."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("the store URL is empty", hint=f"use {_known()}")
    url = url.strip()
    match = _SCHEME_RE.match(url)
    scheme = match.group(1).lower() if match else "file"
    if scheme not in BACKENDS:
        raise ConfigError(f"unknown store scheme {scheme}:// in {url!r}", hint=f"use {_known()}")
    if scheme == "file":
        root = local_root(url, base_dir)
        local: Any = _backend("file")
        store: ObjectStore = local(root)
        return store
    options = _check_s3_options(s3_options or {})
    return _backend(scheme)(url, **options)
