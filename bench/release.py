"""Compare-gate speed on 100,000 paired predictions (goal: under 1 s per metric): a paired
bootstrap of 1,000 resamples, and for roc_auc DeLong's test (no resampling).

.venv/bin/python bench/release.py [--rows N] [--resamples N] [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    import numpy as np

    from mlopsctl.release.stats import Scored, paired_bootstrap

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, args.rows)

    def model(skill: float) -> Scored:
        p = np.clip(0.5 + (y - 0.5) * skill + rng.normal(0, 0.25, args.rows), 0.001, 0.999)
        return Scored("classification", y, (p > 0.5).astype(int), np.stack([1 - p, p], 1), 2)

    a, b = model(0.42), model(0.40)
    for metric in ("accuracy", "log_loss", "f1", "roc_auc"):
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            interval = paired_bootstrap(metric, a, b, resamples=args.resamples, seed=0)
            times.append(time.perf_counter() - start)
        how = "DeLong" if interval.method == "delong" else f"{args.resamples} resamples"
        print(
            f"{metric:<9} {how} x {args.rows} rows: median "
            f"{statistics.median(times):.3f} s  (delta {interval.delta:+.4f}, "
            f"95% CI [{interval.low:+.4f}, {interval.high:+.4f}])"
        )


if __name__ == "__main__":
    main()
