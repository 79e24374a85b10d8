"""Request bodies to model inputs: every MLflow shape, CSV, Open Inference Protocol tensors
(JSON and binary), and the 400s that name the missing, extra and mistyped features."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
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


def test_json_bodies_are_read_as_json_loads_reads_bytes() -> None:
    # The decoder is built once (parse_json), but reads bytes as json.loads does: UTF-8 with or
    # without a BOM, UTF-16 and UTF-32 by their first bytes; NaN is a value, Infinity refused.
    value = {"instances": [[1.5, "é", None]], "params": {"output": "proba"}}
    text = json.dumps(value, ensure_ascii=False)
    for body in (
        text.encode(),
        b"\xef\xbb\xbf" + text.encode(),
        text.encode("utf-16"),
        text.encode("utf-32-le"),
    ):
        assert codecs.parse_json(body) == json.loads(body) == value
    assert math.isnan(codecs.parse_json(b"[NaN]")[0])
    for bad in (b"[-Infinity]", b"\xff\xfe\x00", b'{"a": 1} trailing'):
        with pytest.raises(BadRequest) as info:
            codecs.parse_json(bad)
        assert info.value.status == 400


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


def _oip(payload: dict[str, object], tail: bytes = b"") -> codecs.OipRequest:
    head = json.dumps(payload).encode()
    return codecs.oip_request(head + tail, len(head) if tail else None)


def _tensor(**extra: object) -> dict[str, object]:
    return {"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3], **extra}


def test_oip_request_id_must_be_safe_in_a_header() -> None:
    assert _oip({"id": "order-7", "inputs": [_tensor()]}).id == "order-7"
    assert _oip({"id": 7, "inputs": [_tensor()]}).id == "7"
    for bad in ("x\r\nSet-Cookie: a=b", "tab\there", "", "é", "x" * 201, ["a"]):
        with pytest.raises(BadRequest) as info:
            _oip({"id": bad, "inputs": [_tensor()]})
        assert info.value.status == 400 and info.value.error_code == "INVALID_PARAMETER_VALUE"
        assert "'id'" in info.value.message
    assert codecs.valid_request_id("x" * 200) and not codecs.valid_request_id("a\nb")


def test_malformed_oip_and_huge_numbers_are_400s() -> None:
    raw = np.array([1, 2, 3], dtype="<f8").tobytes()
    cases: list[tuple[dict[str, object], bytes, str]] = [
        ({"inputs": [_tensor(parameters={"binary_data_size": "abc"})]}, raw, "binary_data_size"),
        ({"inputs": [_tensor(parameters={"binary_data_size": -8})]}, raw, "binary_data_size"),
        ({"inputs": [_tensor(parameters={"binary_data_size": True})]}, raw, "binary_data_size"),
        ({"inputs": [_tensor(parameters={"binary_data_size": 9999})]}, raw, "past the end"),
        ({"inputs": [_tensor(parameters=["binary_data_size", 24])]}, b"", "'parameters'"),
        ({"inputs": [_tensor()], "parameters": [1]}, b"", "'parameters'"),
    ]
    for payload, tail, words in cases:
        with pytest.raises(BadRequest) as info:
            _oip(payload, tail)
        assert info.value.status == 400 and words in info.value.message, payload
    huge = 10**400
    for payload in (
        {"instances": [[huge, 2, 3]]},
        {"inputs": {"a": [huge], "b": [2], "c": [3]}},
        {"dataframe_records": [{"a": 1, "b": huge, "c": 3}]},
    ):
        assert "too large" in _error(payload).message
    mixed = Signature(["a", "color"], {"a": "numeric", "color": "categorical"})
    assert "too large" in _error({"instances": [[huge, "red"]]}, mixed).message
    with pytest.raises(BadRequest, match="nested too deeply"):
        codecs.parse_json(b"[" * 100_000 + b"]" * 100_000)


def test_sticky_key_does_not_depend_on_the_content_type() -> None:
    json_int, _ = codecs.mlflow_table({"dataframe_records": [{"a": 1, "customer": 42}]})
    json_float, _ = codecs.mlflow_table({"inputs": {"a": [1], "customer": [42.0]}})
    csv = codecs.csv_table(b"a,customer\n1,42\n")
    binary = _oip(
        {
            "inputs": [
                {"name": "a", "shape": [1], "datatype": "FP64", "data": [1]},
                {
                    "name": "customer",
                    "shape": [1],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 4},
                },
            ]
        },
        np.array([42], dtype="<f4").tobytes(),
    )
    oip = codecs.oip_table(binary, Signature(["a"]))  # type: ignore[arg-type]
    keys = {t.key_value("customer") for t in (json_int, json_float, csv, oip)}
    assert keys == {"42"}
    text, _ = codecs.mlflow_table({"dataframe_records": [{"customer": "c-9", "a": 1.5}]})
    assert text.key_value("customer") == "c-9"


CATEGORICAL = Signature(["tenure", "plan"], {"tenure": "numeric", "plan": "categorical"})


def test_categorical_values_are_kept_as_sent() -> None:
    """CSV text stays text for a categorical feature, JSON integers stay integers, and the
    column is built as objects, so a null in another row cannot turn 1 into 1.0."""
    csv = codecs.to_inputs(codecs.csv_table(b"tenure,plan\n5,1\n,\n"), CATEGORICAL)  # type: ignore[arg-type]
    assert csv.columns is not None and csv.columns["plan"] == ["1", None]
    assert csv.columns["tenure"][0] == 5.0 and math.isnan(csv.columns["tenure"][1])
    sent = _inputs(
        {"dataframe_records": [{"tenure": 5, "plan": 1}, {"tenure": 6, "plan": None}]}, CATEGORICAL
    )
    frame = sent.frame(CATEGORICAL.names)
    assert frame["plan"].dtype == object and frame["plan"].tolist()[0] == 1
    assert frame["tenure"].dtype == "float64"
    with pytest.raises(BadRequest, match="'tenure' must be numbers"):
        codecs.to_inputs(codecs.csv_table(b"tenure,plan\nlong,1\n"), CATEGORICAL)  # type: ignore[arg-type]


def test_a_categorical_model_predicts_the_same_row_the_same_way(tmp_path: Path) -> None:
    from mlopsctl.models.artifact import load_model_dir
    from mlopsctl.serving.app import _predict
    from mlopsctl.serving.predictor import Predictor
    from tests.unit.test_components_train import run_train

    rng = np.random.default_rng(0)
    n = 120
    plan = rng.choice(np.array(["1", "2", "3"], dtype=object), n)
    frame = pd.DataFrame(
        {
            "tenure": rng.integers(1, 72, n),
            "plan": plan,
            "churned": np.where(plan == "1", "yes", "no"),
        }
    )
    run_train(
        tmp_path,
        frame,
        {"target": "churned", "estimator": {"class": "sklearn.linear_model.LogisticRegression"}},
    )
    predictor = Predictor(load_model_dir(tmp_path / "model"), "m", 1)
    assert predictor.kinds["plan"] == "categorical"

    def proba(inputs: codecs.Inputs) -> list[float]:
        got = _predict(predictor, inputs).proba
        assert got is not None
        return [round(float(p), 12) for p in got[0]]

    alone = proba(_inputs({"dataframe_records": [{"tenure": 5, "plan": 1}]}, predictor))  # type: ignore[arg-type]
    with_null = _inputs(
        {"dataframe_records": [{"tenure": 5, "plan": 1}, {"tenure": 9, "plan": None}]},
        predictor,  # type: ignore[arg-type]
    )
    csv = codecs.to_inputs(codecs.csv_table(b"plan,tenure\n1,5\n,9\n"), predictor)
    head = json.dumps(
        {
            "inputs": [
                {"name": "tenure", "shape": [2], "datatype": "FP64", "data": [5, 9]},
                {
                    "name": "plan",
                    "shape": [2],
                    "datatype": "INT64",
                    "parameters": {"binary_data_size": 16},
                },
            ]
        }
    ).encode()
    request = codecs.oip_request(head + np.array([1, 2], dtype="<i8").tobytes(), len(head))
    binary = codecs.to_inputs(codecs.oip_table(request, predictor), predictor)
    assert proba(with_null) == proba(csv) == proba(binary) == alone
    assert alone[1] > 0.5  # "1" is the churning plan: seen, not an unknown category


def test_one_rule_for_infinity_categorical_features_included() -> None:
    """1e400 (a 500 for models with categorical features before) is a 400 like every other
    infinity; a lone surrogate and an oversized CSV field are 400s; NaN stays a missing value."""
    categorical = Signature(["tenure", "plan"], {"tenure": "numeric", "plan": "categorical"})
    for payload in (
        b'{"dataframe_records": [{"tenure": 1e400, "plan": "a"}]}',
        b'{"dataframe_records": [{"tenure": 1, "plan": 1e400}]}',
        b'{"dataframe_records": [{"tenure": Infinity, "plan": "a"}]}',
    ):
        with pytest.raises(BadRequest, match="infinite") as caught:
            table, _ = codecs.mlflow_table(codecs.parse_json(payload))
            codecs.to_inputs(table, categorical)  # type: ignore[arg-type]
        assert caught.value.status == 400
    with pytest.raises(BadRequest, match="infinite"):
        codecs.to_inputs(codecs.csv_table(b"tenure,plan\ninf,a\n"), categorical)  # type: ignore[arg-type]
    sent = codecs.to_inputs(codecs.csv_table(b"tenure,plan\nnan,a\n"), categorical)  # type: ignore[arg-type]
    assert sent.columns is not None and math.isnan(sent.columns["tenure"][0])
    with pytest.raises(BadRequest, match="surrogate"):
        codecs.parse_json(b'{"instances": [["\\ud800"]]}')
    assert codecs.parse_json(b'["\\ud83d\\ude00"]') == ["\U0001f600"]  # a pair is fine
    with pytest.raises(BadRequest, match="CSV"):
        codecs.csv_table(b"a\n" + b"x" * 200_000 + b"\n")


def test_binary_bytes_tensors_and_extra_columns() -> None:
    """tritonclient's binary BYTES layout (4-byte little-endian length, then the bytes) for a
    string feature; extra named inputs are ignored and listed unless strict."""
    categorical = Signature(["tenure", "plan"], {"tenure": "numeric", "plan": "categorical"})
    strings = b"".join(len(v).to_bytes(4, "little") + v for v in (b"gold", b"basic"))
    head = json.dumps(
        {
            "inputs": [
                {"name": "tenure", "shape": [2], "datatype": "FP64", "data": [1, 2]},
                {
                    "name": "plan",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": len(strings)},
                },
                {"name": "extra", "shape": [2], "datatype": "FP64", "data": [0, 0]},
            ]
        }
    ).encode()
    request = codecs.oip_request(head + strings, len(head))
    table = codecs.oip_table(request, categorical)  # type: ignore[arg-type]
    inputs = codecs.to_inputs(table, categorical, strict=False)  # type: ignore[arg-type]
    assert inputs.columns is not None and inputs.columns["plan"] == ["gold", "basic"]
    assert inputs.ignored == ["extra"]
    with pytest.raises(BadRequest, match="unknown feature"):
        codecs.to_inputs(table, categorical, strict=True)  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="runs past"):
        codecs.oip_request(head + strings[:-2], len(head))
