"""`mlopsctl site build`: the store as a static HTML site, rebuilt incrementally.

The output folder keeps ``manifest.json``: every page with the digest of the inputs that made
it, and the summary and signature (size, etag, modification time) of every record read. A
build lists the store once, reads only the records whose signature changed, and renders and
writes only the pages whose inputs' digest changed (or whose file is gone); pages of records
no longer in the store are removed. Nothing outside the pages it made is ever deleted."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mlopsctl.errors import UsageError
from mlopsctl.timeutil import stamp

if TYPE_CHECKING:
    from mlopsctl.site.pages import Page
    from mlopsctl.site.snapshot import Snapshot
    from mlopsctl.store.base import ObjectStore

MANIFEST = "manifest.json"
FORMAT = 2  # 2: run summaries name their executed notebooks
# Part of every page's digest: bump it when the rendering changes, so every page is rebuilt.
RENDER_VERSION = "site-1"
TOOL = "mlopsctl site"


def _threads(store: ObjectStore, workers: int | None, jobs: int) -> int:
    """Threads to read and render with: one for a local folder, `workers` (default 8) for a
    remote store, where they overlap the requests' latency."""
    if workers is None:
        workers = 1 if getattr(store, "scheme", "") == "file" else 8
    return max(1, min(workers, jobs))


# Pages a child process renders, set just before the fork (children inherit it).
_JOB: tuple[list[Page], Callable[[Page], None]] | None = None
_PROCESS_MIN_PAGES = 2000  # fewer pages are rendered faster than processes start


def _processes(store: ObjectStore, workers: int | None, jobs: int) -> int:
    """Processes to render a big build of a local store with (one per core, at most 8)."""
    if workers is not None or getattr(store, "scheme", "") != "file":
        return 1
    if jobs < _PROCESS_MIN_PAGES or not hasattr(os, "fork"):
        return 1
    return max(1, min(8, os.cpu_count() or 1))


def _render_part(part: tuple[int, int]) -> int:
    assert _JOB is not None
    pages, write = _JOB
    index, count = part
    mine = pages[index::count]
    for page in mine:
        write(page)
    return len(mine)


def _render_in_processes(pages: list[Page], write: Callable[[Page], None], count: int) -> None:
    """Render `pages` in `count` forked processes, each a share of them (rendering is CPU
    bound; a local store's reads are files)."""
    import multiprocessing

    global _JOB
    _JOB = (pages, write)
    try:
        with multiprocessing.get_context("fork").Pool(count) as pool:
            done = sum(pool.map(_render_part, [(i, count) for i in range(count)]))
    finally:
        _JOB = None
    assert done == len(pages)


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    tmp = out / f".{MANIFEST}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, separators=(",", ":"), default=str), encoding="utf-8")
    os.replace(tmp, out / MANIFEST)


def digest_inputs(path: str, inputs: Any) -> str:
    """The digest of what a page is made from. Inputs are plain data (dicts, lists, strings,
    numbers) built in a fixed order, so their repr is a faithful, fast serialization."""
    text = repr((RENDER_VERSION, path, inputs))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _files(root: str) -> set[str]:
    """Every file under `root`, as '/'-separated paths relative to it (no stat per file)."""
    found: set[str] = set()
    todo = [("", root)]
    while todo:
        prefix, folder = todo.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                todo.append((f"{prefix}{entry.name}/", entry.path))
            elif entry.is_file(follow_symlinks=False):
                found.add(prefix + entry.name)
    return found


def _check_output(out: Path) -> dict[str, Any]:
    """The previous manifest of `out` ({} for a new or empty folder); UsageError for a path
    that is a file, or a folder with other things in it and no manifest of ours."""
    if out.exists() and not out.is_dir():
        raise UsageError(
            f"-o {out} is a file, not a folder",
            "give a folder for the site (it is created when missing), e.g. -o site",
        )
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        if isinstance(data, dict) and data.get("tool") == TOOL and data.get("format") == FORMAT:
            return data
        if not isinstance(data, dict) or data.get("tool") != TOOL:
            raise UsageError(
                f"{manifest} is not a site manifest written by mlopsctl",
                "pick an empty or new folder for the site",
            )
        return {}  # an older format: rebuild every page
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(
            f"-o {out} is a folder with other files and no site built by mlopsctl in it",
            "pick an empty or new folder (the site builder replaces files in its folder)",
        )
    return {}


def build_site(
    store: ObjectStore, out: str | Path, *, base_dir: Path | None = None, workers: int | None = None
) -> dict[str, Any]:
    """Build or update the site in `out`; returns what was done (counts and seconds)."""
    from mlopsctl.site.pages import Site
    from mlopsctl.site.snapshot import Reads, take

    started = time.perf_counter()
    out = Path(out)
    previous = _check_output(out)
    if previous and previous.get("store") != getattr(store, "url", None):
        # Another store: its records' signatures mean nothing here, rebuild every page (the
        # old pages stay listed, so those the new store has no page for are removed).
        previous = {"pages": {p: "" for p in previous.get("pages") or {}}}
    old_pages: dict[str, str] = dict(previous.get("pages") or {})
    if not previous:  # claim the folder first: a build that fails midway can be rerun
        out.mkdir(parents=True, exist_ok=True)
        _write_manifest(out, {"tool": TOOL, "format": FORMAT, "pages": {}, "records": {}})
    snap = take(store, dict(previous.get("records") or {}), _threads(store, workers, 16))
    site = Site(snap, base_dir=base_dir)
    pages = site.pages()
    present = _files(str(out))
    digests: dict[str, str] = {}
    stale: list[Page] = []
    for page in pages:
        if page.path in digests:
            continue  # two names with the same file name: the first one wins
        digest = digest_inputs(page.path, page.inputs)
        digests[page.path] = digest
        if old_pages.get(page.path) != digest or page.path not in present:
            stale.append(page)
    out.mkdir(parents=True, exist_ok=True)
    folders: set[str] = set()
    reads = cast("ObjectStore", Reads(store, snap.full))
    root = str(out)

    def write(page: Page) -> None:
        content = page.render(reads)
        target = os.path.join(root, page.path)
        folder = os.path.dirname(target)
        if folder not in folders:
            os.makedirs(folder, exist_ok=True)
            folders.add(folder)
        data = content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass")
        with open(target, "wb") as handle:
            handle.write(data)

    threads = _threads(store, workers, len(stale))
    processes = _processes(store, workers, len(stale))
    if processes > 1:
        _render_in_processes(stale, write, processes)
    elif threads > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for _ in pool.map(write, stale):
                pass
    else:  # a local folder: reads are fast, and threads only contend for the GIL
        for page in stale:
            write(page)
    removed = 0
    for path in sorted(set(old_pages) - set(digests)):
        target = out / path
        if target.is_file():
            target.unlink()
            removed += 1
    if (
        not stale
        and not removed
        and not snap.read
        and set(snap.records) == set(previous.get("records") or {})
    ):
        return _result(out, digests, stale, removed, snap, started)  # nothing changed
    manifest = {
        "tool": TOOL,
        "format": FORMAT,
        "built": stamp(),
        "store": getattr(store, "url", None),
        "pages": digests,
        "records": snap.records,
    }
    _write_manifest(out, manifest)
    return _result(out, digests, stale, removed, snap, started)


def _result(
    out: Path,
    digests: dict[str, str],
    stale: list[Page],
    removed: int,
    snap: Snapshot,
    started: float,
) -> dict[str, Any]:
    return {
        "output": str(out),
        "pages": len(digests),
        "written": len(stale),
        "unchanged": len(digests) - len(stale),
        "removed": removed,
        "records": len(snap.records),
        "records_read": snap.read,
        "runs": len(snap.runs),
        "versions": len(snap.versions),
        "events": len(snap.events),
        "seconds": round(time.perf_counter() - started, 3),
        "written_pages": sorted(p.path for p in stale),
    }
