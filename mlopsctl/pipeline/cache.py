"""The step cache, kept in the store so every machine and CI job on the same store shares it.

Key = sha256 of the canonical JSON of everything that decides a step's outputs: what runs (the
component and its code digest, or the command / function and the `code:` files), the resolved
parameters, the input digests, and the environment (Python and library versions; the image
digest when run in a container). A step that failed or was interrupted is never written."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlopsctl.digest import canonical_json, parse_digest, sha256_bytes
from mlopsctl.errors import AlreadyExists, NotFound
from mlopsctl.records import RecordInvalid, cache_entry

if TYPE_CHECKING:
    from mlopsctl.records.cache_entry import CacheEntry
    from mlopsctl.store.base import ObjectStore

KEY_VERSION = 1


def cache_key(material: dict[str, Any]) -> str:
    return parse_digest(sha256_bytes(canonical_json({"v": KEY_VERSION, **material})))


def entry_key(key: str) -> str:
    return f"cache/{key[:2]}/{key}.json"


def lookup(store: ObjectStore, key: str) -> CacheEntry | None:
    """The cached result, or None. An entry whose blobs are gone (garbage-collected, or a
    store copied without them) is a miss, never a result that points at nothing; so is one
    that is not a record (the step runs, and the entry is left as it is)."""
    from mlopsctl.store.blobs import blob_key

    try:
        entry = cache_entry.from_json(store.get(entry_key(key)))
    except (NotFound, RecordInvalid):
        return None
    for ref in (entry.get("outputs") or {}).values():
        if not store.exists(blob_key(ref["digest"])):
            return None
    return entry


def save(store: ObjectStore, key: str, entry: CacheEntry) -> None:
    """The one writer of cache entries (put-if-absent)."""
    try:
        store.put_if_absent(entry_key(key), cache_entry.to_json(entry))
    except AlreadyExists:
        pass  # another machine cached the same step first; same inputs, equivalent result
