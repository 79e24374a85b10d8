"""What `mlopsctl serve` was asked for, and the checks made on it before anything starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlopsctl.errors import UsageError

DEFAULT_MAX_BODY = 8 << 20
DEFAULT_MAX_ROWS = 100_000
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_KEEP_ALIVE_S = 15.0
DEFAULT_REQUEST_TIMEOUT_S = 30.0
# Request bodies all requests of a worker may hold at once, in --max-body units by default.
INFLIGHT_BODIES = 8


@dataclass
class ServeOptions:
    ref: str
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    model_dir: Path | None = None
    max_body: int = DEFAULT_MAX_BODY
    log: bool = True
    log_sample: float = 1.0
    # Share of logged requests whose rows' feature contributions are logged (contrib.* columns).
    log_contributions: float = 0.0
    log_batch: int = 100_000
    log_interval: float = 60.0
    log_buffer: int = 200_000
    poll: float = 3.0
    arms: list[str] = field(default_factory=list)
    key: str | None = None
    deployment: str | None = None
    # SO_REUSEPORT on a single worker too, so that a second server can bind the same port while
    # this one still answers: the zero-downtime handover of `mlopsctl deploy`.
    share_port: bool = False
    # Load pickle-flavoured models (pickle can run any code): only for artifacts you made.
    trust: bool = False
    # Refuse columns the model does not take (400) instead of ignoring them.
    strict: bool = False
    max_rows: int = DEFAULT_MAX_ROWS
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    keep_alive: float = DEFAULT_KEEP_ALIVE_S
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S
    # Bytes of request bodies held at once per worker; 0: INFLIGHT_BODIES x max_body.
    max_inflight: int = 0

    def __post_init__(self) -> None:
        if self.max_inflight <= 0:
            self.max_inflight = INFLIGHT_BODIES * self.max_body


def check_options(options: ServeOptions) -> None:
    if not 0 <= options.port <= 65535:
        raise UsageError(f"invalid port {options.port}", "give a port from 0 (any free) to 65535")
    if options.workers < 1:
        raise UsageError("--workers must be at least 1")
    if not 0.0 <= options.log_sample <= 1.0:
        raise UsageError("--log-sample must be between 0 and 1", "e.g. 0.1 logs one request in ten")
    if not 0.0 <= options.log_contributions <= 1.0:  # NaN too
        raise UsageError(
            f"--log-contributions must be between 0 and 1, not {options.log_contributions:g}",
            "e.g. 0.1 logs the contributions of one logged request in ten",
        )
    if options.max_body < 1024:
        raise UsageError("--max-body must be at least 1024 bytes")
    if options.max_inflight < options.max_body:
        raise UsageError(
            "--max-inflight must be at least --max-body",
            f"--max-body is {options.max_body} bytes",
        )
    if options.max_rows < 1:
        raise UsageError("--max-rows must be at least 1")
    if options.max_connections < 1:
        raise UsageError("--max-connections must be at least 1")
    if options.keep_alive <= 0 or options.request_timeout <= 0:
        raise UsageError("--keep-alive and --request-timeout must be above 0 seconds")
    if options.poll <= 0:
        raise UsageError("--poll must be above 0 seconds")
    if options.model_dir is not None and options.arms:
        raise UsageError("--arm needs the registry; it cannot be combined with --model-dir")
