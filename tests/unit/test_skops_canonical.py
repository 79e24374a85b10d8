"""A model saved twice is byte for byte the same file: skops' ids and zip times are
normalised, so the step cache and the registry can tell that a retrained model is unchanged."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile

SAVE = """
import sys
import numpy as np
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.linear_model import LogisticRegression
import skops.io as sio
from mlopsctl.models.artifact import canonical_skops

rng = np.random.default_rng(0)
X, y = rng.normal(size=(50, 3)), np.arange(50) % 2
model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
sys.stdout.buffer.write(canonical_skops(sio.dumps(model)))
"""


def _saved() -> bytes:
    # A fresh interpreter each time: object ids (memory addresses) differ between processes.
    return subprocess.run(
        [sys.executable, "-c", SAVE], capture_output=True, check=True, timeout=120
    ).stdout


def test_the_same_model_saved_in_two_processes_is_the_same_file() -> None:
    import numpy as np
    import skops.io as sio

    first, second = _saved(), _saved()
    assert first == second
    names = zipfile.ZipFile(io.BytesIO(first)).namelist()
    assert "schema.json" in names
    assert all(
        info.date_time == (1980, 1, 1, 0, 0, 0)
        for info in zipfile.ZipFile(io.BytesIO(first)).infolist()
    )
    model = sio.loads(first, trusted=sio.get_untrusted_types(data=first))
    X = np.random.default_rng(1).normal(size=(5, 3))
    assert model.predict(X).shape == (5,)
