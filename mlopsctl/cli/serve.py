"""`mlopsctl serve`, `mlopsctl traffic` and `mlopsctl feedback`: parse and render only; the
work is in mlopsctl/serving/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mlopsctl.cli.options import JsonOpt, ReasonOpt, TrustOpt, project_store
from mlopsctl.cli.output import emit_json, err, out
from mlopsctl.errors import NotFound
from mlopsctl.timeutil import parse_duration

traffic_app = typer.Typer(
    help="Traffic split between served aliases or versions (the deployment record).",
    no_args_is_help=True,
)
DeploymentOpt = Annotated[
    str | None,
    typer.Option("--deployment", "-d", help="Deployment name (default: the model name)."),
]


def serve(
    ref: Annotated[str, typer.Argument(help="NAME@ALIAS or NAME:VERSION to serve.")],
    port: Annotated[int, typer.Option("--port", "-p", help="Port; 0 picks a free one.")] = 8080,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    workers: Annotated[
        int, typer.Option("--workers", "-w", help="Worker processes sharing the port.")
    ] = 1,
    model_dir: Annotated[
        Path | None,
        typer.Option("--model-dir", help="Serve this unpacked model folder (REF is NAME:VERSION)."),
    ] = None,
    max_body: Annotated[
        int,
        typer.Option(
            "--max-body", help="Largest request body in bytes, after gzip/deflate (413 above)."
        ),
    ] = 8 << 20,
    max_inflight: Annotated[
        int,
        typer.Option(
            "--max-inflight",
            help="Bytes of request bodies one worker holds at once (503 beyond); "
            "default 8 x --max-body.",
        ),
    ] = 0,
    max_rows: Annotated[
        int, typer.Option("--max-rows", help="Most rows in one request (413 above).")
    ] = 100_000,
    max_connections: Annotated[
        int,
        typer.Option(
            "--max-connections",
            help="Open connections per worker; beyond it idle ones are closed, else 503 "
            "(lowered to fit the open-file limit).",
        ),
    ] = 1000,
    keep_alive: Annotated[
        float,
        typer.Option("--keep-alive", help="Seconds an idle connection is kept open."),
    ] = 15.0,
    request_timeout: Annotated[
        float,
        typer.Option(
            "--request-timeout",
            help="Seconds a request may take to arrive, and an answer to be read (else the "
            "connection is closed).",
        ),
    ] = 30.0,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Refuse columns the model does not take (400); by default they are ignored "
            "and named in X-Ignored-Columns, as MLflow does.",
        ),
    ] = False,
    log_sample: Annotated[
        float,
        typer.Option(
            "--log-sample", envvar="MLOPSCTL_LOG_SAMPLE", help="Share of requests logged (0..1)."
        ),
    ] = 1.0,
    log_contributions: Annotated[
        float,
        typer.Option(
            "--log-contributions",
            envvar="MLOPSCTL_LOG_CONTRIBUTIONS",
            help="Share of logged requests (0..1, by a hash of the request id) whose rows' "
            "feature contributions are logged too, as contrib.<feature> columns, for "
            "attribution drift; computed off the request path. Requests that ask for "
            "explanations log theirs anyway.",
        ),
    ] = 0.0,
    no_log: Annotated[bool, typer.Option("--no-log", help="Do not log predictions.")] = False,
    log_batch: Annotated[
        int,
        typer.Option(
            "--log-batch",
            envvar="MLOPSCTL_LOG_BATCH",
            help="Write a log file per worker every N rows...",
        ),
    ] = 100_000,
    log_interval: Annotated[
        float,
        typer.Option(
            "--log-interval",
            envvar="MLOPSCTL_LOG_INTERVAL",
            help="...or every this many seconds (deploy: --env MLOPSCTL_LOG_INTERVAL=N).",
        ),
    ] = 60.0,
    log_buffer: Annotated[
        int,
        typer.Option(
            "--log-buffer",
            envvar="MLOPSCTL_LOG_BUFFER",
            help="Most log rows held in memory (then dropped).",
        ),
    ] = 200_000,
    poll: Annotated[
        float, typer.Option("--poll", help="Seconds between checks of aliases and weights.")
    ] = 3.0,
    arm: Annotated[
        list[str] | None,
        typer.Option("--arm", help="ALIAS=WEIGHT or VERSION=WEIGHT; repeat for a split."),
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", help="Column whose value picks the arm (sticky per value)."),
    ] = None,
    deployment: DeploymentOpt = None,
    share_port: Annotated[
        bool,
        typer.Option(
            "--share-port",
            help="Let another server bind the same port (SO_REUSEPORT) for a handover "
            "without downtime; mlopsctl deploy uses it.",
        ),
    ] = False,
    trust: TrustOpt = False,
) -> None:
    """Serve a registered model over HTTP (MLflow /invocations, Open Inference Protocol v2,
    KServe v1), logging requests to the store and following the alias as it moves."""
    from mlopsctl.serving import ServeOptions
    from mlopsctl.serving import serve as run_server

    options = ServeOptions(
        ref=ref,
        host=host,
        port=port,
        workers=workers,
        model_dir=model_dir,
        max_body=max_body,
        log=not no_log,
        log_sample=log_sample,
        log_contributions=log_contributions,
        log_batch=log_batch,
        log_interval=log_interval,
        log_buffer=log_buffer,
        poll=poll,
        arms=list(arm or []),
        key=key,
        deployment=deployment,
        share_port=share_port,
        trust=trust,
        strict=strict,
        max_rows=max_rows,
        max_connections=max_connections,
        keep_alive=keep_alive,
        request_timeout=request_timeout,
        max_inflight=max_inflight,
    )
    code = run_server(options, on_ready=lambda url: err(f"serving {ref} on {url}"), say=err)
    raise typer.Exit(code)


@traffic_app.command("set")
def traffic_set(
    model: Annotated[str, typer.Argument(help="The model.")],
    arms: Annotated[list[str], typer.Argument(help="ALIAS=WEIGHT or VERSION=WEIGHT ...")],
    deployment: DeploymentOpt = None,
    key: Annotated[str | None, typer.Option("--key", help="Sticky key column.")] = None,
    reason: ReasonOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Change the weights of a running deployment; servers apply them within --poll seconds."""
    from mlopsctl.serving.arms import parse_arm, set_traffic

    specs = [parse_arm(a) for a in arms]
    with project_store() as store:
        record = set_traffic(store, model, specs, deployment=deployment, key=key, reason=reason)
    if json_out:
        emit_json(record)
        return
    split = " ".join(f"{a['arm']}={a['weight']:g}" for a in record["arms"])
    err(f"traffic for {record['deployment']}: {split}")


@traffic_app.command("show")
def traffic_show(
    model: Annotated[str, typer.Argument(help="The model.")],
    deployment: DeploymentOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """The deployment record: arms, weights, sticky key, who changed it last."""
    from mlopsctl.serving.arms import read_deployment

    with project_store() as store:
        found = read_deployment(store, model, deployment)
    if found is None:
        raise NotFound(
            f"no deployment record for {deployment or model}",
            f"set one with: mlopsctl traffic set {model} production=100",
        )
    record = found[0]
    if json_out:
        emit_json(record)
        return
    total = sum(float(a["weight"]) for a in record["arms"]) or 1.0
    for a in record["arms"]:
        out(f"{a['arm']:<16} {a['weight']:>8g}  {100 * float(a['weight']) / total:6.2f}%")
    err(
        f"key {record.get('key') or '(request id)'}; seq {record.get('seq')}, "
        f"{record.get('updated')} by {record.get('by')}"
    )


def feedback(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV or Parquet: request_id, the outcome (actual or outcome), optionally row "
            "(the row's index in its request) and timestamp (when the outcome happened)."
        ),
    ],
    model: Annotated[str, typer.Option("--model", "-m", help="The model the outcomes are for.")],
    id_column: Annotated[
        str, typer.Option("--id-column", help="Request id column.")
    ] = "request_id",
    actual_column: Annotated[
        str | None,
        typer.Option("--actual-column", help="Outcome column (default: actual, else outcome)."),
    ] = None,
    time_column: Annotated[
        str | None,
        typer.Option(
            "--time-column", help="Timestamp column (default: timestamp or ts; none: now)."
        ),
    ] = None,
    lookback: Annotated[
        str,
        typer.Option(
            "--lookback",
            help="Look for the request ids in the prediction logs from this long before the "
            "earliest timestamp (30d); 0 skips the look-up.",
        ),
    ] = "30d",
    json_out: JsonOpt = False,
) -> None:
    """Record ground truth for earlier predictions, by request id (and row): of duplicates the
    latest timestamp wins; ids no prediction log holds are counted."""
    from mlopsctl.serving.feedback import record_feedback_file

    window = None if lookback.strip() in ("0", "") else parse_duration(lookback, "--lookback")
    with project_store() as store:
        result = record_feedback_file(
            store,
            model,
            file,
            id_column=id_column,
            actual_column=actual_column,
            time_column=time_column,
            lookback=window,
        )
    if json_out:
        emit_json(result)
        return
    err(f"recorded {result['rows']} outcome(s) for {model}")
    if result["duplicates"]:
        err(f"  {result['duplicates']} duplicate(s) in the file: the latest timestamp kept")
    if result.get("unknown"):
        err(
            f"  {result['unknown']} outcome(s) for request ids no prediction log holds (since "
            f"{result['lookback']}): recorded, but nothing to join them with yet"
        )
