"""Model references: names, aliases, ``name@alias`` / ``name:version`` / ``name:latest``, and
resolving one to the version record it points at."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlopsctl import names
from mlopsctl.errors import NotFound, UsageError

if TYPE_CHECKING:
    from mlopsctl.records.version import VersionRecord
    from mlopsctl.store.base import ObjectStore


@dataclass(frozen=True)
class Ref:
    name: str
    alias: str | None = None
    version: int | None = None

    def __str__(self) -> str:
        if self.alias:
            return f"{self.name}@{self.alias}"
        if self.version is not None:
            return f"{self.name}:{self.version}"
        return self.name


def check_name(name: str) -> str:
    """A model name (the grammar is in mlopsctl/names.py); UsageError stating the rule."""
    return names.check_name("model", name)


def check_alias(alias: str) -> str:
    return names.check_name("alias", alias)


def parse_ref(text: str) -> Ref:
    """name, name@alias, name:version or name:latest."""
    if "@" in text:
        name, _, alias = text.partition("@")
        return Ref(check_name(name), alias=check_alias(alias))
    if ":" in text:
        name, _, version = text.partition(":")
        if version == "latest":
            return Ref(check_name(name))
        try:
            number = names.check_version(version)
        except UsageError as exc:
            raise UsageError(f"invalid version in {names.shown(text)}", exc.hint) from None
        return Ref(check_name(name), version=number)
    return Ref(check_name(text))


def resolve(store: ObjectStore, ref: Ref | str) -> VersionRecord:
    """The version record a reference points at."""
    # Imported here: versions.py and aliases.py check names with this module.
    from mlopsctl.registry.aliases import get_alias
    from mlopsctl.registry.versions import get_version, latest_version

    ref = parse_ref(ref) if isinstance(ref, str) else ref
    if ref.alias:
        found = get_alias(store, ref.name, ref.alias)
        if found is None:
            raise NotFound(
                f"model '{ref.name}' has no alias '{ref.alias}'",
                f"set it with: mlopsctl models alias set {ref.name} {ref.alias} VERSION",
            )
        return get_version(store, ref.name, int(found[0]["version"]))
    if ref.version is not None:
        return get_version(store, ref.name, ref.version)
    latest = latest_version(store, ref.name)
    if latest is None:
        raise NotFound(
            f"no model named '{ref.name}' in the store", "list models: mlopsctl models list"
        )
    return get_version(store, ref.name, latest)
