"""What `mlopsctl serve` was asked for, and the checks made on it before anything starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mlopsctl.errors import UsageError

DEFAULT_MAX_BODY = 8 << 20


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
    log_batch: int = 1000
    log_interval: float = 5.0
    log_buffer: int = 100_000
    poll: float = 3.0
    arms: list[str] = field(default_factory=list)
    key: str | None = None
    deployment: str | None = None
    # SO_REUSEPORT on a single worker too, so that a second server can bind the same port while
    # this one still answers: the zero-downtime handover of `mlopsctl deploy`.
    share_port: bool = False
    # Load pickle-flavoured models (pickle can run any code): only for artifacts you made.
    trust: bool = False


def check_options(options: ServeOptions) -> None:
    if not 0 <= options.port <= 65535:
        raise UsageError(f"invalid port {options.port}", "give a port from 0 (any free) to 65535")
    if options.workers < 1:
        raise UsageError("--workers must be at least 1")
    if not 0.0 <= options.log_sample <= 1.0:
        raise UsageError("--log-sample must be between 0 and 1", "e.g. 0.1 logs one request in ten")
    if options.max_body < 1024:
        raise UsageError("--max-body must be at least 1024 bytes")
    if options.poll <= 0:
        raise UsageError("--poll must be above 0 seconds")
    if options.model_dir is not None and options.arms:
        raise UsageError("--arm needs the registry; it cannot be combined with --model-dir")
