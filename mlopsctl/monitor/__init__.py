"""Monitoring: compare current (serving) data with a model's training baseline, judge drift,
data quality, prediction drift and, once labels arrive, performance; report and record it.

    run_monitor(spec_path, current=..., report=..., record=True) -> result dict
    check_against_profile(profile, data, spec=...)                 -> result dict (no registry)
    profile_data(location, ...)                                    -> a baseline profile

Layout: run.py (one check: spec, model, baseline, current data, judging, report, event),
baseline.py (the training profile, a profile JSON, a reference dataset or the previous window),
model.py (the model version's facts, prediction outputs and labels to read, the lazily loaded
model), data.py (streaming the current data in batches, windows), stats.py (the statistics),
checks.py (the judging), signals.py (the outlier share and attribution drift, from the model
layer's per-row outlier scores and feature contributions), performance.py (metrics against
ground truth), report.py (the HTML report).

The metric of performance (accuracy / rmse by default, or any metric evaluate records) is
compared with ``min``/``max`` and with the version's recorded offline metric (``max_drop``, in
the metric's bad direction). ``failed`` (exit 4 in the CLI) is dataset drift, prediction drift,
a performance failure, a failed data-quality test (unless ``quality.fail: false``), an outlier
share above ``outliers.max_share`` or attribution drift (unless their ``fail: false``).
"""

from mlopsctl.monitor.baseline import PREVIOUS_WINDOW, profile_data
from mlopsctl.monitor.run import check_against_profile, run_monitor

__all__ = ["PREVIOUS_WINDOW", "check_against_profile", "profile_data", "run_monitor"]
