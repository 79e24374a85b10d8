"""The clients users of Triton, KServe and MLflow bring, against a running `mlopsctl serve`:

- tritonclient (installed, dev extra) with its default binary encoding, on a model with a
  string feature (BYTES tensors);
- the KServe SDK's v1 and v2 REST protocols, twice. For real: `kserve.InferenceRESTClient`
  runs in .bench/kserve-venv (scripts/peers.sh; the `kserve` package pins pandas below 3, which
  would downgrade this project's pandas, so it never goes into .venv), driven by
  clients/kserve_rest.py, and its answers are compared with the server's /invocations and
  /explain. And byte for byte: the requests it sends (httpx, JSON) are re-created here with
  http.client, so they run without the peer too: v1 ``GET /v1/models/<m>`` (ready),
  ``POST /v1/models/<m>:predict`` and ``:explain`` with ``{"instances": [...]}``; v2
  ``/v2/health/ready``, ``/v2/models/<m>/ready`` and ``/v2/models/<m>/infer`` with an
  InferRequest's ``to_rest()`` body (``id``, ``inputs`` with ``parameters``, ``parameters``
  such as ``content_type: pd``);
- explanations: ``/v1/models/<m>:explain``, ``POST /explain`` and OIP ``parameters.explain``.

MLflow's scoring clients (chunked and gzip bodies) are in test_serving_hardening.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.func.test_models import feature_rows, quickstart_project

from .peers import WAITS_FOR_PEER, peer_python, run_client
from .test_serving_server import MODEL, ServerProcess, start_server


def _stop(running: ServerProcess) -> None:
    if running.proc.poll() is None:
        running.stop()


@pytest.fixture
def quickstart(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[ServerProcess]:
    root = tmp_path / "demo"
    quickstart_project(tmp_path_factory, root)
    running = start_server(root, f"{MODEL}:1", "--no-log")
    yield running
    _stop(running)


@pytest.fixture
def churn(tmp_path: Path) -> Iterator[ServerProcess]:
    """A model with a string feature (``plan``), served from its folder."""
    from tests.unit.test_components_train import run_train

    rng = np.random.default_rng(0)
    n = 200
    plan = rng.choice(np.array(["basic", "gold", "team"], dtype=object), n)
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(1, 72, n).astype("float64"),
            "plan": plan,
            "churned": np.where(plan == "basic", "yes", "no"),
        }
    )
    run_train(
        tmp_path,
        frame,
        {"target": "churned", "estimator": {"class": "sklearn.linear_model.LogisticRegression"}},
    )
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / ".git").mkdir()  # no mlops.yaml up to here: no store, no logs
    running = start_server(bare, "churn:1", "--model-dir", str(tmp_path / "model"))
    yield running
    _stop(running)


# -- Triton ------------------------------------------------------------------------------------
def test_tritonclient_binary_bytes_input_for_a_string_feature(churn: ServerProcess) -> None:
    import tritonclient.http as triton

    client = triton.InferenceServerClient(url=f"127.0.0.1:{churn.port}")
    try:
        tenure = triton.InferInput("tenure", [3], "FP64")
        tenure.set_data_from_numpy(np.array([5.0, 40.0, 12.0]))  # binary_data=True: the default
        plan = triton.InferInput("plan", [3], "BYTES")
        plan.set_data_from_numpy(np.array([b"basic", b"gold", b"team"], dtype=object))
        result = client.infer("churn", [tenure, plan])
        labels = result.as_numpy("predict")
        proba = result.as_numpy("proba")
    finally:
        client.close()
    assert labels is not None and [v.decode() if isinstance(v, bytes) else v for v in labels] == [
        "yes",
        "no",
        "no",
    ]
    assert proba is not None and proba.shape == (3, 2)
    status, body = churn.json(
        "POST",
        "/invocations",
        {"dataframe_records": [{"tenure": 5, "plan": "basic"}, {"tenure": 40, "plan": "gold"}]},
    )
    assert status == 200 and body["predictions"] == ["yes", "no"]


# -- KServe ------------------------------------------------------------------------------------
def _kserve(server: ServerProcess, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One request as kserve's InferenceRESTClient (httpx, ``json=``) sends it."""
    headers = {"Content-Type": "application/json", "User-Agent": "python-httpx/0.28.1"}
    status, _, payload = server.request(
        method, path, json.dumps(body) if body is not None else None, headers
    )
    return status, json.loads(payload) if payload.strip() else None


def test_kserve_v1_protocol(quickstart: ServerProcess) -> None:
    frame = feature_rows(4)
    status, body = _kserve(quickstart, "GET", f"/v1/models/{MODEL}")
    assert status == 200 and body == {"name": MODEL, "ready": True}
    assert _kserve(quickstart, "GET", "/v1/models")[1] == {"models": [MODEL]}
    status, body = _kserve(
        quickstart, "POST", f"/v1/models/{MODEL}:predict", {"instances": frame.values.tolist()}
    )
    assert status == 200 and len(body["predictions"]) == 4
    expected = quickstart.json(
        "POST",
        "/invocations",
        {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}},
    )[1]["predictions"]
    assert body["predictions"] == expected
    status, body2 = _kserve(
        quickstart,
        "POST",
        f"/v1/models/{MODEL}:predict",
        {"instances": frame.to_dict("records")},
    )
    assert status == 200 and body2["predictions"] == expected
    status, body = _kserve(quickstart, "POST", "/v1/models/other:predict", {"instances": []})
    assert status == 404
    status, body = _kserve(quickstart, "POST", f"/v1/models/{MODEL}:predict", {"rows": []})
    assert status == 400 and "instances" in body["message"]


def test_kserve_v2_rest_protocol(quickstart: ServerProcess) -> None:
    frame = feature_rows(2)
    assert _kserve(quickstart, "GET", "/v2/health/ready") == (200, {"ready": True})
    assert _kserve(quickstart, "GET", f"/v2/models/{MODEL}/ready")[1]["ready"] is True
    request = {  # InferRequest(...).to_rest(): one FP64 input per feature, pandas content type
        "id": "kserve-1",
        "parameters": {"content_type": "pd"},
        "inputs": [
            {
                "name": name,
                "shape": [2],
                "datatype": "FP64",
                "data": frame[name].tolist(),
                "parameters": {},
            }
            for name in frame.columns
        ],
    }
    status, body = _kserve(quickstart, "POST", f"/v2/models/{MODEL}/infer", request)
    assert status == 200, body
    assert body["id"] == "kserve-1" and body["model_name"] == MODEL
    assert [o["name"] for o in body["outputs"]] == ["predict", "proba"]


@WAITS_FOR_PEER
def test_the_kserve_sdk_rest_client_v1_and_v2(
    kserve_python: Path, quickstart: ServerProcess, tmp_path: Path
) -> None:
    """kserve.InferenceRESTClient itself: v1 ready/predict (rows and records)/explain, v2
    live/ready/infer as JSON tensors (one per feature, pandas content type) and as one 2-D
    tensor with the binary extension; its answers match /invocations and /explain."""
    frame = feature_rows(5)
    rows = tmp_path / "rows.json"
    rows.write_text(json.dumps({"columns": list(frame.columns), "data": frame.values.tolist()}))
    got = run_client(
        kserve_python, "kserve_rest.py", f"http://127.0.0.1:{quickstart.port}", MODEL, str(rows)
    )
    split = {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}}
    status, expected = quickstart.json("POST", "/invocations", split)
    assert status == 200 and len(expected["predictions"]) == 5
    predictions = expected["predictions"]
    assert got["v1_model_ready"] is True
    assert got["v1_predict"]["predictions"] == predictions
    assert got["v1_predict_records"]["predictions"] == predictions
    status, explained = quickstart.json("POST", "/explain", split)
    assert status == 200 and got["v1_explain"]["explanations"] == explained["explanations"]
    assert (got["v1_unknown_model"], got["v1_no_instances"]) == (404, 400)
    assert got["v2_server_live"] is True and got["v2_server_ready"] is True
    assert got["v2_model_ready"] is True
    for kind in ("json", "binary"):
        answer = got[f"v2_{kind}"]
        assert answer["id"] == f"kserve-{kind}" and answer["model_name"] == MODEL, answer
        outputs = answer["outputs"]
        assert sorted(outputs) == ["predict", "proba"], outputs
        assert outputs["predict"]["data"] == predictions, kind
        assert outputs["proba"]["shape"] == [5, 2]
        proba = np.asarray(outputs["proba"]["data"])
        assert np.allclose(proba.sum(axis=1), 1.0)


@pytest.fixture
def kserve_python() -> Path:
    """.bench/kserve-venv's python (waits for scripts/peers.sh; skips or fails without it)."""
    return peer_python("kserve")


# -- explanations ------------------------------------------------------------------------------
def test_explanations_on_three_routes(quickstart: ServerProcess) -> None:
    frame = feature_rows(2)
    status, v1 = _kserve(
        quickstart, "POST", f"/v1/models/{MODEL}:explain", {"instances": frame.values.tolist()}
    )
    assert status == 200, v1
    assert len(v1["explanations"]) == 2 and len(v1["explanations"][0]) == 31  # + bias
    status, mlflow = quickstart.json(
        "POST",
        "/explain",
        {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}},
    )
    assert status == 200 and mlflow["explanations"] == v1["explanations"]
    status, oip = quickstart.json(
        "POST",
        f"/v2/models/{MODEL}/infer",
        {
            "parameters": {"explain": True},
            "inputs": [
                {"name": "x", "shape": [2, 30], "datatype": "FP64", "data": frame.values.tolist()}
            ],
        },
    )
    assert status == 200
    contributions = next(o for o in oip["outputs"] if o["name"] == "contributions")
    assert contributions["shape"] == [2, 31] and len(contributions["parameters"]["names"]) == 31
    names = contributions["parameters"]["names"]
    first = dict(zip(names, contributions["data"][:31], strict=True))
    assert first == pytest.approx(v1["explanations"][0])
