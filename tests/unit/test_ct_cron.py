"""The cron parser: Vixie syntax, the day-of-month/day-of-week OR rule, next/previous times."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from mlopsctl.cron import CronError, parse_cron
from mlopsctl.errors import ExitCode


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def test_every_fifteen_minutes() -> None:
    cron = parse_cron("*/15 * * * *")
    assert cron.minutes == (0, 15, 30, 45)
    assert cron.next(t("2026-03-01 10:07")) == t("2026-03-01 10:15")
    assert cron.next(t("2026-03-01 10:15")) == t("2026-03-01 10:30")  # strictly after
    assert cron.previous(t("2026-03-01 10:15")) == t("2026-03-01 10:15")  # at or before
    assert cron.next(t("2026-12-31 23:50")) == t("2027-01-01 00:00")


def test_ranges_lists_and_steps() -> None:
    cron = parse_cron("0,30 1-5 1-31/10 * *")
    assert cron.minutes == (0, 30)
    assert cron.hours == (1, 2, 3, 4, 5)
    assert cron.days == {1, 11, 21, 31}
    assert parse_cron("5/20 * * * *").minutes == (5, 25, 45)  # start/step: to the field's end


def test_names_for_months_and_weekdays_any_case() -> None:
    cron = parse_cron("0 9 * JAN,jul mon-fri")
    assert cron.months == {1, 7}
    assert cron.weekdays == {1, 2, 3, 4, 5}
    # 2026-01-03 is a Saturday: the next fire is Monday the 5th at 09:00.
    assert cron.next(t("2026-01-03 12:00")) == t("2026-01-05 09:00")
    assert cron.previous(t("2026-01-03 12:00")) == t("2026-01-02 09:00")
    assert cron.next(t("2026-01-30 10:00")) == t("2026-07-01 09:00")  # Feb-Jun skipped


def test_sunday_is_zero_and_seven() -> None:
    assert parse_cron("0 0 * * 7").weekdays == parse_cron("0 0 * * sun").weekdays == {0}
    assert parse_cron("0 0 * * 5-7").weekdays == {5, 6, 0}


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    cron = parse_cron("0 0 13 * fri")  # the 13th, and every Friday (not only Friday the 13th)
    assert cron.matches(t("2026-01-13 00:00"))  # a Tuesday
    assert cron.matches(t("2026-01-02 00:00"))  # a Friday
    assert not cron.matches(t("2026-01-03 00:00"))
    # With a '*' in either field both must match: the star field matches every day anyway.
    starred = parse_cron("0 0 */1 * fri")
    assert not starred.matches(t("2026-01-13 00:00"))
    assert starred.matches(t("2026-01-02 00:00"))


def test_macros() -> None:
    assert parse_cron("@daily").expression == "@daily"
    assert parse_cron("@hourly").next(t("2026-01-01 10:30")) == t("2026-01-01 11:00")
    assert parse_cron("@weekly").next(t("2026-01-01 10:30")) == t("2026-01-04 00:00")  # Sunday
    assert parse_cron("@YEARLY").previous(t("2026-06-01 00:00")) == t("2026-01-01 00:00")
    assert parse_cron("@midnight").minutes == parse_cron("@daily").minutes


def test_leap_day_and_naive_times_are_utc() -> None:
    cron = parse_cron("30 12 29 feb *")
    assert cron.next(t("2026-03-01 00:00")) == t("2028-02-29 12:30")
    assert cron.previous(datetime(2026, 3, 1)) == t("2024-02-29 12:30")


@pytest.mark.parametrize(
    ("expression", "fragment"),
    [
        ("* * * *", "has 4 field(s), not 5"),
        ("60 * * * *", "minute field '60' has 60, outside 0-59"),
        ("* 24 * * *", "hour field '24' has 24, outside 0-23"),
        ("* * 0 * *", "day of month field '0' has 0, outside 1-31"),
        ("* * * 13 *", "month field '13' has 13, outside 1-12"),
        ("* * * * 8", "day of week field '8' has 8, outside 0-7"),
        ("5-1 * * * *", "range 5-1 that runs backwards"),
        ("*/0 * * * *", "step '/0'"),
        ("1,,2 * * * *", "empty list item"),
        ("* * * * funday", "'funday', which is not a number or a name"),
        ("* * * foo *", "'foo', which is not a number or a name"),
        ("@often", "unknown cron macro '@often'"),
        ("0 0 30 2 *", "never fires: no month it names has day 30"),
    ],
)
def test_invalid_expressions_say_which_field_and_why(expression: str, fragment: str) -> None:
    with pytest.raises(CronError) as caught:
        parse_cron(expression)
    assert fragment in caught.value.one_line()
    assert caught.value.exit_code == ExitCode.USAGE


def test_day_30_with_a_weekday_still_fires() -> None:
    # OR rule: "30 February or any Monday" fires on Mondays in February.
    cron = parse_cron("0 0 30 2 mon")
    assert cron.next(t("2026-01-01 00:00")) == t("2026-02-02 00:00")


def test_next_and_previous_match_a_minute_by_minute_scan() -> None:
    from datetime import timedelta

    cron = parse_cron("*/20 9-10 1,15 * wed")
    start = t("2026-01-01 00:00")
    minutes = [start + timedelta(minutes=i) for i in range(60 * 24 * 31)]
    fires = [m for m in minutes if cron.matches(m)]
    # Wednesdays (7, 14, 21, 28) plus the 1st and 15th: 6 days x 2 hours x 3 times.
    assert len(fires) == 36
    for moment in minutes[::97]:
        later = [f for f in fires if f > moment]
        if later:
            assert cron.next(moment) == later[0]
        earlier = [f for f in fires if f <= moment]
        if earlier:
            assert cron.previous(moment) == earlier[-1]
