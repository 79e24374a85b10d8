"""MLflow's scoring client against a running server. Run by .bench/mlflow-client-venv/bin/python
(mlflow-skinny; scripts/peers.sh), never imported by the suite:

    python mlflow_scoring.py HOST PORT ROWS_JSON

ROWS_JSON holds {"columns": [...], "data": [[...], ...]}. Prints one JSON object.

`ScoringServerClient` (mlflow.pyfunc.scoring_server.client, what MLflow's own tests and
`mlflow models serve` users script with) waits for /ping and posts a pandas DataFrame (and a
DataFrame with params) as MLflow's `dump_input_data` serialises it. It always sends that body
as one string with a Content-Length: it has no way to send a chunked or a compressed body. So
those two are sent here with `requests` (the HTTP library the client uses) carrying the very
payload `dump_input_data` made: a generator body, which requests sends with
Transfer-Encoding: chunked, and the same bytes gzip-compressed with Content-Encoding: gzip.
Each answer is read back with MLflow's `PredictionsResponse.from_json`.
"""

from __future__ import annotations

import gzip
import json
import sys
from typing import Any

import mlflow
import pandas as pd
import requests
from mlflow.deployments import PredictionsResponse
from mlflow.pyfunc import scoring_server
from mlflow.pyfunc.scoring_server.client import ScoringServerClient
from mlflow.utils.proto_json_utils import dump_input_data


def _predictions(response: Any) -> Any:
    """The "predictions" of a PredictionsResponse as plain JSON values."""
    return json.loads(json.dumps(response["predictions"], default=str))


def main(host: str, port: int, columns: list[str], data: list[list[float]]) -> None:
    frame = pd.DataFrame(data, columns=columns)
    client = ScoringServerClient(host, port)
    client.wait_server_ready(timeout=30)
    out: dict[str, Any] = {"mlflow": mlflow.__version__}
    out["plain"] = _predictions(client.invoke(frame))
    out["plain_params"] = _predictions(client.invoke(frame, params={"note": "mlflow"}))
    out["plain_ndarray"] = _predictions(client.invoke(frame.to_numpy()))  # {"inputs": [...]}
    body = dump_input_data(frame)
    url = f"http://{host}:{port}/invocations"
    headers = {"Content-Type": scoring_server.CONTENT_TYPE_JSON}
    payload = body.encode()
    step = max(1, len(payload) // 7)
    chunked = requests.post(
        url,
        data=(payload[i : i + step] for i in range(0, len(payload), step)),
        headers=headers,
        timeout=30,
    )
    out["chunked_request_headers"] = dict(chunked.request.headers)
    out["chunked_status"] = chunked.status_code
    out["chunked"] = _predictions(PredictionsResponse.from_json(chunked.text))
    compressed = requests.post(
        url,
        data=gzip.compress(payload),
        headers={**headers, "Content-Encoding": "gzip"},
        timeout=30,
    )
    out["gzip_status"] = compressed.status_code
    out["gzip"] = _predictions(PredictionsResponse.from_json(compressed.text))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    host_arg, port_arg, rows_file = sys.argv[1:4]
    with open(rows_file) as f:
        rows = json.load(f)
    main(host_arg, int(port_arg), rows["columns"], rows["data"])
