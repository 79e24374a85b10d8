"""Following aliases and the deployment record while serving.

A background thread polls, every ``poll`` seconds, each served alias record and the deployment
record (conditional reads by etag would save bytes; a record is a few hundred bytes, so a plain
versioned read is enough). When an alias moves, the new version is fetched into the verified
cache, smoke-loaded in a separate process (``python -m mlopsctl.serving.smoke``), loaded here
and swapped in as a whole Predictor; the swap is a ``deployment`` audit event. A version the
smoke load refuses is reported, counted and recorded as an audit event, and not tried again
until the alias moves once more. When the deployment record changes, the new weights apply at
once and arms it names that are not served yet are loaded the same way.

Only the model itself can be refused: a failed smoke load (`Refused`), bytes that do not match
their digest (`IntegrityError`) or an artifact this process cannot load (`ModelError`). Any other
error while fetching a new version (the store unreachable for a moment, a record not readable
yet) leaves everything as it was, the alias's or record's etag included, so the next poll tries
again; it is warned about at most once per ``WARN_EVERY_S``.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mlopsctl.errors import IntegrityError, MlopsError

if TYPE_CHECKING:
    from mlopsctl.serving.app import App, Arm
    from mlopsctl.serving.metrics import Metrics
    from mlopsctl.serving.predictor import Predictor
    from mlopsctl.store.base import ObjectStore

SMOKE_TIMEOUT_S = 120.0
WARN_EVERY_S = 60.0


class Refused(MlopsError):
    """A new model version failed its smoke load; the old one keeps serving."""


def load_predictor(
    store: ObjectStore, model: str, version: int, *, smoke: bool, trust_pickle: bool = False
) -> Predictor:
    """Fetch (verified), optionally smoke-load in a child process, then load in-process."""
    from mlopsctl.models.artifact import load_model_dir
    from mlopsctl.registry import cached_model_dir, get_version
    from mlopsctl.serving.predictor import Predictor

    record = get_version(store, model, version)
    folder = cached_model_dir(store, record)
    if smoke:
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "mlopsctl.serving.smoke", str(folder)]
                + (["--trust"] if trust_pickle else []),
                capture_output=True,
                text=True,
                timeout=SMOKE_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise Refused(
                f"{model}:{version} did not load within {SMOKE_TIMEOUT_S:.0f} s in the smoke test"
            ) from None
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            raise Refused(f"{model}:{version} failed its smoke load: {last}")
    loaded = load_model_dir(folder, trust_pickle=trust_pickle)
    lookup = None
    if record.get("feature_sets"):  # trained on feature sets: look them up when serving
        from mlopsctl.features import lookup_for

        lookup = lookup_for(record, [(f.name, f.kind) for f in loaded.features])
    return Predictor(loaded, model, version, lookup=lookup)


def _refreeze() -> None:
    # A new model's objects join the frozen generation too (see worker._quiet_gc).
    import gc

    gc.freeze()


class Follower:
    def __init__(
        self,
        app: App,
        store: ObjectStore,
        model: str,
        *,
        deployment: str | None,
        poll: float,
        metrics: Metrics,
        say: Callable[[str], None],
        worker: int = 0,
        trust_pickle: bool = False,
    ) -> None:
        self.app = app
        self.trust_pickle = trust_pickle
        self.store = store
        self.model = model
        self.deployment = deployment
        self.poll = max(0.1, poll)
        self.metrics = metrics
        self.say = say
        self.worker = worker
        self.deployment_etag: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="follow", daemon=True)
        # Refused versions per alias: not retried until the alias moves again.
        self._refused: set[tuple[str, int]] = set()
        self._last_warning = -1e9

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=SMOKE_TIMEOUT_S + 5)

    def _refusal(self, exc: MlopsError) -> bool:
        """Whether ``exc`` says the model itself is unusable (and not the store, for now)."""
        from mlopsctl.models.artifact import ModelError

        return isinstance(exc, (Refused, IntegrityError, ModelError))

    def _warn_transient(self, what: str, exc: MlopsError) -> None:
        now = time.monotonic()
        if now - self._last_warning < WARN_EVERY_S:
            return
        self._last_warning = now
        self.say(f"warning: cannot load {what} now, will retry: {exc.one_line()}")

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.check_once()
            except MlopsError as exc:
                self.say(f"warning: cannot follow {self.model}: {exc.one_line()}")
            except Exception as exc:  # noqa: BLE001 - the follower must outlive one bad poll
                self.say(f"warning: following {self.model} failed: {type(exc).__name__}: {exc}")

    def check_once(self) -> None:
        self._check_deployment()
        for arm in self.app.router.arms:
            if arm.alias is not None:
                self._check_alias(arm)

    def _event(self, **fields: Any) -> None:
        from mlopsctl.events import record_event

        # With several workers each one swaps its own copy; worker 0 speaks for the server.
        if self.worker != 0:
            return
        try:
            record_event(self.store, "deployment", model=self.model, **fields)
        except MlopsError as exc:
            self.say(f"warning: cannot record the deployment event: {exc.one_line()}")

    def _check_alias(self, arm: Arm) -> None:
        from mlopsctl.registry import get_alias

        assert arm.alias is not None
        found = get_alias(self.store, self.model, arm.alias)
        if found is None or found[1] == arm.etag:
            return
        record, etag = found
        version = int(record["version"])
        current = arm.predictor.version
        if version == current:
            arm.etag = etag
            return
        if (arm.alias, version) in self._refused:
            arm.etag = etag
            return
        try:
            predictor = load_predictor(
                self.store, self.model, version, smoke=True, trust_pickle=self.trust_pickle
            )
        except MlopsError as exc:
            if not self._refusal(exc):
                self._warn_transient(f"{self.model}:{version} for {self.model}@{arm.alias}", exc)
                return
            arm.etag = etag
            self._refused.add((arm.alias, version))
            self.metrics.add("refused")
            self.say(
                f"refused {self.model}:{version} for {self.model}@{arm.alias}: {exc.one_line()}; "
                f"still serving version {current}"
            )
            self._event(
                action="refused",
                alias=arm.alias,
                arm=arm.label,
                version=version,
                serving=current,
                reason=exc.one_line(),
            )
            return
        arm.predictor = predictor  # one reference: requests in flight keep the old object
        _refreeze()
        arm.etag = etag
        self._refused = {r for r in self._refused if r[0] != arm.alias}
        self.metrics.add("swaps")
        self.say(f"{self.model}@{arm.alias} moved: now serving version {version} (was {current})")
        self._event(
            action="swap", alias=arm.alias, arm=arm.label, version=version, previous=current
        )

    def _check_deployment(self) -> None:
        from mlopsctl.registry import get_alias
        from mlopsctl.serving.app import Arm, make_router
        from mlopsctl.serving.arms import arms_of, read_deployment

        found = read_deployment(self.store, self.model, self.deployment)
        if found is None or found[1] == self.deployment_etag:
            return
        record, etag = found
        specs = arms_of(record)
        router = self.app.router
        served = {a.label: a for a in router.arms}
        arms: list[Arm] = []
        weights: list[float] = []
        for spec in specs:
            arm = served.get(spec.label)
            if arm is None:
                if spec.version is not None:
                    version, alias_etag = spec.version, None
                else:
                    alias = get_alias(self.store, self.model, spec.label)
                    if alias is None:
                        self.say(f"warning: deployment arm {spec.label!r}: no such alias; skipped")
                        continue
                    version, alias_etag = int(alias[0]["version"]), alias[1]
                try:
                    predictor = load_predictor(
                        self.store, self.model, version, smoke=True, trust_pickle=self.trust_pickle
                    )
                except MlopsError as exc:
                    if not self._refusal(exc):
                        # The whole record waits for the next poll: its etag is not taken.
                        self._warn_transient(f"arm {spec.label} ({self.model}:{version})", exc)
                        return
                    self.metrics.add("refused")
                    self.say(f"refused arm {spec.label} ({self.model}:{version}): {exc.one_line()}")
                    continue
                arm = Arm(spec.label, None if spec.version is not None else spec.label, predictor)
                arm.etag = alias_etag
            arms.append(arm)
            weights.append(spec.weight)
        # Arms served but no longer named keep answering explicit version requests, at weight 0.
        for arm in router.arms:
            if arm.label not in {a.label for a in arms}:
                arms.append(arm)
                weights.append(0.0)
        if not arms or sum(weights) <= 0:
            self.say("warning: the deployment record gives no arm a weight; keeping the old split")
            self.deployment_etag = etag
            return
        self.app.router = make_router(arms, weights)
        self.deployment_etag = etag
        split = ", ".join(f"{a.label}={w:g}" for a, w in zip(arms, weights, strict=False))
        self.say(f"traffic for {self.model}: {split}")
