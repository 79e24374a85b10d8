"""Continuous training: decide whether a pipeline should retrain now.

`check_trigger` reads a Trigger spec, evaluates each condition it names and says which fired
and why (ct/trigger.py); the conditions are in ct/conditions.py, what a run is given (its
dataset from the serving logs and params) and whether it holds new labels in ct/data.py, the
trigger's state and history in the store in ct/state.py; the cron parser is mlopsctl/cron.py
(ground floor, shared with spec validation). Retraining on a due check (claim the trigger,
store its dataset, run the pipeline, record the outcome, chain the release) is
mlopsctl/app/retrain.py.
"""

from mlopsctl.ct.conditions import (
    CONDITIONS,
    DEFAULT_MAX_RUN,
    Condition,
    Cooldown,
    MonitorResult,
    NewDataResult,
    RunningClaim,
    ScheduleResult,
    check_max_run,
    count_rows,
)
from mlopsctl.ct.context import (
    DEFAULT_ALIAS,
    MonitorFn,
    TriggerContext,
    overrides,
    project_path,
)
from mlopsctl.ct.data import DataResult, Prepared, check_data, merged, run_params
from mlopsctl.ct.state import (
    PREFIX,
    STATE_TRIES,
    RunOutcome,
    claim_trigger,
    finish_state,
    history_prefix,
    list_history,
    read_state,
    record_outcome,
    state_key,
    write_state,
)
from mlopsctl.ct.trigger import (
    CheckResult,
    TriggerCheck,
    champion_brief,
    check_trigger,
    evaluate,
    open_check,
)

__all__ = [
    "CONDITIONS",
    "DEFAULT_ALIAS",
    "DEFAULT_MAX_RUN",
    "PREFIX",
    "STATE_TRIES",
    "CheckResult",
    "Condition",
    "Cooldown",
    "DataResult",
    "MonitorFn",
    "MonitorResult",
    "NewDataResult",
    "Prepared",
    "RunOutcome",
    "RunningClaim",
    "ScheduleResult",
    "TriggerCheck",
    "TriggerContext",
    "champion_brief",
    "check_data",
    "check_max_run",
    "check_trigger",
    "claim_trigger",
    "count_rows",
    "evaluate",
    "finish_state",
    "history_prefix",
    "list_history",
    "merged",
    "open_check",
    "overrides",
    "project_path",
    "read_state",
    "record_outcome",
    "run_params",
    "state_key",
    "write_state",
]
