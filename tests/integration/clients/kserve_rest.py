"""The KServe SDK's REST client (kserve.InferenceRESTClient, httpx underneath) against a running
server. Run by .bench/kserve-venv/bin/python (scripts/peers.sh), never imported by the suite:

    python kserve_rest.py BASE_URL MODEL ROWS_JSON

ROWS_JSON holds {"columns": [...], "data": [[...], ...]}. Prints one JSON object with what the
client returned for each call (v1 ready/predict/explain, v2 health/ready/infer in JSON and with
the binary tensor extension, and the status of calls the server refuses), for the test to
compare with the server's own /invocations and /explain answers.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


def _outputs(response: Any) -> dict[str, Any]:
    """An InferResponse as {name: {"datatype", "shape", "data"}}, decoded by the SDK."""
    return {
        out.name: {
            "datatype": out.datatype,
            "shape": list(out.shape),
            "data": out.as_numpy().tolist(),
        }
        for out in response.outputs
    }


async def _status(call: Any) -> int:
    """The HTTP status of a call the SDK raises for (non-2xx)."""
    try:
        await call
    except httpx.HTTPStatusError as err:
        return err.response.status_code
    return 200


async def main(base: str, model: str, columns: list[str], data: list[list[float]]) -> None:
    import kserve

    out: dict[str, Any] = {"kserve": kserve.__version__ if hasattr(kserve, "__version__") else ""}
    v1 = InferenceRESTClient(RESTConfig(protocol="v1", timeout=30))
    out["v1_model_ready"] = await v1.is_model_ready(base, model)
    out["v1_predict"] = await v1.infer(base, {"instances": data}, model_name=model)
    records = [dict(zip(columns, row, strict=True)) for row in data]
    out["v1_predict_records"] = await v1.infer(base, {"instances": records}, model_name=model)
    out["v1_explain"] = await v1.explain(base, model, {"instances": data})
    out["v1_unknown_model"] = await _status(v1.infer(base, {"instances": data}, model_name="nope"))
    out["v1_no_instances"] = await _status(v1.infer(base, {"rows": data}, model_name=model))

    v2 = InferenceRESTClient(RESTConfig(protocol="v2", timeout=30))
    out["v2_server_live"] = await v2.is_server_live(base)
    out["v2_server_ready"] = await v2.is_server_ready(base)
    out["v2_model_ready"] = await v2.is_model_ready(base, model)
    matrix = np.asarray(data, dtype=np.float64)
    # One FP64 tensor per feature, pandas content type, as JSON (binary_data=False).
    inputs = []
    for i, name in enumerate(columns):
        tensor = InferInput(name=name, shape=[len(data)], datatype="FP64")
        tensor.set_data_from_numpy(matrix[:, i], binary_data=False)
        inputs.append(tensor)
    request = InferRequest(
        model_name=model,
        infer_inputs=inputs,
        request_id="kserve-json",
        parameters={"content_type": "pd"},
    )
    response = await v2.infer(base, request, model_name=model)
    out["v2_json"] = {
        "id": response.id,
        "model_name": response.model_name,
        "outputs": _outputs(response),
    }
    # One 2-D FP64 tensor with the binary tensor extension (Inference-Header-Content-Length).
    tensor = InferInput(name="x", shape=list(matrix.shape), datatype="FP64")
    tensor.set_data_from_numpy(matrix, binary_data=True)
    request = InferRequest(model_name=model, infer_inputs=[tensor], request_id="kserve-binary")
    response = await v2.infer(base, request, model_name=model)
    out["v2_binary"] = {
        "id": response.id,
        "model_name": response.model_name,
        "outputs": _outputs(response),
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    url, name, rows_file = sys.argv[1:4]
    with open(rows_file) as f:
        rows = json.load(f)
    asyncio.run(main(url, name, rows["columns"], rows["data"]))
