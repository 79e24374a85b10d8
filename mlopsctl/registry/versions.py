"""Version records: reading one, finding the latest, listing versions and models. Registering
them is register.py's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlopsctl.errors import NotFound
from mlopsctl.names import is_name
from mlopsctl.records import RecordInvalid, model_latest
from mlopsctl.records import version as version_record
from mlopsctl.registry.keys import MODELS, latest_key, version_key, versions_prefix

if TYPE_CHECKING:
    from mlopsctl.records.version import VersionRecord
    from mlopsctl.store.base import ObjectStore


# -- reading -----------------------------------------------------------------------------
def version_numbers(store: ObjectStore, name: str) -> list[int]:
    prefix = versions_prefix(name)
    numbers = []
    for key in store.list(prefix):
        stem = key[len(prefix) :].removesuffix(".json")
        if is_name("version", stem):
            numbers.append(int(stem))
    return sorted(numbers)


def latest_version(store: ObjectStore, name: str) -> int | None:
    """The highest version number of `name` (None: no versions) in a few requests, whatever
    the number of versions: start from the hint, which must name an existing version, and
    step past the versions registered after it (by racing or killed registrations that did not
    move it). Without a usable hint (a store from before hints), list the versions."""
    hint: int | None = None
    try:
        value = model_latest.from_json(store.get(latest_key(name))).get("version")
        hint = value if type(value) is int and is_name("version", str(value)) else None
    except (NotFound, RecordInvalid):
        hint = None
    if hint is None or not store.exists(version_key(name, hint)):
        numbers = version_numbers(store, name)
        return numbers[-1] if numbers else None
    while store.exists(version_key(name, hint + 1)):
        hint += 1
    return hint


def get_version(store: ObjectStore, name: str, version: int) -> VersionRecord:
    """The version record ``models/<name>/versions/<version>.json``: the one reader of the
    kind (registering, in register.py, is its one writer)."""
    try:
        return version_record.from_json(store.get(version_key(name, version)))
    except NotFound:
        raise NotFound(
            f"model '{name}' has no version {version}",
            f"list its versions with: mlopsctl models list {name}",
        ) from None


def list_versions(store: ObjectStore, name: str) -> list[VersionRecord]:
    from concurrent.futures import ThreadPoolExecutor

    numbers = version_numbers(store, name)
    if not numbers:
        raise NotFound(f"no model named '{name}' in the store", "list models: mlopsctl models list")
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda n: get_version(store, name, n), numbers))


def all_versions(store: ObjectStore) -> list[VersionRecord]:
    """Every version record of every model, from one listing of models/ (lineage's search
    for what used a dataset)."""
    from concurrent.futures import ThreadPoolExecutor

    keys = [k for k in store.list(MODELS) if version_record.KEY_RE.fullmatch(k)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(lambda k: version_record.from_json(store.get(k)), keys))


def list_models(store: ObjectStore) -> list[dict[str, Any]]:
    """Every model with its latest version and aliases, from one listing of models/."""
    # Imported here: aliases.py builds on this module.
    from mlopsctl.registry.aliases import get_alias

    models: dict[str, dict[str, Any]] = {}
    for key in store.list(MODELS):
        parts = key[len(MODELS) :].split("/")
        if len(parts) != 3:
            continue
        name, kind, leaf = parts
        entry = models.setdefault(
            name, {"name": name, "versions": 0, "latest": None, "aliases": {}}
        )
        stem = leaf.removesuffix(".json")
        if kind == "versions" and is_name("version", stem):
            entry["versions"] += 1
            entry["latest"] = max(entry["latest"] or 0, int(stem))
        elif kind == "aliases":
            entry["aliases"][stem] = None
    for entry in models.values():
        for alias in entry["aliases"]:
            found = get_alias(store, entry["name"], alias)
            entry["aliases"][alias] = found[0]["version"] if found else None
    return [models[n] for n in sorted(models)]
