"""Serving with lookups: a model trained on feature sets takes requests that carry only the
entity key(s) and the request-time features (the model's features that no set provides); the
rest are read from the online store, row by row, before the model sees them.

`Lookup` is attached to a serving Predictor (mlopsctl/serving/predictor.py): the predictor's
request signature becomes `request_names`, its log schema `log_names` (the keys, then every
model feature: the values actually used are logged), and `predict` fills the request's inputs
in place with the looked-up values and predicts. A value older than its set's TTL, or an
entity the online store does not know, is missing (NaN), as it would be offline.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mlopsctl.config import load_project
from mlopsctl.errors import MlopsError, UsageError
from mlopsctl.features.online import OnlineStore, RedisOnline, online_url, open_online
from mlopsctl.features.spec import FeatureSet, featureset_from_record, key_text


class LookupUnavailable(RuntimeError):
    """The online store failed while serving a request (answered 500: not the client's fault)."""


class Lookup:
    def __init__(
        self,
        sets: list[FeatureSet],
        model_features: Sequence[tuple[str, str]],
        online: OnlineStore,
    ) -> None:
        self.online = online
        self.model_names = [name for name, _ in model_features]
        self.model_kinds = dict(model_features)
        wanted = set(self.model_names)
        self.sets: list[tuple[FeatureSet, list[tuple[str, int, bool]]]] = []
        provided: set[str] = set()
        for fs in sets:
            used = [
                (f.name, i + 1, f.type == "bool")
                for i, f in enumerate(fs.features)
                if f.name in wanted and f.name not in provided
            ]
            if used:
                self.sets.append((fs, used))
                provided.update(name for name, _, _ in used)
        if not self.sets:
            raise UsageError("the model uses no feature of its feature sets: nothing to look up")
        self.keys: list[str] = []
        self.key_types: dict[str, str] = {}
        for fs, _ in self.sets:
            for key, kind in fs.entities:
                if key not in self.key_types:
                    self.keys.append(key)
                    self.key_types[key] = kind
        self.provided = provided
        request_features = [
            n for n in self.model_names if n not in provided and n not in self.key_types
        ]
        self.request_names = [*self.keys, *request_features]
        self.request_kinds = {
            **{k: "numeric" if t == "int64" else "categorical" for k, t in self.key_types.items()},
            **{n: self.model_kinds[n] for n in request_features},
        }
        self.log_names = [*self.keys, *(n for n in self.model_names if n not in self.key_types)]
        self.log_kinds = [self.model_kinds.get(n) or self.request_kinds[n] for n in self.log_names]
        self.model_numeric = all(kind == "numeric" for kind in self.model_kinds.values())
        self._index = {name: i for i, name in enumerate(self.request_names)}

    def check(self) -> None:
        """Fail (UsageError) unless every set is loaded in the online store, so a server says
        so when it starts rather than on every request."""
        missing = [fs.name for fs, _ in self.sets if self.online.meta(fs.name) is None]
        if missing:
            raise UsageError(
                f"the online store {self.online.url} has no feature set(s) {', '.join(missing)}",
                "run `mlopsctl features materialize SPEC` (or set MLOPSCTL_ONLINE_STORE)",
            )

    def describe(self) -> dict[str, Any]:
        return {
            "online": self.online.url,
            "keys": self.keys,
            "request": self.request_names,
            "looked_up": {fs.name: [n for n, _, _ in used] for fs, used in self.sets},
        }

    def values(self, key_columns: dict[str, list[Any]], rows: int) -> dict[str, list[Any]]:
        """The looked-up features for `rows` entities given their key columns."""
        now_us = time.time_ns() // 1000
        wanted = []
        for fs, _ in self.sets:
            types = [t for _, t in fs.entities]
            columns = [key_columns[k] for k in fs.keys]
            wanted.append((fs, [key_text([c[i] for c in columns], types) for i in range(rows)]))
        try:
            if isinstance(self.online, RedisOnline):
                found = self.online.read_many(wanted)
            else:
                found = [self.online.read(fs, keys) for fs, keys in wanted]
        except MlopsError as exc:
            raise LookupUnavailable(f"online store: {exc.one_line()}") from None
        out: dict[str, list[Any]] = {}
        for (fs, used), stored in zip(self.sets, found, strict=True):
            oldest = None if fs.ttl is None else now_us - int(fs.ttl.total_seconds() * 1e6)
            live = [
                r if r is not None and (oldest is None or r[0] >= oldest) else None for r in stored
            ]
            for name, position, is_bool in used:
                column = [r[position] if r is not None else None for r in live]
                if is_bool:
                    column = [None if v is None else bool(v) for v in column]
                out[name] = column
        return out

    def predict(self, predictor: Any, inputs: Any) -> Any:
        """Fill ``inputs`` (mlopsctl.serving.codecs.Inputs of the request signature) in place
        with every logged column and predict with ``predictor``'s model."""
        import numpy as np

        rows = inputs.rows
        if inputs.matrix is not None:
            matrix = inputs.matrix
            given = {n: matrix[:, i].tolist() for n, i in self._index.items()}
        else:
            given = {n: list(inputs.columns[n]) for n in self.request_names}
        columns = {**given, **self.values({k: given[k] for k in self.keys}, rows)}
        inputs.columns = {n: columns[n] for n in self.log_names}
        inputs.matrix = None
        inputs.categorical = frozenset(
            n for n, kind in zip(self.log_names, self.log_kinds, strict=True) if kind != "numeric"
        )
        if self.model_numeric and getattr(predictor, "fast", False):
            model_matrix = np.array(
                [columns[n] for n in self.model_names], dtype="float64"
            ).T.reshape(rows, len(self.model_names))
            return predictor.predict_matrix(model_matrix)
        return predictor.predict_frame(inputs.frame(self.model_names))


def lookup_for(
    record: Mapping[str, Any],  # a version record
    model_features: Sequence[tuple[str, str]],
    *,
    project_root: Path | None = None,
    url: str | None = None,
) -> Lookup | None:
    """The Lookup of a model version whose record lists feature sets (None when it lists
    none): the online store from ``url``, MLOPSCTL_ONLINE_STORE or the project's default."""
    described = record.get("feature_sets") or []
    if not described:
        return None
    sets = [featureset_from_record(d) for d in described]
    if project_root is None:
        try:
            project_root = load_project().root
        except Exception:  # noqa: BLE001 - no project here: the working directory
            project_root = Path.cwd()
    where = online_url(project_root, url)
    lookup = Lookup(sets, model_features, open_online(where, project_root))
    lookup.check()
    return lookup
