"""Request bodies to model inputs: every MLflow shape, CSV, Open Inference Protocol tensors
(JSON and binary), and the 400s that name the missing, extra and mistyped features."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pytest

from mlopsctl.serving import codecs
from mlopsctl.serving.codecs import BadRequest


@dataclass
class Signature:
    """The part of a Predictor the codecs read."""

    names: list[str]
    kinds: dict[str, str] = field(default_factory=dict)
    name: str = "m"
    version: int = 1

    def __post_init__(self) -> None:
        self.kinds = self.kinds or {n: "numeric" for n in self.names}

    @property
    def numeric(self) -> bool:
        return all(k == "numeric" for k in self.kinds.values())


SIG = Signature(["a", "b", "c"])
EXPECTED = np.array([[1.0, 2.0, 3.0], [4.0, math.nan, 6.0]])


def _inputs(payload: object, sig: Signature = SIG, key: str | None = None) -> codecs.Inputs:
    table, _ = codecs.mlflow_table(payload)
    return codecs.to_inputs(table, sig, key)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "payload",
    [
        {"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, 2, 3], [4, None, 6]]}},
        {"dataframe_split": {"columns": ["c", "a", "b"], "data": [[3, 1, 2], [6, 4, None]]}},
        {"dataframe_records": [{"a": 1, "b": 2, "c": 3}, {"c": 6, "b": None, "a": 4}]},
        {"instances": [{"a": 1, "b": 2, "c": 3}, {"a": 4, "b": None, "c": 6}]},
        {"instances": [[1, 2, 3], [4, None, 6]]},
        {"inputs": {"a": [1, 4], "b": [2, None], "c": [3, 6]}},
        {"inputs": [{"a": 1, "b": 2, "c": 3}, {"a": 4, "b": None, "c": 6}]},
    ],
)
def test_mlflow_shapes_give_one_matrix(payload: object) -> None:
    got = _inputs(payload)
    assert got.rows == 2
    np.testing.assert_array_equal(got.matrix, EXPECTED)


def test_csv() -> None:
    got = codecs.to_inputs(codecs.csv_table(b"c,b,a\n3,2,1\n6,,4\n"), SIG)  # type: ignore[arg-type]
    np.testing.assert_array_equal(got.matrix, EXPECTED)


def _error(payload: object, sig: Signature = SIG) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        _inputs(payload, sig)
    return info.value


def test_signature_errors_name_the_features() -> None:
    err = _error({"dataframe_records": [{"a": 1, "b": 2}]})
    assert err.status == 400 and "missing feature(s) 'c'" in err.message
    err = _error({"dataframe_records": [{"a": 1, "b": 2, "c": 3, "zz": 4}]})
    assert "unknown feature(s) 'zz'" in err.message
    err = _error({"dataframe_split": {"columns": ["a", "b", "c"], "data": [[1, "x", 3]]}})
    assert "'b' must be numbers" in err.message
    assert "must be a list of 3 values" in _error({"instances": [[1, 2]]}).message
    assert "no rows" in _error({"dataframe_records": []}).message
    assert "exactly one" in _error({"instances": [], "inputs": []}).message
    with pytest.raises(BadRequest) as info:
        codecs.parse_json(b"{oops")
    assert info.value.error_code == "MALFORMED_REQUEST"
    with pytest.raises(BadRequest, match="Infinity"):
        codecs.parse_json(b'{"a": Infinity}')


def test_key_column_is_allowed_and_read() -> None:
    payload = {"dataframe_records": [{"a": 1, "b": 2, "c": 3, "customer": "x"}]}
    table, _ = codecs.mlflow_table(payload)
    assert table.key_value("customer") == "x"
    got = codecs.to_inputs(table, SIG, "customer")  # type: ignore[arg-type]
    np.testing.assert_array_equal(got.matrix, [[1.0, 2.0, 3.0]])
    assert _error(payload).message.startswith("the input does not match")


def test_categorical_features_take_the_column_path() -> None:
    sig = Signature(["a", "color"], {"a": "numeric", "color": "categorical"})
    got = _inputs(
        {"dataframe_records": [{"a": 1, "color": "red"}, {"a": None, "color": None}]}, sig
    )
    assert got.matrix is None and got.columns is not None
    assert got.columns["color"] == ["red", None] and math.isnan(got.columns["a"][1])
    assert (
        "'a' must be numbers"
        in _error({"dataframe_records": [{"a": "x", "color": "red"}]}, sig).message
    )


def test_oip_tensors() -> None:
    one = {
        "inputs": [
            {"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [[1, 2, 3], [4, None, 6]]}
        ]
    }
    request = codecs.oip_request(json.dumps(one).encode(), None)
    got = codecs.to_inputs(codecs.oip_table(request, SIG), SIG)  # type: ignore[arg-type]
    np.testing.assert_array_equal(got.matrix, EXPECTED)

    per = {
        "inputs": [
            {
                "name": n,
                "shape": [2, 1],
                "datatype": "INT64",
                "data": [v[i] for v in ([1, 2, 3], [4, 5, 6])],
            }
            for i, n in enumerate("abc")
        ]
    }
    request = codecs.oip_request(json.dumps(per).encode(), None)
    got = codecs.to_inputs(codecs.oip_table(request, SIG), SIG)  # type: ignore[arg-type]
    np.testing.assert_array_equal(got.matrix, [[1, 2, 3], [4, 5, 6]])

    # the binary tensor extension: JSON header, then raw little-endian values
    raw = np.array([[1, 2, 3], [4, 5, 6]], dtype="<f4").tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [2, 3],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    request = codecs.oip_request(head + raw, len(head))
    got = codecs.to_inputs(codecs.oip_table(request, SIG), SIG)  # type: ignore[arg-type]
    np.testing.assert_array_equal(got.matrix, [[1, 2, 3], [4, 5, 6]])

    with pytest.raises(BadRequest, match="shape"):
        codecs.oip_request(
            json.dumps(
                {"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP64", "data": [1]}]}
            ).encode(),
            None,
        )
    bad = codecs.oip_request(
        json.dumps(
            {"inputs": [{"name": "a", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}
        ).encode(),
        None,
    )
    with pytest.raises(BadRequest, match="numeric"):
        codecs.oip_table(bad, SIG)  # type: ignore[arg-type]
