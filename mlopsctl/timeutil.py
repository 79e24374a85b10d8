"""Time as mlopsctl writes and reads it: record timestamps in UTC (``2026-01-05T03:00:00Z``) and
durations written as a whole number and a unit (``30s``, ``90m``, ``6h``, ``7d``, ``2w``)."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone

from mlopsctl.errors import UsageError

STAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
DURATION_PATTERN = r"^[0-9]+[smhdw]$"
_DURATION_RE = re.compile(r"([0-9]+)([smhdw])")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def stamp(moment: datetime | float | None = None) -> str:
    """A record timestamp: now, a datetime (naive ones are taken as UTC) or epoch seconds."""
    if moment is None:
        return time.strftime(STAMP_FORMAT, time.gmtime())
    if isinstance(moment, (int, float)):
        return time.strftime(STAMP_FORMAT, time.gmtime(moment))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime(STAMP_FORMAT)


def parse_time(text: str) -> datetime:
    """An ISO time as written in records, as an aware UTC datetime (naive ones are UTC)."""
    moment = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def parse_duration(text: str | int | float, what: str = "duration") -> timedelta:
    """``30s``, ``90m``, ``6h``, ``7d``, ``2w`` as a timedelta; UsageError naming ``what``."""
    match = _DURATION_RE.fullmatch(str(text).strip())
    if not match:
        raise UsageError(
            f"{what} '{text}' is not a duration",
            "write a whole number and a unit (s, m, h, d, w): 30m, 6h, 7d",
        )
    return timedelta(seconds=int(match.group(1)) * UNITS[match.group(2)])
