"""A model archive (a folder blob) is unpacked only when every member is a plain file or folder
with a relative name that stays inside the destination. Crafted archives, stored as real blobs
in a real store and pointed at by a version record, are refused by `models download` and by
the verified cache that loading and serving use: one line naming the member, nothing written
outside, nothing left in the destination. With and without tarfile's "data" filter (Python
before 3.10.12/3.11.4 lacks it), the same."""

from __future__ import annotations

import io
import json
import re
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlopsctl.errors import IntegrityError
from mlopsctl.store.local import LocalStore

from .conftest import Invoke

MODEL_JSON = json.dumps({"format": "mlopsctl-model/v1", "files": {}}).encode()


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", **extra: str) -> tuple:
    return name, kind, data, extra


def archive(*members: tuple) -> bytes:
    """A tar with model.json first and then `members`, written as they are named."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data, extra in (member("model.json", data=MODEL_JSON), *members):
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = 0o644
            for key, value in extra.items():
                setattr(info, key, value)
            if kind == tarfile.REGTYPE:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buffer.getvalue()


# Each crafted archive, by what it tries; the member the refusal must name.
CRAFTED: dict[str, Callable[[Path], tuple[bytes, str]]] = {
    # The containment check was a string-prefix test: '/t/.x.partial-outside' starts with
    # '/t/.x.partial', the folder `models download` unpacks into before renaming it.
    "prefix-sibling": lambda t: (
        archive(member("../.x.partial-outside/f")),
        "../.x.partial-outside/f",
    ),
    "dotdot": lambda t: (archive(member("../escaped.txt")), "../escaped.txt"),
    "dotdot-inside": lambda t: (archive(member("sub/../../escaped.txt")), "sub/../../escaped.txt"),
    "absolute": lambda t: (
        archive(member(str(t / "absolute.txt"))),
        str(t / "absolute.txt"),
    ),
    "symlink-out": lambda t: (
        archive(member("link", tarfile.SYMTYPE, linkname=str(t))),
        "link",
    ),
    "symlink-in": lambda t: (
        archive(
            member("weights.bin"), member("alias.bin", tarfile.SYMTYPE, linkname="weights.bin")
        ),
        "alias.bin",
    ),
    "symlink-then-write": lambda t: (
        archive(member("dir", tarfile.SYMTYPE, linkname=".."), member("dir/escaped.txt")),
        "dir",
    ),
    "hardlink": lambda t: (
        archive(member("hard", tarfile.LNKTYPE, linkname="/etc/passwd")),
        "hard",
    ),
    "hardlink-in": lambda t: (
        archive(member("weights.bin"), member("hard.bin", tarfile.LNKTYPE, linkname="weights.bin")),
        "hard.bin",
    ),
    "char-device": lambda t: (archive(member("tty", tarfile.CHRTYPE)), "tty"),
    "block-device": lambda t: (archive(member("disk", tarfile.BLKTYPE)), "disk"),
    "fifo": lambda t: (archive(member("pipe", tarfile.FIFOTYPE)), "pipe"),
}


@pytest.fixture(params=["data-filter", "no-data-filter"])
def filter_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "no-data-filter":
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    elif not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no tarfile data filter")
    return str(request.param)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, LocalStore]]:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "mlops.yaml").write_text(
        "apiVersion: mlopsctl/v1\nkind: Project\nname: proj\nstore: {url: .mlops}\n"
    )
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with LocalStore(root / ".mlops") as store:
        yield root, store


def register_blob(store: LocalStore, data: bytes, name: str = "evil") -> None:
    from mlopsctl.registry import register_version
    from mlopsctl.store.blobs import put_blob_bytes

    digest = put_blob_bytes(store, data)
    register_version(
        store, name, {"artifact": {"digest": digest, "kind": "dir", "size": len(data)}}
    )


def files_under(folder: Path, skip: str = "cache") -> set[str]:
    """Paths below `folder`, the per-user cache (XDG_CACHE_HOME, checked on its own) left out."""
    found = {str(p.relative_to(folder)) for p in folder.rglob("*")}
    return {p for p in found if p != skip and not p.startswith(f"{skip}/")}


@pytest.mark.parametrize("case", list(CRAFTED))
def test_download_refuses_a_crafted_archive(
    cli: Invoke, project: tuple[Path, LocalStore], filter_mode: str, case: str
) -> None:
    root, store = project
    outside = root.parent
    data, bad_member = CRAFTED[case](outside)
    register_blob(store, data)
    before = files_under(outside)

    result = cli("models", "download", "evil:1", str(outside / "x"), cwd=root)
    assert result.exit_code == 1, (result.stdout, result.stderr)
    assert repr(bad_member) in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "internal error" not in result.stderr
    # Nothing written outside, no destination, no staging folder or archive left behind.
    assert files_under(outside) == before
    assert not (outside / "x").exists()


@pytest.mark.parametrize("case", list(CRAFTED))
def test_the_model_cache_refuses_a_crafted_archive(
    project: tuple[Path, LocalStore], filter_mode: str, case: str, tmp_path: Path
) -> None:
    from mlopsctl.registry import cached_model_dir, get_version

    root, store = project
    data, bad_member = CRAFTED[case](root.parent)
    register_blob(store, data)
    before = files_under(root.parent)
    with pytest.raises(IntegrityError, match=re.escape(repr(bad_member))):
        cached_model_dir(store, get_version(store, "evil", 1))
    cache = tmp_path / "cache" / "mlopsctl" / "models"
    assert not cache.exists() or list(cache.iterdir()) == []  # no copy, no staging folder
    assert files_under(tmp_path) == before


def test_unpack_leaves_an_existing_folder_as_it_was(tmp_path: Path, filter_mode: str) -> None:
    """The pipeline fetches inputs with the same code: a refused archive adds nothing."""
    from mlopsctl.store.artifacts import unpack_dir

    dest = tmp_path / "inputs"
    dest.mkdir()
    (dest / "kept.txt").write_text("kept")
    blob = tmp_path / "blob.tar"
    blob.write_bytes(archive(member("a.txt"), member("../escaped.txt")))
    with pytest.raises(IntegrityError, match=re.escape("'../escaped.txt'")):
        unpack_dir(blob, dest)
    assert files_under(dest) == {"kept.txt"}
    assert not (tmp_path / "escaped.txt").exists()

    fresh = tmp_path / "fresh"
    with pytest.raises(IntegrityError):
        unpack_dir(blob, fresh)
    assert not fresh.exists()


def test_a_plain_archive_still_unpacks(
    cli: Invoke, project: tuple[Path, LocalStore], filter_mode: str
) -> None:
    root, store = project
    register_blob(
        store,
        archive(member("sub", tarfile.DIRTYPE, b""), member("sub/w.bin", data=b"weights")),
    )
    result = cli("models", "download", "evil:1", str(root.parent / "got"), cwd=root)
    assert result.exit_code == 0, result.stderr
    got = root.parent / "got"
    assert files_under(got) == {"model.json", "sub", "sub/w.bin"}
    assert (got / "sub" / "w.bin").read_bytes() == b"weights"
    assert (got / "model.json").read_bytes() == MODEL_JSON
