"""How the dashboard words a moment: past ("12 s ago") and ahead ("in 3 h")."""

from __future__ import annotations

import datetime as dt

import pytest

from coremachine.services.api_gateway.ui.context import _age

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("offset_s", "expected"),
    [
        (-12, "12 s ago"),
        (-600, "10 min ago"),
        (-3 * 3600, "3 h ago"),
        (-3 * 86400, "3 d ago"),
        (0, "0 s ago"),
        (45, "in 45 s"),
        (11 * 3600 + 36 * 60, "in 11 h"),
        (2 * 86400 + 1, "in 2 d"),
    ],
)
def test_age_words_past_and_future_moments(offset_s: int, expected: str) -> None:
    moment = (NOW + dt.timedelta(seconds=offset_s)).isoformat().replace("+00:00", "Z")
    assert _age(moment, now=NOW) == expected


def test_no_moment_is_an_empty_string() -> None:
    assert _age(None) == "" and _age("") == ""
