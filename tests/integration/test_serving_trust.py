"""`mlopsctl serve --trust`: a pickle-flavoured version is refused by the server as it is by
`models predict`, in one line naming the flag, and served once trusted."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

from mlopsctl.store.local import LocalStore
from tests.func.test_models_integrity import benign_pipeline, register_pickle

from .test_serving_server import READY_TIMEOUT_S, server_env, split_body, start_server


def test_a_pickle_model_is_served_only_with_trust(tmp_path: Path) -> None:
    root = tmp_path / "picky"
    root.mkdir()
    (root / "mlops.yaml").write_text("apiVersion: mlopsctl/v1\nkind: Project\nname: p\n")
    (root / ".git").mkdir()
    pipeline, rows = benign_pipeline()
    with LocalStore(root / ".mlops") as store:
        register_pickle(store, tmp_path, "benign", pickle.dumps(pipeline))

    refused = subprocess.run(
        [sys.executable, "-m", "mlopsctl", "serve", "benign:1", "--port", "0", "--no-log"],
        cwd=root,
        env=server_env(root),
        capture_output=True,
        text=True,
        timeout=READY_TIMEOUT_S,
    )
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "--trust" in lines[0], refused.stderr

    server = start_server(root, "benign:1", "--no-log", "--trust")
    try:
        status, body = server.json("POST", "/invocations", split_body(rows))
        assert status == 200
        expected = ["yes" if p == 1 else "no" for p in pipeline.predict(rows)]
        assert body["predictions"] == expected
    finally:
        assert server.stop() == 0
