"""What a dataset is built from: a `from_logs:` window over a model's serving logs and an
optional `mix:` of other data, as a Dataset spec (`kind: Dataset`), an ingest step's `with:`
or a Trigger's `run.dataset` writes them. The JSON Schema parts below are the one definition:
spec/schemas/dataset.schema.json holds the same (a unit test keeps them equal) and ingest's
`with:` schema uses them as they are.

The window is over prediction time: a logged row counts when its `ts` lies in [since, until).
`until` is a time (ISO 8601, UTC when no offset is given) or a date (its midnight, UTC);
without it, the moment of the build. `since` is a time or a date too, or `window` (a duration
like 30d) counts back from `until`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from mlopsctl.errors import UsageError
from mlopsctl.names import schema_pattern
from mlopsctl.timeutil import parse_duration, parse_time, stamp

_TIME = {
    "type": "string",
    "minLength": 1,
    "pattern": r"^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$",
    "x-messages": {
        "pattern": "{where} '{value}' is not a time: write 2026-05-01 or 2026-05-01T12:00:00Z"
    },
}

FROM_LOGS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Rows a model served (logs/predictions/<model>/) joined with the outcomes "
    "that came back (logs/feedback/<model>/) by request id and row, over a window of "
    "prediction time.",
    "required": ["model"],
    "additionalProperties": False,
    "oneOf": [{"required": ["window"]}, {"required": ["since"]}],
    "properties": {
        "model": {
            "type": "string",
            "pattern": schema_pattern("model"),
            "description": "The served model whose logs are read.",
            "x-messages": {"pattern": "{where} '{value}' is not a model name"},
        },
        "window": {
            "type": "string",
            "pattern": "^[0-9]+[smhdw]$",
            "description": "How far back from until predictions count, like 30d.",
            "x-messages": {"pattern": "{where} '{value}' should be a duration like 12h or 30d"},
        },
        "since": {**_TIME, "description": "The window's start (a time or a date, UTC)."},
        "until": {
            **_TIME,
            "description": "The window's end, not included (a time or a date, UTC); default: "
            "when the dataset is built.",
        },
        "version": {
            "oneOf": [{"type": "integer", "minimum": 1}, {"const": "all"}],
            "description": "Only rows this model version served (default: all).",
        },
        "target": {
            "type": "string",
            "minLength": 1,
            "description": "Name of the outcome column in the table (default: the model's "
            "target, from its latest version; else target).",
        },
        "features": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"type": "string", "minLength": 1},
            "description": "Keep only these features (default: every feature logged).",
        },
    },
}

_SOURCE: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "oneOf": [{"required": ["path"]}, {"required": ["sklearn"]}, {"required": ["dataset"]}],
    "properties": {
        "path": {
            "type": "string",
            "minLength": 1,
            "description": "A CSV or Parquet file, relative to the project root.",
        },
        "sklearn": {
            "type": "string",
            "minLength": 1,
            "description": "A dataset bundled with scikit-learn, like breast_cancer.",
        },
        "dataset": {
            "type": "string",
            "pattern": "^sha256:[0-9a-f]{64}$",
            "description": "A dataset built before, by its digest (sha256:...).",
            "x-messages": {"pattern": "{where} '{value}' is not a dataset digest (sha256:...)"},
        },
    },
}

MIX_SCHEMA: dict[str, Any] = {
    "description": "Other data added to the logged rows (the original training set, say): "
    "a source or a list of them; each must hold the features and the target column.",
    "oneOf": [_SOURCE, {"type": "array", "minItems": 1, "items": _SOURCE}],
}


@dataclass(frozen=True)
class Window:
    """[since, until) of prediction time."""

    since: datetime
    until: datetime

    def as_dict(self) -> dict[str, str]:
        return {"since": stamp(self.since), "until": stamp(self.until)}


def parse_moment(value: Any, what: str) -> datetime:
    """A time or a date (its midnight), UTC unless an offset is given."""
    text = str(value).strip()
    try:
        if len(text) == 10:
            return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
        return parse_time(text)
    except ValueError:
        raise UsageError(
            f"{what} {text!r} is not a time", "write a date (2026-05-01) or 2026-05-01T12:00:00Z"
        ) from None


def resolve_window(from_logs: dict[str, Any], now: datetime) -> Window:
    """The window a `from_logs:` mapping names, at `now` (its default end)."""
    until = parse_moment(from_logs["until"], "until") if from_logs.get("until") else now
    if from_logs.get("since") is not None and from_logs.get("window") is not None:
        raise UsageError("from_logs has both 'since' and 'window'", "give only one of them")
    if from_logs.get("since") is not None:
        since = parse_moment(from_logs["since"], "since")
    elif from_logs.get("window") is not None:
        since = until - parse_duration(from_logs["window"], "window")
    else:
        raise UsageError("from_logs needs 'window' (like 30d) or 'since'")
    if since >= until:
        raise UsageError(
            f"the window [{stamp(since)}, {stamp(until)}) is empty",
            "since must come before until",
        )
    return Window(since, until)


def mix_sources(mix: Any) -> list[dict[str, Any]]:
    """`mix:` as a list of sources."""
    if mix is None:
        return []
    return [dict(m) for m in (mix if isinstance(mix, list) else [mix])]
