"""Reading py-spy's raw stacks (bench/profile.py): self and inclusive samples."""

from __future__ import annotations

from pathlib import Path

from bench.profile import collapsed, inclusive_time, self_time, shares

RAW = """\
main (services/state/__main__.py);complete (services/state/task_store.py);execute (psycopg/cursor.py) 30
main (services/state/__main__.py);complete (services/state/task_store.py);dumps (json/__init__.py) 10
main (services/state/__main__.py);select (selectors.py) 60
not a stack line
"""


def test_self_and_inclusive_samples_from_raw_stacks(tmp_path: Path):
    path = tmp_path / "state.txt"
    path.write_text(RAW)

    stacks = collapsed(path)

    assert sum(stacks.values()) == 100
    assert self_time(stacks).most_common(1) == [("select (selectors.py)", 60)]
    inclusive = inclusive_time(stacks)
    # Every own frame counted once per stack it is on; library frames left out.
    assert inclusive["main (services/state/__main__.py)"] == 100
    assert inclusive["complete (services/state/task_store.py)"] == 40
    assert "execute (psycopg/cursor.py)" not in inclusive
    assert shares(inclusive, 100, 1) == [(100.0, "main (services/state/__main__.py)")]
