"""Locate the files under the repository's templates/ folder, wherever mlopsctl is installed.

A wheel carries them as mlopsctl/_templates (pyproject force-include); an editable or source
checkout reads the top-level templates/ folder directly."""

from __future__ import annotations

from pathlib import Path

from mlopsctl.errors import MlopsError

_PACKAGE_DIR = Path(__file__).resolve().parent


def template_root() -> Path:
    for candidate in (_PACKAGE_DIR / "_templates", _PACKAGE_DIR.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise MlopsError(
        "mlopsctl's templates folder is missing from this installation",
        "reinstall mlopsctl (pip install --force-reinstall mlopsctl)",
    )


def render(text: str, values: dict[str, str]) -> str:
    """Fill {{key}} placeholders; a deliberately tiny syntax so templates stay plain files."""
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text
