"""Where the registry keeps its records in the store (keys relative to the store's root):

models/<name>/versions/<n>.json          immutable version record with full provenance
models/<name>/aliases/<alias>.json       current pointer, moved only by compare-and-swap
models/<name>/alias-history/<alias>/<seq>.json   one record per move, never rewritten
models/<name>/latest.json                a hint naming a recent version, so that finding
                                         the latest needs no listing of every version
"""

from __future__ import annotations

MODELS = "models/"


def versions_prefix(name: str) -> str:
    return f"{MODELS}{name}/versions/"


def version_key(name: str, version: int) -> str:
    return f"{versions_prefix(name)}{version}.json"


def alias_key(name: str, alias: str) -> str:
    return f"{MODELS}{name}/aliases/{alias}.json"


def history_prefix(name: str, alias: str) -> str:
    return f"{MODELS}{name}/alias-history/{alias}/"


def history_key(name: str, alias: str, seq: int) -> str:
    return f"{history_prefix(name, alias)}{int(seq):010d}.json"


def latest_key(name: str) -> str:
    return f"{MODELS}{name}/latest.json"
