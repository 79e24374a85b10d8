"""mlopsctl: a serverless MLOps toolchain (git + an object store + Docker)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlopsctl.models.artifact import LoadedModel

__version__ = "0.1.0"


def load_model(ref: str, *, trust_pickle: bool = False) -> LoadedModel:
    """Load a registered model, e.g. ``mlopsctl.load_model("churn@production")``, from the
    current project's store. The artifact is verified by digest before anything is
    deserialised; returns an object with ``predict(df)`` and ``predict_proba(df)``."""
    from mlopsctl.registry import load_model as _load

    return _load(ref, trust_pickle=trust_pickle)
