"""Schedule ticks (cron in a time zone through daylight-saving changes, fixed
intervals) and the catch-up policies after downtime."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from coremachine.shared.domain.schedules import (
    Schedule,
    ScheduleError,
    check_schedule,
    due_ticks,
    ticks_after,
)

UTC = dt.UTC


def t(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def first(schedule: Schedule, after: dt.datetime, n: int) -> list[str]:
    return [x.isoformat() for x in itertools.islice(ticks_after(schedule, after), n)]


def test_cron_in_a_time_zone_fires_once_through_daylight_saving_changes():
    daily = Schedule("d", "noop", cron="30 2 * * *", timezone="Europe/Berlin")
    # 02:30 does not exist on 2024-03-31: it fires at 03:00 local (01:00 UTC), once.
    assert first(daily, t(2024, 3, 30, 12), 2) == [
        "2024-03-31T01:00:00+00:00",
        "2024-04-01T00:30:00+00:00",
    ]
    # 02:30 happens twice on 2024-10-27: it fires once, at the first.
    assert first(daily, t(2024, 10, 26, 12), 2) == [
        "2024-10-27T00:30:00+00:00",
        "2024-10-28T01:30:00+00:00",
    ]
    # An expression with wildcard hours keeps its real-time rhythm through the change.
    half_hourly = Schedule("h", "noop", cron="*/30 * * * *", timezone="Europe/Berlin")
    ticks = list(itertools.islice(ticks_after(half_hourly, t(2024, 10, 26, 23, 50)), 6))
    assert all((b - a) == dt.timedelta(minutes=30) for a, b in itertools.pairwise(ticks))


def test_six_fields_have_seconds_first_and_intervals_count_from_their_anchor():
    every_second = Schedule("s", "noop", cron="*/15 * * * * *")
    assert first(every_second, t(2024, 1, 1, 0, 0, 1), 2) == [
        "2024-01-01T00:00:15+00:00",
        "2024-01-01T00:00:30+00:00",
    ]
    interval = Schedule("i", "noop", interval_seconds=90, anchor_at=t(2024, 1, 1))
    assert first(interval, t(2024, 1, 1, 0, 2), 2) == [
        "2024-01-01T00:03:00+00:00",
        "2024-01-01T00:04:30+00:00",
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"cron": None, "interval_seconds": 0.5}, "interval_seconds"),
        ({"interval_seconds": 5.0}, "cron"),
        ({"catch_up": "sometimes"}, "catch_up"),
        ({"overlap": "queue"}, "overlap"),
        ({"priority": 11}, "priority"),
        ({"name": "Has Spaces"}, "name"),
    ],
)
def test_a_bad_schedule_is_refused_naming_the_field(change: dict, field: str):
    base = {"name": "ok", "job_type": "noop", "cron": "* * * * *"}
    with pytest.raises(ScheduleError) as err:
        check_schedule(Schedule(**{**base, **change}))
    assert err.value.field == field


def per_second(**kw) -> Schedule:
    return Schedule("p", "noop", cron="* * * * * *", grace_seconds=5, **kw)


def test_on_time_tick_fires_and_the_schedule_moves_on():
    due = due_ticks(per_second(), t(2024, 1, 1, 0, 0, 10), t(2024, 1, 1, 0, 0, 10, 300000))
    assert due.fire == [(t(2024, 1, 1, 0, 0, 10), "tick")]
    assert due.missed is None
    assert due.next_fire_at == t(2024, 1, 1, 0, 0, 11)


def test_after_downtime_skip_runs_no_missed_tick():
    # Down from tick 10 to just after tick 20: 10 missed, tick 20 is on time.
    due = due_ticks(per_second(), t(2024, 1, 1, 0, 0, 10), t(2024, 1, 1, 0, 0, 20, 500000))
    assert due.fire == [(t(2024, 1, 1, 0, 0, 20), "tick")]
    assert due.missed == (t(2024, 1, 1, 0, 0, 10), t(2024, 1, 1, 0, 0, 19), 10)


def test_after_downtime_run_once_runs_one_job_for_the_missed_ticks():
    due = due_ticks(
        per_second(catch_up="run_once"), t(2024, 1, 1, 0, 0, 10), t(2024, 1, 1, 0, 0, 20, 500000)
    )
    assert due.fire == [(t(2024, 1, 1, 0, 0, 19), "catch_up"), (t(2024, 1, 1, 0, 0, 20), "tick")]
    assert due.missed == (t(2024, 1, 1, 0, 0, 10), t(2024, 1, 1, 0, 0, 18), 9)


def test_after_downtime_run_each_runs_the_latest_missed_ticks_up_to_the_limit():
    schedule = per_second(catch_up="run_each", catch_up_limit=3)
    due = due_ticks(schedule, t(2024, 1, 1, 0, 0, 10), t(2024, 1, 1, 0, 0, 20, 500000))
    assert [k for _, k in due.fire] == ["catch_up"] * 3 + ["tick"]
    assert [x.second for x, _ in due.fire] == [17, 18, 19, 20]
    assert due.missed == (t(2024, 1, 1, 0, 0, 10), t(2024, 1, 1, 0, 0, 16), 7)
    # Fewer missed ticks than the limit: each runs, none is reported missed.
    due = due_ticks(schedule, t(2024, 1, 1, 0, 0, 18), t(2024, 1, 1, 0, 0, 20, 1))
    assert [x.second for x, _ in due.fire] == [18, 19, 20] and due.missed is None


def test_a_tick_claimed_later_than_its_grace_is_missed():
    daily = Schedule("d", "noop", cron="0 3 * * *", grace_seconds=60)
    due = due_ticks(daily, t(2024, 1, 1, 3), t(2024, 1, 1, 9))
    assert due.fire == [] and due.missed == (t(2024, 1, 1, 3), t(2024, 1, 1, 3), 1)
    assert due.next_fire_at == t(2024, 1, 2, 3)
