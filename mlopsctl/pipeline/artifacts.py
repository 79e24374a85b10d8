"""Step outputs as blobs: a file is stored as it is; a folder as a deterministic tar (sorted
names, zeroed times and owners) so the same content always has the same digest."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import IntegrityError, MlopsError

if TYPE_CHECKING:
    from mlopsctl.store.base import ObjectStore


def pack_dir(folder: Path, dest: Path) -> None:
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(folder.rglob("*")):
            rel = path.relative_to(folder).as_posix()
            info = tar.gettarinfo(str(path), arcname=rel)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.pax_headers = {}
            if info.isdir():
                info.mode = 0o755
                tar.addfile(info)
            elif info.isfile():
                info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
                with path.open("rb") as handle:
                    tar.addfile(info, handle)
            else:
                raise MlopsError(
                    f"output folder {folder} holds {rel}, which is neither a file nor a folder",
                    "write only plain files and folders into step outputs",
                )


def unpack_dir(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r") as tar:
        members = tar.getmembers()
        root = dest.resolve()
        for member in members:
            target = (root / member.name).resolve()
            if not (member.isfile() or member.isdir()) or not str(target).startswith(str(root)):
                raise IntegrityError(
                    f"artifact {archive.name} holds an unsafe entry {member.name!r}",
                    "the blob was not written by mlopsctl; do not use it",
                )
        tar.extractall(dest, members=members)


def store_output(store: ObjectStore, path: Path, workdir: Path) -> dict[str, Any]:
    """Upload one output (file or folder) as a blob; returns its reference."""
    from mlopsctl.store.blobs import put_blob_file

    if path.is_dir():
        archive = workdir / f".{path.name}.tar"
        pack_dir(path, archive)
        try:
            digest = put_blob_file(store, archive)
            size = archive.stat().st_size
        finally:
            archive.unlink(missing_ok=True)
        return {"digest": digest, "kind": "dir", "size": size}
    return {"digest": put_blob_file(store, path), "kind": "file", "size": path.stat().st_size}


def fetch_artifact(store: ObjectStore, ref: dict[str, Any], dest: Path) -> Path:
    """Download (verified) into dest: a file, or a folder for a dir artifact."""
    from mlopsctl.store.blobs import get_blob_file

    if ref.get("kind") == "dir":
        archive = dest.with_name(f".{dest.name}.tar")
        get_blob_file(store, ref["digest"], archive)
        try:
            unpack_dir(archive, dest)
        finally:
            archive.unlink(missing_ok=True)
        return dest
    get_blob_file(store, ref["digest"], dest)
    return dest
