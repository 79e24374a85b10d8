"""Every kind of stored record, and which kind a store key holds."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from mlopsctl.errors import UsageError
from mlopsctl.records import (
    alias_move,
    cache_entry,
    dataset,
    deployment,
    digest_entry,
    digest_index,
    event,
    experiment,
    image,
    live_run,
    model_latest,
    rollout,
    run,
    step,
    trial,
    trigger_firing,
    trigger_state,
    version,
)
from mlopsctl.records.codec import decode


class RecordKind(NamedTuple):
    name: str
    key_pattern: str | None  # for people; None: kept inside another record
    key_re: re.Pattern[str] | None  # matched over the whole key

    @property
    def schema_file(self) -> str:
        return f"{self.name}.schema.json"


# Key patterns do not overlap (a run's excludes trials'; live runs sit one folder down).
KINDS: dict[str, RecordKind] = {
    module.KIND: RecordKind(module.KIND, module.KEY_PATTERN, module.KEY_RE)
    for module in (
        run,
        trial,
        live_run,
        step,
        experiment,
        cache_entry,
        version,
        alias_move,
        model_latest,
        digest_entry,
        digest_index,
        event,
        trigger_state,
        trigger_firing,
        deployment,
        rollout,
        image,
        dataset,
    )
}


def kind_of_key(key: str) -> str | None:
    """The kind of record stored at ``key``; None for anything else (blobs, logs, ...)."""
    for kind in KINDS.values():
        if kind.key_re is not None and kind.key_re.fullmatch(key):
            return kind.name
    return None


def decode_stored(key: str, data: bytes) -> dict[str, Any]:
    """The record stored at ``key``, decoded as its kind is (for readers that walk several
    kinds: the site, gc, run listings); RecordInvalid when it is not one."""
    return decode(data, kind_of_key(key) or "stored")


def record_kind(name: str) -> RecordKind:
    try:
        return KINDS[name]
    except KeyError:
        raise UsageError(
            f"unknown record kind {name!r}", f"known kinds: {', '.join(sorted(KINDS))}"
        ) from None
