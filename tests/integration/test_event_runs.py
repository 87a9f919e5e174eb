"""Events are written as one row per job and transaction (a run, migration
0012) and read back one by one: gap-free, resumable after any seq, filtered
by level, and the events written before the migration kept."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import psycopg

from coremachine.services.state.schema import LEDGER, MIGRATIONS_DIR
from coremachine.shared.migrations import migrate
from tests.databases import create_database, drop_database
from tests.integration.state_fixtures import claim_stage, make_job, make_stage, ok


async def runs_of(conn: psycopg.AsyncConnection, job_id: str) -> list[tuple[int, int, list[str]]]:
    cur = await conn.execute(
        "SELECT last_seq, n, event_types FROM coremachine.job_event_runs"
        " WHERE job_id = %s ORDER BY last_seq",
        (job_id,),
    )
    return [(last, n, sorted(types)) for last, n, types in await cur.fetchall()]


async def test_a_claim_batch_writes_one_row_for_its_events(store, pg_conn):
    job_id = await make_job(store, total_stages=1)
    await make_stage(store, job_id, 1, 128)
    before = await runs_of(pg_conn, job_id)
    await claim_stage(store, job_id, 1)
    after = await runs_of(pg_conn, job_id)
    [claim_run] = after[len(before) :]
    assert claim_run[1:] == (128, ["task_started"])
    # Numbered on from the runs before it.
    assert claim_run[0] == before[-1][0] + 128


async def test_pages_start_and_end_inside_a_run(store):
    job_id = await make_job(store, total_stages=1)
    await make_stage(store, job_id, 1, 40)
    claimed = await claim_stage(store, job_id, 1)
    await store.complete_tasks([ok(*c) for c in claimed.values()])
    everything = (await store.events_page(job_id, 0, 1000)).events
    seqs = [e.seq for e in everything]
    assert seqs == list(range(1, len(seqs) + 1))
    # Resuming after any seq, with any page size, reads the same events.
    for after in (0, 1, 3, 17, 41, len(seqs) - 1):
        for limit in (1, 7, 50):
            page = (await store.events_page(job_id, after, limit)).events
            assert page == everything[after : after + limit]
    started = [e for e in everything if e.event_type == "task_started"]
    assert sorted(e.task_id for e in started) == sorted(t for t, _ in claimed.values())
    assert all(e.data["worker_id"] == "test-worker" for e in started)


async def test_level_filters_pass_over_other_runs(store):
    job_id = await make_job(store, total_stages=1)
    await make_stage(store, job_id, 1, 30)
    claimed = await claim_stage(store, job_id, 1)
    await store.complete_tasks([ok(*c) for c in claimed.values()])
    await store.complete_job(job_id, {})
    everything = (await store.events_page(job_id, 0, 1000)).events
    job_level = (await store.events_page(job_id, 0, 1000, job_level_only=True)).events
    assert job_level == [e for e in everything if e.task_id is None]
    assert job_level[0].event_type == "job_created" and job_level[-1].event_type == "job_completed"
    after_first = (await store.events_page(job_id, job_level[0].seq, 1, job_level_only=True)).events
    assert after_first == job_level[1:2]
    end = await store.events_page(job_id, 0, 1000, end_only=True)
    assert [e.event_type for e in end.events] == ["job_completed"] and end.complete


J1 = "1" * 64


async def test_events_written_before_the_migration_are_kept(admin_url, tmp_path: Path):
    url = create_database(admin_url, prefix="cm_runs")
    try:
        before = tmp_path / "migrations"
        before.mkdir()
        for f in sorted(MIGRATIONS_DIR.glob("*.sql")):
            if int(f.name[:4]) < 12:
                shutil.copy(f, before / f.name)
        await migrate(url, before, LEDGER)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(
                "INSERT INTO coremachine.jobs (job_id, job_type, total_stages) VALUES (%s, 'noop', 1)",
                (J1,),
            )
            events = [
                {"job_id": J1, "event_type": "job_created", "data": {"n": 1}},
                {"job_id": J1, "event_type": "task_started", "stage": 1, "task_id": "t1"},
                {"job_id": J1, "event_type": "job_completed", "data": {"status": "completed"}},
            ]
            await conn.execute(
                "SELECT coremachine.append_events(%s::jsonb, %s)",
                (json.dumps(events), ["job_completed"]),
            )
        await migrate(url, MIGRATIONS_DIR, LEDGER)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            cur = await conn.execute(
                "SELECT seq, event_type, stage, task_id, data FROM coremachine.job_events"
                " WHERE job_id = %(j)s ORDER BY seq",
                {"j": J1},
            )
            assert await cur.fetchall() == [
                (1, "job_created", None, None, {"n": 1}),
                (2, "task_started", 1, "t1", {}),
                (3, "job_completed", None, None, {"status": "completed"}),
            ]
            # Numbering goes on after them.
            await conn.execute(
                "SELECT coremachine.append_events(%s::jsonb, %s)",
                (json.dumps([{"job_id": J1, "event_type": "job_resumed"}]), ["job_completed"]),
            )
            cur = await conn.execute(
                "SELECT max(seq), count(*) FROM coremachine.job_events WHERE job_id = %(j)s",
                {"j": J1},
            )
            assert await cur.fetchone() == (4, 4)
    finally:
        drop_database(admin_url, url)
