"""Traffic arms: weighted, sticky assignment, and the deployment record that holds the weights.

An arm is an alias (``production``) or a version number (``3``) of one model, with a weight.
A request goes to the arm whose cumulative-weight interval holds ``u(key)``, a uniform number
in [0, 1) derived from a BLAKE2b hash of the key column's value (or the request id): the same
customer always lands on the same arm, whichever worker or replica answers, and moving weights
moves only the share of keys between the old and new boundaries.

The weights live in the store, ``deployments/<model>/<deployment>.json`` (the deployment name
defaults to the model name), written by compare-and-swap; servers poll it, so
``mlopsctl traffic set`` changes a running split without a restart. Each change is an audit
event.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import Conflict, NotFound, UsageError
from mlopsctl.names import GRAMMARS, check_name, is_name
from mlopsctl.records import deployment as deployment_kind
from mlopsctl.timeutil import stamp

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mlopsctl.records.deployment import DeploymentRecord
    from mlopsctl.store.base import ObjectStore

DEPLOYMENTS = "deployments/"
# The label is an alias or a version number, in their grammars (mlopsctl/names.py).
_ARM = re.compile(
    rf"({GRAMMARS['alias'].body}|{GRAMMARS['version'].body})=([0-9]+(\.[0-9]+)?)", re.ASCII
)
_SCALE = float(1 << 64)
_MAX_CAS_TRIES = 20


@dataclass(frozen=True)
class ArmSpec:
    label: str  # an alias name or a version number
    weight: float

    @property
    def version(self) -> int | None:
        return int(self.label) if is_name("version", self.label) else None

    def ref(self, model: str) -> str:
        return f"{model}:{self.label}" if self.version is not None else f"{model}@{self.label}"


def parse_arm(text: str) -> ArmSpec:
    match = _ARM.fullmatch(text.strip())
    if not match:
        raise UsageError(
            f"invalid arm {text!r}",
            "write ALIAS=WEIGHT or VERSION=WEIGHT, e.g. production=95 candidate=5 or 3=50",
        )
    return ArmSpec(match.group(1), float(match.group(2)))


def check_arms(arms: list[ArmSpec]) -> list[ArmSpec]:
    labels = [a.label for a in arms]
    if len(set(labels)) != len(labels):
        raise UsageError("an arm is named twice", "give each alias or version once")
    if not arms or sum(a.weight for a in arms) <= 0:
        raise UsageError("the arms' weights add up to 0", "give at least one arm a weight above 0")
    return arms


def unit(key: str) -> float:
    """A stable uniform number in [0, 1) for ``key``."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def cumulative(weights: list[float]) -> tuple[float, ...]:
    total = sum(weights)
    running = 0.0
    bounds = []
    for w in weights:
        running += w
        bounds.append(running / total)
    bounds[-1] = 1.0
    return tuple(bounds)


def assign(key: str, bounds: tuple[float, ...]) -> int:
    """The index of the arm ``key`` belongs to, given cumulative bounds ending at 1.0."""
    u = unit(key)
    for i, bound in enumerate(bounds):
        if u < bound:
            return i
    return len(bounds) - 1


# -- the deployment record -------------------------------------------------------------------


def deployment_key(model: str, deployment: str | None = None) -> str:
    check_name("model", model)
    name = check_name("deployment", deployment) if deployment is not None else model
    return f"{DEPLOYMENTS}{model}/{name}.json"


def read_deployment(
    store: ObjectStore, model: str, deployment: str | None = None
) -> tuple[DeploymentRecord, str] | None:
    """The deployment record and its etag (for compare-and-swap); None when there is none.
    The reader of the kind (the site's snapshot also reads it raw); set_traffic is its one
    writer."""
    try:
        data, etag = store.get_versioned(deployment_key(model, deployment))
    except NotFound:
        return None
    return deployment_kind.from_json(data), etag


def arms_of(record: Mapping[str, Any]) -> list[ArmSpec]:
    return [ArmSpec(str(a["arm"]), float(a["weight"])) for a in record.get("arms") or []]


def set_traffic(
    store: ObjectStore,
    model: str,
    arms: list[ArmSpec],
    *,
    deployment: str | None = None,
    key: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
) -> DeploymentRecord:
    """Write the deployment record by compare-and-swap (retried on a lost race, since the
    caller states the whole split) and record a ``traffic`` audit event."""
    from mlopsctl.events import record_event
    from mlopsctl.pipeline.hashing import canonical_json
    from mlopsctl.provenance import who
    from mlopsctl.registry import get_alias, get_version

    storage_key = deployment_key(model, deployment)  # names checked before any read
    check_arms(arms)
    for arm in arms:
        if arm.version is not None:
            get_version(store, model, arm.version)
        elif get_alias(store, model, arm.label) is None:
            raise NotFound(
                f"model '{model}' has no alias '{arm.label}'",
                f"set it first: mlopsctl models alias set {model} {arm.label} VERSION",
            )
    name = deployment or model
    by: Any = actor or who(Path.cwd())
    for _ in range(_MAX_CAS_TRIES):
        current = read_deployment(store, model, deployment)
        previous = current[0] if current else None
        record: DeploymentRecord = {
            "model": model,
            "deployment": name,
            "arms": [{"arm": a.label, "weight": a.weight} for a in arms],
            "key": key if key is not None else (previous.get("key") if previous else None),
            "seq": int(previous.get("seq", 0) if previous else 0) + 1,
            "updated": stamp(),
            "by": by,
            "reason": reason,
        }
        try:
            store.compare_and_swap(
                storage_key, canonical_json(record), current[1] if current else None
            )
        except Conflict:
            continue
        record_event(
            store,
            "traffic",
            model=model,
            deployment=name,
            arms=record["arms"],
            previous=previous.get("arms") if previous else None,
            reason=reason,
            actor=by,
        )
        return record
    raise Conflict(
        f"the deployment record {storage_key} kept changing while it was being written",
        "retry",
    )
