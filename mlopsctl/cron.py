"""Five-field cron expressions (minute hour day-of-month month day-of-week), always in UTC.

The syntax is Vixie cron's, the one crontab(5) and GitHub Actions' `schedule:` document:

- each field is a list (`1,15,30`) of `*`, a value, or a range `a-b`, each optionally with a
  step `/n` (`*/15`, `0-30/10`; `5/15` means 5 to the end of the field, every 15);
- months and weekdays may be named by their first three letters (`jan`-`dec`, `sun`-`sat`,
  any case), also in ranges (`mon-fri`); weekday 0 and 7 are both Sunday;
- when both day-of-month and day-of-week are restricted (neither starts with `*`), a day
  matches if EITHER matches (`0 0 1 * mon`: the 1st of each month and every Monday); if one of
  them starts with `*`, both must match;
- `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`) and `@hourly`.

An expression that can never fire (`0 0 30 2 *`) is refused when parsed, so `next`/`previous`
always find a time within their bounded search.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from mlopsctl.errors import UsageError

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {n.lower(): i for i, n in enumerate(calendar.month_abbr) if n}
_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
# name, lowest, highest, names
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
# A fire time is at most 8 years away (29 February on a Monday recurs within 28 years, but
# a leap day alone within 8); searching day by day this far is a few thousand steps.
_SEARCH_DAYS = 366 * 29


class CronError(UsageError):
    """The expression is not valid cron; the message says which field and why."""


@dataclass(frozen=True)
class Cron:
    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday .. 6 = Saturday
    days_star: bool
    weekdays_star: bool

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.days_star or self.weekdays_star:
            return dom and dow
        return dom or dow

    def matches(self, moment: datetime) -> bool:
        moment = _utc(moment)
        return (
            moment.minute in self.minutes
            and moment.hour in self.hours
            and self.matches_day(moment.date())
        )

    def next(self, after: datetime) -> datetime:
        """The first fire time strictly after `after` (UTC, whole minutes)."""
        after = _utc(after)
        day = after.date()
        for _ in range(_SEARCH_DAYS):
            if self.matches_day(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        moment = _at(day, hour, minute)
                        if moment > after:
                            return moment
            day += timedelta(days=1)
        raise CronError(f"cron '{self.expression}' does not fire within {_SEARCH_DAYS} days")

    def previous(self, at: datetime) -> datetime:
        """The last fire time at or before `at` (UTC, whole minutes)."""
        at = _utc(at)
        day = at.date()
        for _ in range(_SEARCH_DAYS):
            if self.matches_day(day):
                for hour in reversed(self.hours):
                    for minute in reversed(self.minutes):
                        moment = _at(day, hour, minute)
                        if moment <= at:
                            return moment
            day -= timedelta(days=1)
        raise CronError(f"cron '{self.expression}' did not fire within {_SEARCH_DAYS} days")


def _at(day: date, hour: int, minute: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.utc)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def parse_cron(expression: str) -> Cron:
    """Parse a five-field expression or a macro; CronError naming the bad field otherwise."""
    text = " ".join(str(expression).split())
    expanded = _MACROS.get(text.lower(), text)
    if expanded.startswith("@"):
        raise CronError(
            f"unknown cron macro '{text}'",
            "use @yearly, @monthly, @weekly, @daily or @hourly, or five fields",
        )
    parts = expanded.split(" ")
    if len(parts) != 5:
        raise CronError(
            f"cron '{text}' has {len(parts)} field(s), not 5",
            'give minute hour day-of-month month day-of-week, like "0 3 * * 1"',
        )
    values = [
        _field(text, part, name, low, high, names)
        for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True)
    ]
    weekdays = frozenset(0 if d == 7 else d for d in values[4])
    cron = Cron(
        expression=text,
        minutes=tuple(sorted(values[0])),
        hours=tuple(sorted(values[1])),
        days=frozenset(values[2]),
        months=frozenset(values[3]),
        weekdays=weekdays,
        days_star=parts[2].startswith("*"),
        weekdays_star=parts[4].startswith("*"),
    )
    if cron.weekdays_star and not cron.days_star:
        # Only days of month decide, so some month must have one of them (with a weekday
        # OR-ed in, or every day of month allowed, some day always matches).
        longest = {m: calendar.monthrange(2000, m)[1] for m in cron.months}  # 2000: leap
        if not any(min(cron.days) <= longest[m] for m in cron.months):
            raise CronError(
                f"cron '{text}' never fires: no month it names has day {min(cron.days)}",
                "check the day-of-month and month fields",
            )
    return cron


def _field(text: str, part: str, name: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    def bad(why: str) -> CronError:
        return CronError(
            f"cron '{text}': {name} field '{part}' {why}",
            f"{name} takes {low}-{high}"
            + (f" or names like {next(iter(names))}" if names else "")
            + ", with *, ranges a-b, lists a,b and steps /n",
        )

    def number(token: str) -> int:
        lowered = token.lower()
        if lowered in names:
            return names[lowered]
        if not token.isdigit():
            raise bad(f"has '{token}', which is not a number" + (" or a name" if names else ""))
        value = int(token)
        if not low <= value <= high:
            raise bad(f"has {value}, outside {low}-{high}")
        return value

    found: set[int] = set()
    for item in part.split(","):
        if not item:
            raise bad("has an empty list item")
        body, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) < 1:
                raise bad(f"has step '/{step_text}'; a step is a whole number from 1")
            step = int(step_text)
        if body == "*":
            first, last = low, high
        elif "-" in body:
            start, _, end = body.partition("-")
            first, last = number(start), number(end)
            if first > last:
                raise bad(f"has range {body} that runs backwards")
        else:
            first = number(body)
            last = high if slash else first
        found.update(range(first, last + 1, step))
    return found
