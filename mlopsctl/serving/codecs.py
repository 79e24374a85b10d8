"""Request bodies into model inputs, checked against the model's signature.

Two protocols: MLflow's scoring format (``dataframe_split``, ``dataframe_records``,
``instances``, ``inputs`` as JSON, or CSV with a header row) and the Open Inference Protocol v2
(named, typed, shaped tensors, with the binary tensor extension). Each body is first turned into
a `Table` that does not depend on the model, so the serving arm can be chosen from its key
column before the arm's own signature is applied. Every problem is a `BadRequest` with the HTTP
status and an MLflow-style error code, naming the missing, extra or mistyped features.

A value reaches the model as it was sent, whatever the content type: CSV cells stay text until
the signature says a feature is numeric, JSON integers stay integers, and categorical columns are
built with dtype object, so that ``1`` is the category ``"1"`` from CSV, JSON and a binary
integer tensor alike, whatever else the batch holds. The sticky-arm key is normalised the same
way (a whole float is written as an integer).

One rule for values that are not finite numbers, whatever the content type: NaN is a missing
value (JSON ``NaN`` or ``null``, an empty CSV cell or ``nan``, a binary NaN), imputed like any
other; an infinity is refused with 400 wherever it comes from (the JSON literal ``Infinity``, a
number too large for a double such as ``1e400``, CSV ``inf``, a binary FP32/FP64 inf), for
numeric and categorical features alike.

Extra columns (named inputs the model does not take) are ignored and reported in
`Inputs.ignored`, as MLflow does; with ``strict`` they are refused with 400.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np


class Features(Protocol):
    """What the codecs read of a model: a `Predictor`, or a `Signature` in a parsing process."""

    name: str
    version: int
    names: list[str]
    kinds: dict[str, str]

    @property
    def numeric(self) -> bool: ...


@dataclass(frozen=True)
class Signature:
    """A model's features, without the model: enough to turn a body into inputs."""

    name: str
    version: int
    names: list[str]
    kinds: dict[str, str]

    @property
    def numeric(self) -> bool:
        return all(kind == "numeric" for kind in self.kinds.values())

    def same_features(self, other: Features) -> bool:
        return self.names == other.names and self.kinds == other.kinds


_NUMERIC_TYPES = frozenset({int, float, bool, type(None)})
_LIST_LIMIT = 8  # how many feature names an error message lists before "..."
MAX_REQUEST_ID = 200
# Byte counts longer than this are refused before int() sees them: no body this server accepts
# needs more digits, and int() of thousands of digits raises (or takes time).
MAX_LENGTH_DIGITS = 18
_INFINITE = (
    "is infinite (or too large for a 64-bit float); send a finite number, or null for a "
    "missing value"
)


def valid_request_id(value: str) -> bool:
    """Whether ``value`` may be echoed in the X-Request-ID header: printable ASCII (no CR, LF or
    other control characters), 1 to 200 characters."""
    return 0 < len(value) <= MAX_REQUEST_ID and value.isascii() and value.isprintable()


class BadRequest(Exception):
    def __init__(self, status: int, error_code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


def invalid(message: str) -> BadRequest:
    return BadRequest(400, "INVALID_PARAMETER_VALUE", message)


def malformed(message: str) -> BadRequest:
    return BadRequest(400, "MALFORMED_REQUEST", message)


def _no_infinity(name: str) -> float:
    if name == "NaN":
        return math.nan
    raise malformed(f"{name}: a value {_INFINITE}")


# Built once: json.loads(..., parse_constant=...) builds a decoder and its scanner per call.
_DECODER = json.JSONDecoder(parse_constant=_no_infinity)


def parse_json(body: bytes) -> Any:
    try:
        # As json.loads reads bytes: UTF-8, -16 or -32 by the first bytes, surrogates kept.
        value = _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except BadRequest:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise malformed(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise malformed("the JSON body is nested too deeply") from None
    if b"\\" in body and (b"\\ud" in body or b"\\uD" in body):
        # An escaped surrogate: fine in a pair, but a lone one is no character at all and
        # could not be logged or answered in UTF-8. (A body without any backslash, the common
        # case, is told by one memchr: a tenth of the two searches.)
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise malformed(
                "the JSON body has a lone UTF-16 surrogate escape (such as \\ud800), which is "
                "not a character"
            ) from None
    return value


@dataclass
class Table:
    """Rows in one of the shapes clients send: ``records`` (list of dicts), ``split``
    (column names + rows), ``columnar`` (name -> values) or ``positional`` (rows in signature
    order, no names)."""

    kind: str
    data: Any
    columns: list[str] | None = None
    # CSV: every value is the cell's text (None for an empty cell) until the signature says
    # which features are numbers.
    text: bool = False

    def __len__(self) -> int:
        if self.kind == "columnar":
            return len(next(iter(self.data.values()), []))
        return len(self.data)

    def key_value(self, key: str | None) -> str | None:
        """The first row's value of column ``key`` (sticky arm assignment), if present."""
        if key is None or not len(self):
            return None
        if self.kind == "records":
            value = self.data[0].get(key) if isinstance(self.data[0], dict) else None
        elif self.kind == "split":
            if self.columns is None or key not in self.columns:
                return None
            row = self.data[0]
            value = row[self.columns.index(key)] if isinstance(row, list) else None
        elif self.kind == "columnar":
            values = self.data.get(key)
            value = values[0] if isinstance(values, list) and values else None
        else:
            return None
        if value is None:
            return None
        if isinstance(value, float) and value.is_integer():
            # 42 from JSON, 42.0 from a float tensor: the same customer, the same arm.
            return str(int(value))
        return str(value)


# -- MLflow ------------------------------------------------------------------------------------


def mlflow_table(payload: Any) -> tuple[Table, dict[str, Any]]:
    """The table and the ``params`` of an MLflow JSON scoring request."""
    if not isinstance(payload, dict):
        raise invalid(
            "the JSON body must be an object with one of the keys dataframe_split, "
            "dataframe_records, instances or inputs"
        )
    params = payload.get("params") or {}
    if not isinstance(params, dict):
        raise invalid("'params' must be a JSON object")
    formats = [
        k for k in ("dataframe_split", "dataframe_records", "instances", "inputs") if k in payload
    ]
    extra = sorted(
        set(payload) - {"dataframe_split", "dataframe_records", "instances", "inputs", "params"}
    )
    if len(formats) != 1 or extra:
        found = ", ".join(sorted(payload)) or "none"
        raise invalid(
            "the JSON body needs exactly one of the keys dataframe_split, dataframe_records, "
            f"instances or inputs (and optionally params); found: {found}"
        )
    fmt = formats[0]
    value = payload[fmt]
    if fmt == "dataframe_split":
        if not isinstance(value, dict) or not isinstance(value.get("data"), list):
            raise invalid("dataframe_split must be an object with 'columns' and 'data' lists")
        columns = value.get("columns")
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            raise invalid("dataframe_split.columns must be a list of feature names")
        return Table("split", value["data"], [str(c) for c in columns]), params
    if fmt == "dataframe_records":
        if not isinstance(value, list):
            raise invalid("dataframe_records must be a list of objects (one per row)")
        return Table("records", value), params
    # instances / inputs: a list of rows (objects or lists), or an object of columns.
    if isinstance(value, dict):
        if not all(isinstance(v, list) for v in value.values()):
            raise invalid(f"{fmt} as an object must map each feature to a list of values")
        return Table("columnar", value), params
    if isinstance(value, list):
        if value and all(isinstance(r, dict) for r in value):
            return Table("records", value), params
        return Table("positional", value), params
    raise invalid(f"{fmt} must be a list of rows or an object of feature columns")


def csv_table(body: bytes) -> Table:
    import csv
    import io

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise malformed("the CSV body is not UTF-8 text") from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        # e.g. a field over the csv module's limit (128 KiB), or a NUL byte
        raise malformed(f"the CSV body cannot be read: {exc}") from None
    rows = [r for r in rows if r]
    if not rows:
        raise invalid("the CSV body is empty; send a header row and at least one data row")
    header, data = rows[0], rows[1:]
    converted = []
    for row in data:
        if len(row) != len(header):
            raise invalid(f"a CSV row has {len(row)} values; the header names {len(header)}")
        converted.append([None if v == "" else v for v in row])
    return Table("split", converted, header, text=True)


def _numbers_from_text(
    predictor: Features, names: list[str], row_lists: list[list[Any]]
) -> list[list[Any]]:
    """CSV rows in signature order with the numeric features' text parsed as floats."""
    numeric = [i for i, n in enumerate(names) if predictor.kinds[n] == "numeric"]
    if not numeric:
        return row_lists
    out = []
    bad: list[str] = []
    for row in row_lists:
        row = list(row)
        for i in numeric:
            value = row[i]
            if value is not None:
                try:
                    row[i] = float(value)
                except ValueError:
                    if names[i] not in bad:
                        bad.append(names[i])
        out.append(row)
    if bad:
        raise invalid(
            f"feature(s) {_names(bad)} must be numbers (or empty) for "
            f"{predictor.name}:{predictor.version}"
        )
    return out


# -- signature checks ----------------------------------------------------------------------------


@dataclass
class Inputs:
    """Validated model inputs: ``matrix`` (float64, signature order) when every feature is
    numeric, else ``columns`` (feature -> values, for the DataFrame path)."""

    rows: int
    matrix: np.ndarray | None = None
    columns: dict[str, list[Any]] | None = None
    # The features whose column holds values as sent (not numbers): built with dtype object so
    # that pandas cannot infer float64 from an int and a null and turn 1 into "1.0".
    categorical: frozenset[str] = frozenset()
    # Columns the request named that the model does not take (ignored unless strict).
    ignored: list[str] = field(default_factory=list)

    def frame(self, names: list[str]) -> Any:
        import numpy as np
        import pandas as pd

        if self.matrix is not None:
            return pd.DataFrame(self.matrix, columns=names)
        assert self.columns is not None
        data = {
            n: np.array(self.columns[n], dtype=object if n in self.categorical else "float64")
            for n in names
        }
        return pd.DataFrame(data, columns=names)


def _names(items: list[str]) -> str:
    shown = ", ".join(repr(n) for n in items[:_LIST_LIMIT])
    return shown + (f" (and {len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else "")


def check_columns(
    got: list[str], predictor: Features, key: str | None, strict: bool = True
) -> list[str]:
    """The extra columns (to be ignored); raises when a feature is missing, or, with
    ``strict``, when there are extra columns."""
    expected = predictor.names
    if got == expected:
        return []
    have = set(got)
    missing = [n for n in expected if n not in have]
    allowed = set(expected) | ({key} if key else set())
    extra = [n for n in got if n not in allowed]
    if missing or (extra and strict):
        parts = []
        if missing:
            parts.append(f"missing feature(s) {_names(missing)}")
        if extra:
            parts.append(f"unknown feature(s) {_names(extra)}")
        raise invalid(
            f"the input does not match the signature of {predictor.name}:{predictor.version}: "
            + "; ".join(parts)
        )
    if len(got) != len(set(got)):
        raise invalid("the input names a feature more than once")
    return extra


def _mistyped(predictor: Features, columns: dict[str, list[Any]]) -> BadRequest:
    bad = []
    for name in predictor.names:
        if predictor.kinds[name] != "numeric":
            continue
        if any(type(v) not in _NUMERIC_TYPES for v in columns[name]):
            bad.append(name)
    return invalid(
        f"feature(s) {_names(bad)} must be numbers (or null) for "
        f"{predictor.name}:{predictor.version}"
    )


def to_inputs(
    table: Table, predictor: Features, key: str | None = None, *, strict: bool = True
) -> Inputs:
    """The table as model inputs in signature order; extra columns are refused with
    ``strict``, else left out and listed in `Inputs.ignored`."""
    inputs = _to_inputs(table, predictor, key, strict)
    if inputs.matrix is not None:
        import numpy as np

        if np.isinf(inputs.matrix).any():
            bad = [n for i, n in enumerate(predictor.names) if np.isinf(inputs.matrix[:, i]).any()]
            raise invalid(f"feature(s) {_names(bad)}: a value {_INFINITE}")
    return inputs


def _to_inputs(table: Table, predictor: Features, key: str | None, strict: bool) -> Inputs:
    names = predictor.names
    rows = len(table)
    ignored: list[str] = []
    if rows == 0:
        raise invalid("the input has no rows to predict")
    if table.kind == "positional":
        data = table.data
        width = len(names)
        for row in data:
            if not isinstance(row, list) or len(row) != width:
                raise invalid(
                    f"each row without names must be a list of {width} values in signature "
                    f"order ({_names(names)})"
                )
        columns_list = names
        row_lists = data
    elif table.kind == "split":
        assert table.columns is not None
        ignored = check_columns(table.columns, predictor, key, strict)
        columns_list = table.columns
        row_lists = table.data
        width = len(columns_list)
        for row in row_lists:
            if not isinstance(row, list) or len(row) != width:
                raise invalid(f"each row of dataframe_split.data must be a list of {width} values")
    elif table.kind == "records":
        first = table.data[0]
        if not isinstance(first, dict):
            raise invalid("each record must be an object of feature values")
        expected = set(names)
        row_lists = []
        seen: set[str] = set()
        for record in table.data:
            if not isinstance(record, dict):
                raise invalid("each record must be an object of feature values")
            if record.keys() != expected:
                for name in check_columns(list(record), predictor, key, strict):
                    if name not in seen:
                        seen.add(name)
                        ignored.append(name)
            row_lists.append([record.get(n) for n in names])
        columns_list = names
    else:  # columnar
        ignored = check_columns(list(table.data), predictor, key, strict)
        lengths = {len(v) for v in table.data.values()}
        if len(lengths) != 1:
            raise invalid("every feature column must hold the same number of values")
        columns = {n: table.data[n] for n in names}
        if predictor.numeric:
            flat = [v for n in names for v in columns[n]]
            if not set(map(type, flat)) <= _NUMERIC_TYPES:
                raise _mistyped(predictor, columns)
            matrix = _float_matrix([columns[n] for n in names]).T.copy()
            return Inputs(rows, matrix=matrix, ignored=ignored)
        return _categorical_inputs(predictor, columns, rows, ignored)

    if columns_list is not names and columns_list != names:
        order = [columns_list.index(n) for n in names]
        row_lists = [[row[i] for i in order] for row in row_lists]
    if table.text:
        row_lists = _numbers_from_text(predictor, names, row_lists)
    if predictor.numeric:
        types: set[type] = set()
        for row in row_lists:
            types.update(map(type, row))
        if not types <= _NUMERIC_TYPES:
            raise _mistyped(predictor, {n: [r[i] for r in row_lists] for i, n in enumerate(names)})
        return Inputs(rows, matrix=_float_matrix(row_lists), ignored=ignored)
    columns = {n: [r[i] for r in row_lists] for i, n in enumerate(names)}
    return _categorical_inputs(predictor, columns, rows, ignored)


def _float_matrix(values: list[Any]) -> np.ndarray:
    import numpy as np

    try:
        return np.array(values, dtype="float64")
    except OverflowError:
        raise invalid(f"a feature value {_INFINITE}") from None


def _categorical_inputs(
    predictor: Features, columns: dict[str, list[Any]], rows: int, ignored: list[str]
) -> Inputs:
    categorical = []
    for name in predictor.names:
        values = columns[name]
        if predictor.kinds[name] == "numeric":
            if any(type(v) not in _NUMERIC_TYPES for v in values):
                raise _mistyped(predictor, columns)
            try:
                floats = [math.nan if v is None else float(v) for v in values]
            except OverflowError:
                raise invalid(f"feature {name!r}: a value {_INFINITE}") from None
            if any(math.isinf(v) for v in floats):
                raise invalid(f"feature {name!r}: a value {_INFINITE}")
            columns[name] = floats
        else:
            for v in values:
                if isinstance(v, (list, dict)):
                    raise invalid(f"feature {name!r} must hold single values, not lists or objects")
                if isinstance(v, float) and math.isinf(v):
                    raise invalid(f"feature {name!r}: a value {_INFINITE}")
                if isinstance(v, int) and not isinstance(v, bool) and abs(v) > 2**63:
                    raise invalid(f"feature {name!r}: a value {_INFINITE}")
            categorical.append(name)
    return Inputs(rows, columns=columns, categorical=frozenset(categorical), ignored=ignored)


# -- Open Inference Protocol v2 ------------------------------------------------------------------

_OIP_NUMERIC = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    if not data or not isinstance(data[0], list):
        return data
    out: list[Any] = []
    for item in data:
        out.extend(_flatten(item))
    return out


@dataclass
class OipRequest:
    id: str | None
    inputs: list[dict[str, Any]]
    outputs: list[str] | None
    parameters: dict[str, Any]


def oip_request(body: bytes, header_length: int | None) -> OipRequest:
    """Parse an infer request; with the binary extension, ``header_length`` bytes of JSON are
    followed by the raw tensors named by each input's ``binary_data_size``."""
    head = body if header_length is None else body[:header_length]
    if header_length is not None and not 0 <= header_length <= len(body):
        raise malformed("Inference-Header-Content-Length is larger than the body")
    payload = parse_json(head)
    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list):
        raise invalid("an inference request needs an 'inputs' list of tensors")
    offset = len(head)
    inputs = []
    for tensor in payload["inputs"]:
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise invalid("each input tensor needs a 'name', 'shape', 'datatype' and 'data'")
        shape = tensor.get("shape")
        datatype = tensor.get("datatype")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise invalid(f"input {tensor['name']!r} needs a 'shape' list of sizes")
        if not isinstance(datatype, str):
            raise invalid(f"input {tensor['name']!r} needs a 'datatype'")
        parameters = tensor.get("parameters")
        if parameters is None:
            parameters = {}
        elif not isinstance(parameters, dict):
            raise invalid(f"the 'parameters' of input {tensor['name']!r} must be an object")
        size = parameters.get("binary_data_size")
        if size is not None:
            if datatype not in _OIP_NUMERIC and datatype != "BYTES":
                raise invalid(
                    f"binary input {tensor['name']!r} has datatype {datatype!r}; use BYTES or "
                    "a numeric datatype (BOOL, INT*, UINT*, FP16/32/64)"
                )
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise invalid(
                    f"binary_data_size of input {tensor['name']!r} must be a whole number of "
                    "bytes, 0 or more"
                )
            if offset + size > len(body):
                raise malformed(
                    f"binary_data_size of input {tensor['name']!r} runs past the end of the body"
                )
            chunk = body[offset : offset + size]
            offset += size
            if datatype == "BYTES":
                data = _binary_strings(chunk, tensor["name"])
            else:
                data = _binary_numbers(chunk, datatype, tensor["name"])
        else:
            if "data" not in tensor:
                raise invalid(f"input {tensor['name']!r} has no 'data'")
            data = _flatten(tensor["data"])
        count = 1
        for d in shape:
            count *= d
        if len(data) != count:
            raise invalid(
                f"input {tensor['name']!r} has {len(data)} values; its shape {shape} needs {count}"
            )
        inputs.append({"name": tensor["name"], "shape": shape, "datatype": datatype, "data": data})
    return _finish_request(payload, inputs)


def _binary_numbers(chunk: bytes, datatype: str, name: str) -> list[Any]:
    import numpy as np

    try:
        # Integer tensors stay integers (a categorical code 1 is "1", not "1.0").
        values: list[Any] = np.frombuffer(chunk, dtype=_OIP_NUMERIC[datatype]).tolist()
    except ValueError:
        raise malformed(f"binary data of input {name!r} does not fit its datatype") from None
    return values


def _binary_strings(chunk: bytes, name: str) -> list[Any]:
    """The binary tensor extension's BYTES layout: each element as a 4-byte little-endian
    length and that many bytes (UTF-8 text here)."""
    out: list[Any] = []
    offset = 0
    end = len(chunk)
    while offset < end:
        if offset + 4 > end:
            raise malformed(f"binary BYTES data of input {name!r} ends inside a length prefix")
        size = int.from_bytes(chunk[offset : offset + 4], "little")
        offset += 4
        if offset + size > end:
            raise malformed(f"a BYTES element of input {name!r} runs past its binary data")
        try:
            out.append(chunk[offset : offset + size].decode("utf-8"))
        except UnicodeDecodeError:
            raise invalid(f"a BYTES element of input {name!r} is not UTF-8 text") from None
        offset += size
    return out


def _finish_request(payload: dict[str, Any], inputs: list[dict[str, Any]]) -> OipRequest:
    """The request's id, wanted outputs and parameters around its parsed inputs."""
    wanted = payload.get("outputs")
    names = None
    if isinstance(wanted, list):
        names = [str(o["name"]) for o in wanted if isinstance(o, dict) and o.get("name")]
    request_id = payload.get("id")
    if request_id is not None:
        if isinstance(request_id, (list, dict)):
            raise invalid("the request 'id' must be a string")
        request_id = str(request_id)
        if not valid_request_id(request_id):
            raise invalid(
                f"the request 'id' must be 1 to {MAX_REQUEST_ID} printable ASCII characters "
                "(it is returned in the X-Request-ID header)"
            )
    parameters = payload.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise invalid("the request 'parameters' must be an object")
    return OipRequest(request_id, inputs, names or None, parameters or {})


def oip_table(request: OipRequest, predictor: Features) -> Table:
    """One tensor per feature (shape [n] or [n, 1]), or a single [n, features] tensor in
    signature order."""
    inputs = request.inputs
    names = predictor.names
    if len(inputs) == 1 and inputs[0]["name"] not in predictor.kinds:
        tensor = inputs[0]
        shape = tensor["shape"]
        if len(shape) != 2 or shape[1] != len(names):
            raise invalid(
                f"a single input tensor must have shape [rows, {len(names)}] (the features in "
                f"signature order); got {shape}"
            )
        _check_datatype(tensor, predictor, None)
        data = tensor["data"]
        width = len(names)
        return Table("positional", [data[i : i + width] for i in range(0, len(data), width)])
    columns: dict[str, list[Any]] = {}
    rows = None
    for tensor in inputs:
        shape = tensor["shape"]
        if not shape or len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
            raise invalid(
                f"input {tensor['name']!r} must have shape [rows] or [rows, 1]; got {shape}"
            )
        if rows is not None and shape[0] != rows:
            raise invalid("every input tensor must have the same number of rows")
        rows = shape[0]
        if tensor["name"] in predictor.kinds:
            _check_datatype(tensor, predictor, tensor["name"])
        columns[tensor["name"]] = tensor["data"]
    return Table("columnar", columns)


def _check_datatype(tensor: dict[str, Any], predictor: Features, feature: str | None) -> None:
    datatype = tensor["datatype"]
    numeric = predictor.numeric if feature is None else predictor.kinds[feature] == "numeric"
    if numeric and datatype not in _OIP_NUMERIC:
        what = f"feature {feature!r}" if feature else "the input tensor"
        raise invalid(
            f"{what} is numeric; its datatype must be FP64, FP32 or an integer type, not {datatype}"
        )
    if datatype == "BYTES":
        tensor["data"] = [v.decode() if isinstance(v, bytes) else v for v in tensor["data"]]


def oip_datatype(values: np.ndarray) -> str:
    kind = values.dtype.kind
    if kind == "b":
        return "BOOL"
    if kind in "iu":
        return "INT64"
    if kind == "f":
        return "FP64"
    return "BYTES"
