"""A FeatureSet spec as a value: its keys, timestamps, typed features, TTL, source and
transformation, and the two digests lineage records (the spec's, and its data's once
materialised)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from mlopsctl.digest import sha256_json
from mlopsctl.errors import UsageError
from mlopsctl.spec import load_spec
from mlopsctl.timeutil import parse_duration

NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?", re.ASCII)
NAME_RULE = (
    "feature set names are 1 to 63 lowercase letters, digits, '_' and '-', starting and "
    "ending with a letter or digit"
)

# Feature types: the DuckDB type rows are cast to, and the kind a model signature gives them.
DUCKDB_TYPES = {
    "float64": "DOUBLE",
    "float32": "FLOAT",
    "int64": "BIGINT",
    "int32": "INTEGER",
    "bool": "BOOLEAN",
    "string": "VARCHAR",
}
KEY_TYPES = {"int64": "BIGINT", "string": "VARCHAR"}


def check_featureset_name(name: object) -> str:
    if not isinstance(name, str) or NAME_RE.fullmatch(name) is None:
        raise UsageError(f"invalid feature set name {name!r}", NAME_RULE)
    return name


@dataclass(frozen=True)
class Feature:
    name: str
    type: str

    @property
    def numeric(self) -> bool:
        return self.type != "string"


@dataclass(frozen=True)
class FeatureSet:
    """One feature set, as its spec declares it."""

    name: str
    entities: tuple[tuple[str, str], ...]  # (column, int64|string)
    timestamp: str
    features: tuple[Feature, ...]
    ttl: timedelta | None  # None: no limit
    source: dict[str, Any]
    transform: dict[str, Any] = field(default_factory=dict)
    created_timestamp: str | None = None
    online: bool = True
    spec_digest: str = ""
    path: Path | None = None  # the spec file, when loaded from one

    @property
    def keys(self) -> list[str]:
        return [name for name, _ in self.entities]

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def ttl_seconds(self) -> int | None:
        return None if self.ttl is None else int(self.ttl.total_seconds())

    def describe(self) -> dict[str, Any]:
        """What a run and a model version keep of it (with the data digest added by the
        caller): enough to look its features up when serving, without the spec file."""
        return {
            "name": self.name,
            "spec_digest": self.spec_digest,
            "entities": [{"name": n, "type": t} for n, t in self.entities],
            "timestamp": self.timestamp,
            "features": [{"name": f.name, "type": f.type} for f in self.features],
            "ttl_s": self.ttl_seconds,
        }


def featureset_from_data(data: dict[str, Any], path: Path | None = None) -> FeatureSet:
    """A FeatureSet from validated spec data."""
    ttl_text = str(data["ttl"])
    ttl = None if ttl_text == "0" else parse_duration(ttl_text, "ttl")
    if ttl is not None and ttl.total_seconds() == 0:
        ttl = None
    return FeatureSet(
        name=check_featureset_name(data["name"]),
        entities=tuple((str(e["name"]), str(e.get("type", "int64"))) for e in data["entities"]),
        timestamp=str(data["timestamp"]),
        features=tuple(Feature(str(f["name"]), str(f["type"])) for f in data["features"]),
        ttl=ttl,
        source=dict(data["source"]),
        transform=dict(data.get("transform") or {}),
        created_timestamp=data.get("created_timestamp"),
        online=bool(data.get("online", True)),
        spec_digest=sha256_json(_without_descriptions(data)),
        path=path,
    )


def featureset_from_record(described: dict[str, Any]) -> FeatureSet:
    """The serving-side view of a set from what a version recorded (describe()): keys,
    features and TTL, no source."""
    ttl_s = described.get("ttl_s")
    entities = described["entities"]
    return FeatureSet(
        name=check_featureset_name(described["name"]),
        entities=tuple((str(e["name"]), str(e.get("type", "int64"))) for e in entities),
        timestamp=str(described.get("timestamp", "")),
        features=tuple(Feature(str(f["name"]), str(f["type"])) for f in described["features"]),
        ttl=None if not ttl_s else timedelta(seconds=int(ttl_s)),
        source={},
        spec_digest=str(described.get("spec_digest", "")),
    )


def _without_descriptions(data: dict[str, Any]) -> dict[str, Any]:
    """The spec without its free text, so rewording a description changes no digest."""
    out = {k: v for k, v in data.items() if k != "description"}
    out["features"] = [
        {k: v for k, v in f.items() if k != "description"} if isinstance(f, dict) else f
        for f in data.get("features", [])
    ]
    return out


def load_featureset(path: str | Path) -> FeatureSet:
    """Load and validate one FeatureSet spec (SpecError listing every problem)."""
    spec_path = Path(path)
    return featureset_from_data(load_spec(spec_path, kind="FeatureSet"), spec_path)


def load_featuresets(paths: list[str | Path]) -> list[FeatureSet]:
    """Several specs; two sets of one name, or two sets declaring one feature, are refused
    (a training set or a model signature holds each column once)."""
    sets = [load_featureset(p) for p in paths]
    check_distinct(sets)
    return sets


def check_distinct(sets: list[FeatureSet]) -> None:
    names: dict[str, FeatureSet] = {}
    owners: dict[str, str] = {}
    for fs in sets:
        if fs.name in names:
            raise UsageError(f"feature set '{fs.name}' is given twice")
        names[fs.name] = fs
        for feature in fs.feature_names:
            if feature in owners:
                raise UsageError(
                    f"feature '{feature}' is in both '{owners[feature]}' and '{fs.name}'",
                    "rename one of them (a transform: sql can alias it)",
                )
            owners[feature] = fs.name


def key_text(values: tuple[Any, ...] | list[Any], types: list[str]) -> str | None:
    """The online-store key of one entity: its key values as text (int64 keys as decimal
    integers, whatever type they arrived as), joined by U+001F. None when a value is missing
    or an int64 key is not a whole number."""
    parts = []
    for value, kind in zip(values, types, strict=True):
        if value is None:
            return None
        if kind == "int64":
            if isinstance(value, str):
                try:
                    value = int(value.strip())
                except ValueError:
                    return None
            elif isinstance(value, float):
                if value != value or not value.is_integer():
                    return None
                value = int(value)
            elif isinstance(value, bool):
                return None
            parts.append(str(int(value)))
        else:
            if isinstance(value, float) and value != value:
                return None
            parts.append(str(value))
    return "\x1f".join(parts)
