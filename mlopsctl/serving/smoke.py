"""``python -m mlopsctl.serving.smoke DIR [--trust]``: load a model folder and predict one row
made up from its training profile; exit 0 when both work, 1 (with one line on stderr)
otherwise. ``--trust`` allows a pickle-flavoured model, as `mlopsctl serve --trust` does.

The server runs this in a separate process before it loads a new version itself: a damaged
artifact that passes its digest check can still crash a deserialiser or the native library
behind it, and that must cost a child process, never the server.
"""

from __future__ import annotations

import sys
from typing import Any


def synthetic_row(meta: dict[str, Any]) -> dict[str, Any]:
    """One plausible input: the training median of each numeric feature, the most frequent
    category of each categorical one."""
    profiles = (meta.get("profile") or {}).get("features") or {}
    row: dict[str, Any] = {}
    for feature in meta.get("features") or []:
        name = feature["name"]
        profile = profiles.get(name) or {}
        if feature.get("kind") == "numeric":
            quantiles = profile.get("quantiles") or []
            row[name] = float(quantiles[len(quantiles) // 2]) if quantiles else 0.0
        else:
            frequencies = {
                k: v for k, v in (profile.get("frequencies") or {}).items() if k != "__other__"
            }
            row[name] = max(frequencies, key=lambda k: frequencies[k]) if frequencies else ""
    return row


def smoke(folder: str, *, trust_pickle: bool = False) -> None:
    import numpy as np
    import pandas as pd

    from mlopsctl.models.artifact import load_model_dir
    from mlopsctl.serving.predictor import Predictor

    model = load_model_dir(folder, trust_pickle=trust_pickle)
    frame = pd.DataFrame([synthetic_row(model.meta)])
    expected = model.predict(frame)
    predictor = Predictor(model, "smoke", 0)
    if predictor.numeric:
        got = predictor.predict_matrix(frame[predictor.names].to_numpy(dtype="float64"))
        if not np.array_equal(np.asarray(got.labels), np.asarray(expected)):
            raise RuntimeError("the fast path and the model disagree on the smoke row")
    if model.has_proba:
        model.predict_proba(frame)


def main(argv: list[str]) -> int:
    trust = "--trust" in argv
    args = [a for a in argv if a != "--trust"]
    if len(args) != 1:
        sys.stderr.write("usage: python -m mlopsctl.serving.smoke MODEL_DIR [--trust]\n")
        return 2
    try:
        smoke(args[0], trust_pickle=trust)
    except Exception as exc:  # noqa: BLE001 - any failure means: do not serve this model
        sys.stderr.write(f"smoke load failed: {type(exc).__name__}: {' '.join(str(exc).split())}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
