"""Canary rollouts under simulated traffic: how fast a broken candidate is rolled back, and how
often a candidate as good as the champion is rolled back by mistake.

.venv/bin/python bench/rollout.py [--rate 200] [--aa 200] [--broken 50] [--store 3]

The traffic: ``--rate`` requests per second (default 200) split between champion and candidate
by the rollout's step; a base 5xx share of 1%; request latency lognormal around 8 ms; outputs
(scores) normal around 0.5. The rollout: steps [1, 5, 25, 50, 100] percent, each held at
least 5 minutes and 200 candidate requests, judged by the default analysis (error_rate at most
1 point above the champion's, p99 latency at most 1.5 x the champion's, prediction PSI at most
0.2), called every 30 seconds (a cron or `--watch` interval), with promote.alpha = 0.05.

* broken: the candidate answers 5 points more requests with a 5xx (6% against 1%); the time
  from the start of the rollout to the rollback, over ``--broken`` simulated rollouts (the
  checks of mlopsctl/release/analysis.py on the simulated arms), and over ``--store`` rollouts
  run through the real state machine (`rollout.advance` on a temporary local store, with the
  traffic written as serving-log Parquet files and read back by the analysis).
* A/A: candidate and champion are the same; ``--aa`` simulated rollouts from start to
  promotion. Every rollback is a false one. The stated level is promote.alpha = 0.05: the
  analysis spends it over looks and checks (alpha / C * 6 / (pi^2 k^2) at look k, a union
  bound over any number of looks), so the false-rollback rate must come out at most 0.05 (it
  comes out far below: the bound is conservative). The bench exits 1 when it does not.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

STEPS = [1.0, 5.0, 25.0, 50.0, 100.0]
HOLD_S = 300.0
MIN_REQUESTS = 200
LOOK_S = 30.0
BASE_ERRORS = 0.01
ALPHA = 0.05
BEFORE_S = 600.0
T0 = datetime(2030, 1, 1, 0, 0, 0, tzinfo=timezone.utc)


class Arm:
    """What one arm answered so far in the step: counts, latencies, outputs."""

    def __init__(self, version: int) -> None:
        import numpy as np

        self.version = version
        self.requests = 0
        self.errors = 0
        self.latency: list[Any] = [np.empty(0)]
        self.outputs: list[Any] = [np.empty(0)]

    def add(self, rng: Any, n: int, error_share: float) -> None:
        errors = int(rng.binomial(n, error_share))
        answered = n - errors
        self.requests += answered
        self.errors += errors
        self.latency.append(rng.lognormal(2.08, 0.35, answered))
        self.outputs.append(rng.normal(0.5, 0.1, answered))

    def data(self) -> Any:
        import numpy as np

        from mlopsctl.release.analysis import ArmData

        return ArmData(
            self.version,
            requests=self.requests,
            errors=self.errors,
            latency_ms=np.concatenate(self.latency),
            outputs=np.concatenate(self.outputs),
        )


def simulate(
    rng: Any, rate: float, candidate_errors: float, limit_s: float = 6 * 3600
) -> tuple[str, float, int]:
    """One rollout from start to its end: (how it ended, seconds, looks)."""
    from mlopsctl.release import analysis

    entries = [dict(e) for e in analysis.DEFAULT_ANALYSIS]
    # The champion before the rollout: what the 100% step compares with (the analysis reads
    # up to an hour of it; ten minutes keep the simulation quick and change no verdict here).
    before = Arm(1)
    before.add(rng, int(rng.poisson(rate * BEFORE_S)), BASE_ERRORS)
    looks = 0
    now = 0.0
    for step in STEPS:
        cand, champ = Arm(2), Arm(1)
        started = now
        while True:
            now += LOOK_S
            share = step / 100.0
            cand.add(rng, int(rng.poisson(rate * share * LOOK_S)), candidate_errors)
            champ.add(rng, int(rng.poisson(rate * (1 - share) * LOOK_S)), BASE_ERRORS)
            looks += 1
            reference = champ if step < 100 else _merged(before, champ)
            window = analysis.Window(T0, T0, cand.data(), reference.data())
            results = analysis.run_checks(
                entries, window, analysis.Look(looks, len(entries), ALPHA)
            )
            if any(r.verdict == "fail" for r in results):
                return "rolled_back", now, looks
            held = now - started < HOLD_S or cand.requests + cand.errors < MIN_REQUESTS
            if not held and all(r.verdict in ("pass", "skipped") for r in results):
                break
            if now > limit_s:
                return "stuck", now, looks
    return "promoted", now, looks


def _merged(a: Arm, b: Arm) -> Arm:
    merged = Arm(a.version)
    merged.requests, merged.errors = a.requests + b.requests, a.errors + b.errors
    merged.latency, merged.outputs = a.latency + b.latency, a.outputs + b.outputs
    return merged


# -- through the real state machine ----------------------------------------------------------


def _write(
    store: Any,
    model: str,
    version: int,
    arm: str,
    rng: Any,
    n: int,
    errors: float,
    start: datetime,
    seq: int,
) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    failed = rng.random(n) < errors
    times = [
        int((start + timedelta(seconds=float(s))).timestamp() * 1000)
        for s in np.sort(rng.uniform(0, LOOK_S, n))
    ]
    ok = [i for i in range(n) if not failed[i]]
    bad = [i for i in range(n) if failed[i]]
    date = start.strftime("%Y-%m-%d")

    def put(prefix: str, table: Any) -> None:
        sink = io.BytesIO()
        pq.write_table(table, sink)
        store.put(f"{prefix}/{model}/date={date}/{arm}-{seq:06d}.parquet", sink.getvalue())

    put(
        "logs/predictions",
        pa.table(
            {
                "request_id": [f"{arm}-{seq}-{i}" for i in ok],
                "row": pa.array([0] * len(ok), pa.int32()),
                "ts": pa.array([times[i] for i in ok], pa.timestamp("ms", tz="UTC")),
                "version": pa.array([version] * len(ok), pa.int64()),
                "arm": [arm] * len(ok),
                "latency_ms": rng.lognormal(2.08, 0.35, len(ok)),
                "score": rng.normal(0.5, 0.1, len(ok)),
            }
        ),
    )
    if bad:
        put(
            "logs/errors",
            pa.table(
                {
                    "request_id": [f"{arm}-{seq}-{i}" for i in bad],
                    "ts": pa.array([times[i] for i in bad], pa.timestamp("ms", tz="UTC")),
                    "version": pa.array([version] * len(bad), pa.int64()),
                    "arm": [arm] * len(bad),
                    "status": pa.array([500] * len(bad), pa.int32()),
                }
            ),
        )


def through_store(rng: Any, rate: float, candidate_errors: float) -> tuple[str, float, int]:
    """One broken-candidate rollout through `rollout.advance` on a temporary local store."""
    from mlopsctl import registry
    from mlopsctl.events import record_event
    from mlopsctl.release import rollout
    from mlopsctl.store.blobs import put_blob_bytes
    from mlopsctl.store.local import LocalStore

    model = "bench"
    spec = {
        "apiVersion": "mlopsctl/v1",
        "kind": "Release",
        "name": "bench",
        "model": model,
        "candidate": 2,
        "champion": "production",
        "gates": [{"type": "signature"}],
        "promote": {
            "strategy": "canary",
            "steps": STEPS,
            "hold": {"duration": "5m", "min_requests": MIN_REQUESTS},
            "alpha": ALPHA,
        },
    }
    with tempfile.TemporaryDirectory() as tmp, LocalStore(Path(tmp) / "store") as store:
        for v in (1, 2):
            digest = put_blob_bytes(store, f"bench {v}".encode())
            registry.register_version(
                store,
                model,
                {"artifact": {"digest": digest}, "signature": {"task": "classification"}},
            )
        registry.set_alias(store, model, "production", 1)
        record_event(
            store,
            "gate",
            model=model,
            version=2,
            release="bench",
            passed=True,
            gates=[],
            champion={"alias": "production", "version": 1},
        )
        now = T0
        rollout.advance(store, spec, now=now)
        for look in range(1, 10_000):
            state = rollout.read_state(store, model, "bench")
            assert state is not None
            share = float(state[0]["steps"][state[0]["step"]]) / 100.0
            _write(
                store,
                model,
                2,
                "2",
                rng,
                int(rng.poisson(rate * share * LOOK_S)),
                candidate_errors,
                now,
                2 * look,
            )
            _write(
                store,
                model,
                1,
                "production",
                rng,
                int(rng.poisson(rate * (1 - share) * LOOK_S)),
                BASE_ERRORS,
                now,
                2 * look + 1,
            )
            now += timedelta(seconds=LOOK_S)
            outcome = rollout.advance(store, spec, now=now)
            if outcome.state["status"] in ("rolled_back", "done"):
                return outcome.state["status"], (now - T0).total_seconds(), look
    return "stuck", (now - T0).total_seconds(), 0


def main() -> int:
    import numpy as np

    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--aa", type=int, default=200)
    parser.add_argument("--broken", type=int, default=50)
    parser.add_argument("--store", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(
        f"traffic {args.rate:g} req/s; steps {STEPS}; hold {HOLD_S:g} s and {MIN_REQUESTS} "
        f"requests; a look every {LOOK_S:g} s; alpha {ALPHA}"
    )

    started = time.perf_counter()
    broken = [simulate(rng, args.rate, BASE_ERRORS + 0.05) for _ in range(args.broken)]
    seconds = [s for how, s, _ in broken if how == "rolled_back"]
    print(
        f"broken (+5 pp errors), {args.broken} simulated rollouts: {len(seconds)} rolled back, "
        f"time to rollback median {statistics.median(seconds):.0f} s, "
        f"p90 {np.percentile(seconds, 90):.0f} s, max {max(seconds):.0f} s "
        f"({time.perf_counter() - started:.1f} s to simulate)"
    )
    if args.store:
        started = time.perf_counter()
        runs = [through_store(rng, args.rate, BASE_ERRORS + 0.05) for _ in range(args.store)]
        print(
            f"broken, {args.store} rollouts through rollout.advance and the store: "
            + ", ".join(f"{how} after {s:.0f} s ({looks} looks)" for how, s, looks in runs)
            + f" ({time.perf_counter() - started:.1f} s)"
        )
    started = time.perf_counter()
    same = [simulate(rng, args.rate, BASE_ERRORS) for _ in range(args.aa)]
    false = sum(how == "rolled_back" for how, _, _ in same)
    promoted = [s for how, s, _ in same if how == "promoted"]
    rate = false / max(1, args.aa)
    print(
        f"A/A, {args.aa} simulated rollouts: {false} rolled back (false-rollback rate "
        f"{rate:.3f}, stated level {ALPHA}), {len(promoted)} promoted after a median "
        f"{statistics.median(promoted) / 60:.1f} min ({time.perf_counter() - started:.1f} s)"
    )
    return 0 if rate <= ALPHA and len(seconds) == args.broken else 1


if __name__ == "__main__":
    sys.exit(main())
