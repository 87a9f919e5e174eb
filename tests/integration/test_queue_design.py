"""bench/queue_design.py on the test database: both designs do what they claim."""

from __future__ import annotations

import pytest

from bench.queue_design import run_in_database

N = 300  # three claim batches: 128, 128, 44


@pytest.fixture
def report(db_url: str) -> dict:
    return run_in_database(db_url, n=N, rounds=1)


def test_queue_designs_complete_every_task_and_write_what_they_should(report: dict):
    runs = {run["design"]: run for run in report["runs"]}
    a, b = runs["A"], runs["B"]

    for run in (a, b):
        assert run["task_statuses"] == {"completed": N}
        assert run["tasks_completed"] == N
        tasks = run["rows_written"]["coremachine.tasks"]
        # Inserted, claimed, settled: once each.
        assert tasks == {"ins": N, "upd": 2 * N, "del": 0}

    # A: one message per task, inserted with it, locked on receive, deleted at the end.
    assert a["rows_written"]["broker.messages"] == {"ins": N, "upd": N, "del": N}
    # ... which leaves its dead versions for vacuum; B leaves none there.
    assert a["dead_tuples_before_vacuum"].get("broker.messages", 0) > 0
    assert "broker.messages" not in b["dead_tuples_before_vacuum"]
    # B: the task row is the message.
    assert "broker.messages" not in b["rows_written"]
    assert "receive" not in b["phases"] and "broker_delete" not in b["phases"]
    assert b["rows_written_per_task"] < a["rows_written_per_task"]
    # The three broker writes per task are exactly what B saves.
    assert a["rows_written_per_task"] - b["rows_written_per_task"] == pytest.approx(3.0)
