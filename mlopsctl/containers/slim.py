"""Assemble a self-contained root filesystem for a serving image; runs INSIDE the build stage
of templates/docker/Dockerfile.serving.tmpl, with the build base's Python, standard library
only (it is run by path, so the mlopsctl package and its dependencies are never imported).

    python3 slim.py REQUIREMENTS STAGE
    python3 slim.py compile SOURCE DEST STAGE   (one more tree, e.g. mlopsctl's source)

REQUIREMENTS holds pinned `name==version` lines: the distributions the model's runtime needs,
computed by mlopsctl from the environment that trained or registered it. Each distribution is
copied file by file (its RECORD) from the build base's environment when that holds the very
version (nothing is fetched), else installed with pip into a scratch folder first. Then the
interpreter, a pruned standard library and every shared library that the interpreter and the
copied extension modules link to (ldd) are copied, keeping their paths, so that the final
image can be `FROM scratch`. Tests folders, caches and build headers are left out; the copied
modules are compiled once (unchecked-hash .pyc), so no container start recompiles them.

The staged tree: STAGE/rootfs (becomes `/`), with packages in /opt/serve/site."""

from __future__ import annotations

import compileall
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

SITE = "opt/serve/site"
# Never needed at run time, and large: test suites, C headers and sources, type stubs.
_SKIP_DIRS = {"tests", "test", "testing_data", "__pycache__", "include", "benchmarks"}
_SKIP_SUFFIXES = (".pyc", ".pyx", ".pxd", ".pxi", ".c", ".cpp", ".h", ".hpp", ".pyi", ".a")
# Standard-library parts a server never imports.
_STDLIB_SKIP = {
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "pydoc_data",
    "site-packages",
    "dist-packages",
    "venv",
}
# numpy's own test helpers are imported at run time by scipy and scikit-learn: keep them.
_KEEP_TEST_DIRS = {"numpy/testing"}
# Parts of packages that a server never loads, by package folder and file-name prefix: pyarrow's
# Flight RPC, cloud filesystems and ORC (about 55 MB; `pyarrow.fs` imports its S3/GCS/Azure/HDFS
# modules only when present), and the API models of every AWS service but the ones the S3 store
# talks to (botocore reads one service's model when a client for it is made).
_PRUNE = {
    "pyarrow": (
        "_flight",
        "libarrow_flight",
        "libarrow_python_flight",
        "_s3fs",
        "libarrow_s3",
        "_gcsfs",
        "_azurefs",
        "_hdfs",
        "_orc",
        "_dataset_orc",
        "_pyarrow_cpp_tests",
    ),
}
_BOTOCORE_SERVICES = {"s3", "sts", "sso", "sso-oidc"}
_LINE = re.compile(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)")


def _skip(rel: str) -> bool:
    parts = rel.split("/")
    if len(parts) == 2 and parts[1].startswith(_PRUNE.get(parts[0], ())):
        return True
    if parts[:2] == ["botocore", "data"] and len(parts) > 3:
        return parts[2] not in _BOTOCORE_SERVICES
    if any(keep in rel for keep in _KEEP_TEST_DIRS):
        return rel.endswith(_SKIP_SUFFIXES) or "__pycache__" in parts
    return any(p in _SKIP_DIRS for p in parts[:-1]) or rel.endswith(_SKIP_SUFFIXES)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _installed(paths: list[str]) -> dict[str, metadata.Distribution]:
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions(path=paths):
        found.setdefault(_norm(dist.metadata["Name"]), dist)
    return found


def _copy_distribution(dist: metadata.Distribution, site: Path) -> int:
    """Copy the files a distribution installed (its RECORD), relative to its site folder."""
    copied = 0
    base = Path(str(dist.locate_file("")))
    for entry in dist.files or []:
        rel = entry.as_posix()
        if rel.startswith("..") or _skip(rel):
            continue  # scripts in bin/ and the like; and what _skip leaves out
        source = base / rel
        if not source.is_file():
            continue
        target = site / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        copied += 1
    return copied


def collect_packages(requirements: Path, site: Path) -> list[str]:
    pins = []
    for line in requirements.read_text().splitlines():
        match = _LINE.match(line)
        if match:
            pins.append((match.group(1), match.group(2)))
    here = _installed(sys.path)
    fetched = Path("/tmp/slim-fetch")
    report = []
    for name, version in pins:
        dist = here.get(_norm(name))
        origin = "reused"
        if dist is None or dist.version != version:
            target = fetched / _norm(name)
            proc = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--no-deps", "-q"]
                + ["--disable-pip-version-check", "--retries", "1", "--timeout", "30"]
                + ["--target", str(target), f"{name}=={version}"],
                check=False,
            )
            dist = _installed([str(target)]).get(_norm(name)) if proc.returncode == 0 else None
            origin = "fetched"
            # No stand-in (say, the CUDA build of xgboost for xgboost-cpu): the builder caches
            # this step whatever the network did, so a stand-in would stick to the content tag.
            if dist is None:
                sys.exit(
                    f"slim: {name}=={version} is not in the build base and could not be "
                    "fetched: build with the package index reachable (--network host), or use a "
                    "base that holds it"
                )
        count = _copy_distribution(dist, site)
        report.append(f"{name}=={version} ({origin}, {count} files)")
    return report


def dedupe(site: Path) -> int:
    """Wheels cannot hold symlinks, so a library's soname aliases arrive as full copies
    (pyarrow's libarrow_python.so three times over): keep one, link the others to it."""
    import hashlib

    first: dict[tuple[int, str], Path] = {}
    saved = 0
    for path in sorted(site.rglob("*.so*")):
        if path.is_symlink() or not path.is_file() or path.stat().st_size < 1 << 20:
            continue
        key = (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest())
        original = first.setdefault(key, path)
        if original != path and original.parent == path.parent:
            saved += path.stat().st_size
            path.unlink()
            path.symlink_to(original.name)
    return saved


def _mirror(path: str, root: Path, seen: set[str]) -> None:
    """Recreate `path` under `root` as it is here: symlinks as symlinks (followed and mirrored
    too), files copied."""
    path = os.path.normpath(path)
    if path in seen:
        return
    seen.add(path)
    parent = os.path.realpath(os.path.dirname(path))
    here = os.path.join(parent, os.path.basename(path))
    target = root / here.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.path.islink(here):
        link = os.readlink(here)
        if not target.is_symlink():
            target.symlink_to(link)
        _mirror(os.path.join(parent, link), root, seen)
    elif os.path.isfile(here) and not target.exists():
        shutil.copy2(here, target)


def _linked_libraries(files: list[str]) -> set[str]:
    libs: set[str] = set()
    for start in range(0, len(files), 200):
        proc = subprocess.run(
            ["ldd", *files[start : start + 200]], capture_output=True, text=True, check=False
        )
        for line in proc.stdout.splitlines():
            line = line.strip()
            if "=>" in line:
                target = line.split("=>", 1)[1].strip().split(" (", 1)[0].strip()
                if target.startswith("/"):
                    libs.add(target)
            elif line.startswith("/") and " (" in line:
                libs.add(line.split(" (", 1)[0])  # the dynamic loader itself
    return libs


def collect_runtime(rootfs: Path) -> None:
    seen: set[str] = set()
    # The merged-/usr links (/lib -> usr/lib, ...) first, so library paths resolve alike.
    for top in ("bin", "lib", "lib64", "sbin"):
        if os.path.islink(f"/{top}"):
            (rootfs / top).symlink_to(os.readlink(f"/{top}"))
    executable = os.path.realpath(sys.executable)
    _mirror(executable, rootfs, seen)
    bindir = rootfs / os.path.dirname(executable).lstrip("/")
    for alias in ("python3", "python"):
        if not (bindir / alias).exists():
            (bindir / alias).symlink_to(os.path.basename(executable))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    shutil.copytree(
        stdlib,
        rootfs / str(stdlib).lstrip("/"),
        symlinks=True,
        ignore=lambda d, names: [n for n in names if n in _STDLIB_SKIP or n.startswith("config-")],
        dirs_exist_ok=True,
    )
    binaries = [executable]
    for folder in (rootfs / str(stdlib).lstrip("/"), rootfs / SITE):
        binaries += [str(p) for p in folder.rglob("*.so*") if p.is_file()]
    staged = str(rootfs)
    for lib in sorted(_linked_libraries(binaries)):
        if not lib.startswith(staged):
            _mirror(lib, rootfs, seen)
    certs = "/etc/ssl/certs/ca-certificates.crt"
    if os.path.isfile(certs):
        _mirror(certs, rootfs, seen)
    # The time-zone database: pyarrow and pandas read it for any zone, UTC included.
    zoneinfo = "/usr/share/zoneinfo"
    if os.path.isdir(zoneinfo):
        shutil.copytree(zoneinfo, rootfs / zoneinfo.lstrip("/"), symlinks=True, dirs_exist_ok=True)
    if os.path.lexists("/etc/localtime"):
        _mirror("/etc/localtime", rootfs, seen)
    etc = rootfs / "etc"
    etc.mkdir(exist_ok=True)
    (etc / "passwd").write_text("root:x:0:0:root:/root:/sbin/nologin\n")
    (etc / "group").write_text("root:x:0:\n")
    for name, mode in (("tmp", 0o1777), ("root", 0o700)):
        (rootfs / name).mkdir(exist_ok=True)
        (rootfs / name).chmod(mode)


def compile_tree(rootfs: Path) -> None:
    """Byte-compile everything staged, with the paths it will have in the image, as
    unchecked-hash .pyc: valid whatever the file times, and never rewritten."""
    import py_compile

    compileall.compile_dir(
        str(rootfs),
        quiet=2,
        workers=0,
        stripdir=str(rootfs),
        prependdir="/",
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )


def main(argv: list[str]) -> None:
    if argv and argv[0] == "compile":  # compile SOURCE DEST STAGE: one more tree, compiled
        staged = Path(argv[3]) / "rootfs"
        shutil.copytree(argv[1], staged / argv[2].lstrip("/"), dirs_exist_ok=True)
        compile_tree(staged)
        return
    requirements, stage = Path(argv[0]), Path(argv[1])
    rootfs = stage / "rootfs"
    site = rootfs / SITE
    site.mkdir(parents=True, exist_ok=True)
    for line in collect_packages(requirements, site):
        print(f"slim: {line}")
    print(f"slim: {dedupe(site) >> 20} MB of duplicate libraries linked")
    collect_runtime(rootfs)
    compile_tree(rootfs)
    print(f"slim: staged {sum(1 for _ in rootfs.rglob('*'))} paths")


if __name__ == "__main__":
    main(sys.argv[1:])
