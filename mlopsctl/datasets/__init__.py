"""Datasets built from production: the rows a model served (its prediction logs) joined with
the outcomes that came back (its feedback logs) over a window, optionally mixed with other data
(the original training set), stored content-addressed with their lineage.

- spec.py    the `from_logs:` and `mix:` definitions and the window they name
- logs.py    the log files a window reads, as local files with their digests
- join.py    the join and its rules (keys, duplicates, late and missing labels), in DuckDB
- mix.py     mixed-in sources (a file, a bundled scikit-learn set, a dataset built before)
- builder.py build, store and record a table; list and find builds

This module only re-exports their public names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlopsctl.lazy import lazy_exports

if TYPE_CHECKING:
    from mlopsctl.datasets.builder import (
        PREFIX,
        Built,
        build,
        build_spec,
        get_dataset,
        list_datasets,
        model_signature,
        outcome_type,
        record_key,
        save_built,
    )
    from mlopsctl.datasets.mix import BUNDLED, load_bundled_table, read_blob_table
    from mlopsctl.datasets.spec import (
        FROM_LOGS_SCHEMA,
        MIX_SCHEMA,
        Window,
        mix_sources,
        parse_moment,
        resolve_window,
    )

_EXPORTS = {
    "PREFIX": "builder",
    "Built": "builder",
    "build": "builder",
    "build_spec": "builder",
    "get_dataset": "builder",
    "list_datasets": "builder",
    "model_signature": "builder",
    "outcome_type": "builder",
    "record_key": "builder",
    "save_built": "builder",
    "BUNDLED": "mix",
    "load_bundled_table": "mix",
    "read_blob_table": "mix",
    "FROM_LOGS_SCHEMA": "spec",
    "MIX_SCHEMA": "spec",
    "Window": "spec",
    "mix_sources": "spec",
    "parse_moment": "spec",
    "resolve_window": "spec",
}

__all__ = [
    "BUNDLED",
    "FROM_LOGS_SCHEMA",
    "MIX_SCHEMA",
    "PREFIX",
    "Built",
    "Window",
    "build",
    "build_spec",
    "get_dataset",
    "list_datasets",
    "load_bundled_table",
    "mix_sources",
    "model_signature",
    "outcome_type",
    "parse_moment",
    "read_blob_table",
    "record_key",
    "resolve_window",
    "save_built",
]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
