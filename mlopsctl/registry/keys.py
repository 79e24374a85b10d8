"""Where the registry keeps its records in the store (keys relative to the store's root):

models/<name>/versions/<n>.json          immutable version record with full provenance
models/<name>/aliases/<alias>.json       current pointer, moved only by compare-and-swap
models/<name>/alias-history/<alias>/<seq>.json   one record per move, never rewritten
models/<name>/latest.json                a hint naming a recent version, so that finding
                                         the latest needs no listing of every version
models/<name>/by-digest/<hex>.json       which version holds an artifact, claimed before the
                                         version is allocated (register.py)
models/<name>/by-digest.json             the index holds the versions from before it

Every key is built here, and every name in one is checked against its grammar
(mlopsctl/names.py) first: no model or alias name can step out of its folder.
"""

from __future__ import annotations

from mlopsctl.digest import parse_digest
from mlopsctl.names import check_name, check_version

MODELS = "models/"


def model_prefix(name: str) -> str:
    return f"{MODELS}{check_name('model', name)}/"


def versions_prefix(name: str) -> str:
    return f"{model_prefix(name)}versions/"


def version_key(name: str, version: int) -> str:
    return f"{versions_prefix(name)}{check_version(version)}.json"


def alias_key(name: str, alias: str) -> str:
    return f"{model_prefix(name)}aliases/{check_name('alias', alias)}.json"


def history_prefix(name: str, alias: str) -> str:
    return f"{model_prefix(name)}alias-history/{check_name('alias', alias)}/"


def history_key(name: str, alias: str, seq: int) -> str:
    return f"{history_prefix(name, alias)}{int(seq):010d}.json"


def latest_key(name: str) -> str:
    return f"{model_prefix(name)}latest.json"


def digest_key(name: str, digest: str) -> str:
    """The index entry of an artifact digest (``sha256:<hex>``) among `name`'s versions."""
    return f"{model_prefix(name)}by-digest/{parse_digest(digest)}.json"


def digest_index_key(name: str) -> str:
    return f"{model_prefix(name)}by-digest.json"
