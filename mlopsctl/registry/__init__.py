"""The model registry, kept in the store with no server (the layout is in keys.py):

- refs.py      model names and aliases, ``name@alias`` / ``name:version`` references, resolve
- versions.py  version records: read, latest, list
- register.py  registering (from a run, or a record): one artifact, one version
- aliases.py   alias pointers moved by compare-and-swap, their history, rollback
- fetch.py     a version's model out of the store: model.json facts, download, verified cache

This module only re-exports their public names.
"""

from __future__ import annotations

from mlopsctl.registry.aliases import alias_history, get_alias, rollback, set_alias
from mlopsctl.registry.fetch import cached_model_dir, download, load_model, model_facts
from mlopsctl.registry.keys import MODELS
from mlopsctl.registry.refs import Ref, check_alias, check_name, parse_ref, resolve
from mlopsctl.registry.register import register_from_run, register_version, version_record
from mlopsctl.registry.versions import (
    all_versions,
    get_version,
    latest_version,
    list_models,
    list_versions,
    version_numbers,
)

__all__ = [
    "MODELS",
    "Ref",
    "alias_history",
    "all_versions",
    "cached_model_dir",
    "check_alias",
    "check_name",
    "download",
    "get_alias",
    "get_version",
    "latest_version",
    "list_models",
    "list_versions",
    "load_model",
    "model_facts",
    "parse_ref",
    "register_from_run",
    "register_version",
    "resolve",
    "rollback",
    "set_alias",
    "version_numbers",
    "version_record",
]
