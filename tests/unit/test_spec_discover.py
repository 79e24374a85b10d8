"""find_specs: which files `mlopsctl validate` looks at."""

from __future__ import annotations

from pathlib import Path

from mlopsctl.spec import find_specs

SPEC = "apiVersion: mlopsctl/v1\nkind: Pipeline\n"


def make(root: Path, relative: str, text: str = SPEC) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def names(root: Path, found: list[Path]) -> list[str]:
    return [p.relative_to(root).as_posix() for p in found]


def test_finds_mlopsctl_specs_sorted(tmp_path: Path) -> None:
    make(tmp_path, "specs/train.yaml")
    make(tmp_path, "mlops.yaml")
    make(tmp_path, "specs/a/release.yml", '# header\napiVersion: "mlopsctl/v2"\n')
    make(tmp_path, "k8s/deploy.yaml", "apiVersion: apps/v1\nkind: Deployment\n")
    make(tmp_path, "data/values.yaml", "rows:\n  - apiVersion: mlopsctl/v1\n")
    make(tmp_path, "notes.txt", SPEC)
    assert names(tmp_path, find_specs(tmp_path)) == [
        "mlops.yaml",
        "specs/a/release.yml",
        "specs/train.yaml",
    ]


def test_skips_tool_folders(tmp_path: Path) -> None:
    for folder in (".git", ".mlops", ".venv", "venv", "node_modules", "__pycache__"):
        make(tmp_path, f"{folder}/spec.yaml")
        make(tmp_path, f"sub/{folder}/spec.yaml")
    make(tmp_path, "sub/ok.yaml")
    assert names(tmp_path, find_specs(tmp_path)) == ["sub/ok.yaml"]


def test_exclude_globs_match_root_relative_paths(tmp_path: Path) -> None:
    make(tmp_path, "specs/examples/invalid/bad.yaml")
    make(tmp_path, "specs/examples/good.yaml")
    make(tmp_path, "vendor/lib/spec.yaml")
    make(tmp_path, "tmp-spec.yaml")
    found = find_specs(tmp_path, ["specs/examples/invalid/*", "vendor/", "tmp-*"])
    assert names(tmp_path, found) == ["specs/examples/good.yaml"]


def test_symlinked_folders_are_not_followed(tmp_path: Path) -> None:
    make(tmp_path, "real/spec.yaml")
    (tmp_path / "real" / "loop").symlink_to(tmp_path, target_is_directory=True)
    assert names(tmp_path, find_specs(tmp_path)) == ["real/spec.yaml"]


def test_missing_root_finds_nothing(tmp_path: Path) -> None:
    assert find_specs(tmp_path / "absent") == []
