"""The feature store: feature sets registered once (kind: FeatureSet specs) and used alike for
training and serving.

- spec.py         a FeatureSet as a value; entity key text; spec digest
- source.py       the source rows as a typed DuckDB view (file, folder, s3://, store:, a
                  pipeline output; SQL or Python transformation)
- offline.py      date-partitioned Parquet in the object store, manifests, the local cache
- pit.py          point-in-time training sets (DuckDB ASOF LEFT JOIN, Feast's semantics)
- online.py       the online store: SQLite (default) or Redis
- materialize.py  offline -> online, incrementally by event time
- lookup.py       serving with lookups (requests carry the entity keys)
- skew.py         served feature values against the offline ones

This module only re-exports their public names.
"""

from __future__ import annotations

from mlopsctl.features.lookup import Lookup, lookup_for
from mlopsctl.features.materialize import from_us, materialize, materialize_all
from mlopsctl.features.offline import (
    PREFIX,
    current_manifest,
    list_featuresets,
    local_files,
    materialize_offline,
)
from mlopsctl.features.online import (
    ONLINE_ENV,
    OnlineStore,
    RedisOnline,
    SqliteOnline,
    online_url,
    open_online,
)
from mlopsctl.features.pit import DEFAULT_TIMESTAMP, TrainingSet, join_files, training_set
from mlopsctl.features.skew import skew_check
from mlopsctl.features.spec import (
    FeatureSet,
    featureset_from_data,
    featureset_from_record,
    key_text,
    load_featureset,
    load_featuresets,
)

__all__ = [
    "DEFAULT_TIMESTAMP",
    "ONLINE_ENV",
    "PREFIX",
    "FeatureSet",
    "Lookup",
    "OnlineStore",
    "RedisOnline",
    "SqliteOnline",
    "TrainingSet",
    "current_manifest",
    "featureset_from_data",
    "featureset_from_record",
    "from_us",
    "join_files",
    "key_text",
    "list_featuresets",
    "load_featureset",
    "load_featuresets",
    "local_files",
    "lookup_for",
    "materialize",
    "materialize_all",
    "materialize_offline",
    "online_url",
    "open_online",
    "skew_check",
    "training_set",
]
