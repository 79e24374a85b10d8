"""Files and folders as blobs (step outputs, model folders): a file is stored as it is; a folder
as a deterministic tar (sorted names, zeroed times and owners) so the same content always has the
same digest."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import IntegrityError, MlopsError

if TYPE_CHECKING:
    from collections.abc import Mapping

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
    """Unpack a folder blob into `dest`. Every member must be a plain file or folder whose
    relative name stays inside `dest`: a link (symbolic or hard), a device, a fifo, an absolute
    name or '..' is refused in one line naming it, before anything is written, and a folder
    this call made is removed again. tarfile's "data" filter guards the extraction as well where
    Python has it (3.10.12+, 3.11.4+); older ones write the checked members here instead."""
    import shutil

    made = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r") as tar:
            members = tar.getmembers()
            root = dest.resolve()
            for member in members:
                why = _unsafe_member(member, root)
                if why:
                    raise IntegrityError(
                        f"the archive holds {member.name!r}, {why}",
                        "the blob was not written by mlopsctl; do not use it",
                    )
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:
                _extract_checked(tar, members, root)
    except BaseException as exc:
        if made:
            shutil.rmtree(dest, ignore_errors=True)
        if isinstance(exc, tarfile.TarError):
            raise IntegrityError(
                f"artifact {archive.name} cannot be unpacked: {exc}",
                "the blob was not written by mlopsctl; do not use it",
            ) from None
        raise


def _unsafe_member(member: tarfile.TarInfo, root: Path) -> str | None:
    """Why `member` may not be unpacked into `root` (resolved), or None when it may."""
    from pathlib import PurePosixPath

    kinds = (
        (member.issym(), "a symbolic link"),
        (member.islnk(), "a hard link"),
        (member.ischr() or member.isblk(), "a device file"),
        (member.isfifo(), "a fifo"),
        (not (member.isreg() or member.isdir()), "neither a file nor a folder"),
    )
    for refused, what in kinds:
        if refused:
            return what
    name = member.name
    if not name or "\0" in name:
        return "an empty or invalid name"
    if PurePosixPath(name).is_absolute() or os.path.isabs(name):
        return "an absolute name"
    if ".." in PurePosixPath(name).parts or ".." in name.split(os.sep):
        return "a name with '..'"
    target = (root / name).resolve()
    if not target.is_relative_to(root) or (target == root and not member.isdir()):
        return "a name that leads outside the folder"
    return None


def _extract_checked(tar: tarfile.TarFile, members: list[tarfile.TarInfo], root: Path) -> None:
    """Write members that passed _unsafe_member: folders made, files created without following
    a link, modes reduced to 0755/0644, owners and times not applied."""
    import shutil

    for member in members:
        target = root / member.name
        if member.isdir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        source = tar.extractfile(member)
        if source is None:
            raise IntegrityError(f"the archive's member {member.name!r} cannot be read")
        mode = 0o755 if member.mode & 0o100 else 0o644
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        with source, os.fdopen(os.open(target, flags, mode), "wb") as handle:
            shutil.copyfileobj(source, handle)


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


def fetch_artifact(store: ObjectStore, ref: Mapping[str, Any], dest: Path) -> Path:
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
