"""Schedules end to end, with two state services and two orchestrators on one
database: every tick is one job, none twice; after all of them stop for ten
ticks, each catch-up policy does what it says; overlap policies; trigger-now,
pause, resume and delete through the HTTP API."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest

from coremachine.stack.processes import Stack
from tests.databases import drop_database
from tests.e2e.conftest import auth_headers, make_stack, wait_for_job
from tests.e2e.faults import wait_until
from tests.e2e.replicas import Replica, Replicas

pytestmark = pytest.mark.e2e

APPS = "coremachine.builtin:create_app,tests.e2e.flow_app:app"


@dataclass
class Cluster:
    stack: Stack
    replicas: Replicas
    state2: Replica
    orchestrator2: Replica


@pytest.fixture(scope="module")
def cluster(admin_url, tmp_path_factory) -> Iterator[Cluster]:
    stack, url = make_stack(
        admin_url,
        tmp_path_factory.mktemp("schedules"),
        extra_env={
            "COREMACHINE_APPS": APPS,
            "SCHEDULER_POLL_SECONDS": "0.5",
            "LOG_LEVEL": "WARNING",
            "JANITOR_INTERVAL_SECONDS": "1",
        },
    )
    stack.up()
    replicas = Replicas(stack)
    state2 = replicas.add("state", "state-2")
    orchestrator2 = replicas.add(
        "orchestrator", "orchestrator-2", STATE_ADDRESS=state2.address, ORCHESTRATOR_ID="orch-2"
    )
    yield Cluster(stack, replicas, state2, orchestrator2)
    replicas.stop_all()
    stack.stop()
    drop_database(admin_url, url)


@pytest.fixture
def http(cluster: Cluster) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=cluster.stack.http_url, timeout=30, headers=auth_headers(cluster.stack.api_key)
    ) as client:
        yield client


def create(http: httpx.Client, **body) -> dict:
    response = http.post("/api/schedules", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def firings(http: httpx.Client, name: str) -> list[dict]:
    response = http.get(f"/api/schedules/{name}/firings", params={"limit": 1000})
    assert response.status_code == 200, response.text
    return sorted(response.json()["firings"], key=lambda f: f["tick_at"])


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def fired(records: list[dict], kind: str | None = None) -> list[dict]:
    return [
        f for f in records if f["outcome"] == "submitted" and (kind is None or f["kind"] == kind)
    ]


def test_two_orchestrators_and_two_state_services_fire_each_tick_once_and_catch_up(
    cluster: Cluster, http: httpx.Client
):
    policies = {
        "each-second-skip": {"catch_up": "skip"},
        "each-second-once": {"catch_up": "run_once"},
        "each-second-each": {"catch_up": "run_each", "catch_up_limit": 3},
    }
    for name, policy in policies.items():
        create(
            http,
            name=name,
            job_type="noop",
            parameters={"n": 1},
            cron="* * * * * *",
            overlap="allow",
            **policy,
        )
    # 30 ticks of the first schedule.
    wait_until(
        lambda: len(fired(firings(http, "each-second-skip"))) >= 31,
        timeout=90,
        what="31 fired ticks",
    )
    ticks = fired(firings(http, "each-second-skip"))[:30]
    times = [at(f["tick_at"]) for f in ticks]
    assert all(b - a == dt.timedelta(seconds=1) for a, b in itertools.pairwise(times)), times
    job_ids = [f["job_id"] for f in ticks]
    assert len(set(job_ids)) == 30
    with psycopg.connect(cluster.stack.database_url) as conn:
        jobs = conn.execute(
            "SELECT count(*) FROM coremachine.jobs WHERE job_id = ANY(%s)", (job_ids,)
        ).fetchone()
        claimers = conn.execute(
            "SELECT count(DISTINCT claimed_by) FROM coremachine.schedule_firings"
            " WHERE schedule = 'each-second-skip' AND tick_at = ANY(%s)",
            (times,),
        ).fetchone()
    assert jobs is not None and jobs[0] == 30
    assert claimers is not None and claimers[0] == 2, "both orchestrators fired ticks"
    for job_id in job_ids[:3] + job_ids[-3:]:
        assert wait_for_job(http, job_id)["status"] == "completed"

    # Everything that fires stops for ten ticks: both orchestrators, both states.
    stack, replicas = cluster.stack, cluster.replicas
    replicas.stop(cluster.orchestrator2)
    stack.procs["orchestrator"].terminate()
    stack.procs["orchestrator"].wait(30)
    replicas.stop(cluster.state2)
    stack.procs["state"].terminate()
    stack.procs["state"].wait(30)
    stopped = time.monotonic()
    wait_until(lambda: time.monotonic() - stopped >= 10.5, timeout=20, what="ten ticks")
    stack.restart("state")
    stack.restart("orchestrator")
    replicas.start(cluster.state2)
    replicas.start(cluster.orchestrator2)
    restarted = dt.datetime.now(dt.UTC)

    def on_time_after_restart(name: str) -> bool:
        return any(at(f["tick_at"]) >= restarted for f in fired(firings(http, name), "tick"))

    for name in policies:
        wait_until(lambda n=name: on_time_after_restart(n), timeout=60, what=f"{name} resumed")

    def outage(name: str) -> tuple[list[dict], list[dict], int]:
        """The catch-up firings and missed records of the outage, and its ticks."""
        records = firings(http, name)
        ticks = [
            at(f["tick_at"]) for f in records if f["kind"] == "tick" and f["outcome"] != "missed"
        ]
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(ticks)]
        assert max(gaps) >= 11, gaps  # the outage: ten ticks and more without an on-time one
        before, after = next(
            (a, b) for a, b in itertools.pairwise(ticks) if (b - a).total_seconds() >= 11
        )
        within = [f for f in records if before < at(f["tick_at"]) < after]
        return (
            [f for f in within if f["kind"] == "catch_up"],
            [f for f in within if f["outcome"] == "missed"],
            int((after - before).total_seconds()) - 1,
        )

    catch_up, missed, down = outage("each-second-skip")
    assert catch_up == [] and [m["missed_count"] for m in missed] == [down]
    catch_up, missed, down = outage("each-second-once")
    assert len(catch_up) == 1 and [m["missed_count"] for m in missed] == [down - 1]
    catch_up, missed, down = outage("each-second-each")
    assert len(catch_up) == 3 and [m["missed_count"] for m in missed] == [down - 3]
    assert all(f["outcome"] == "submitted" for f in catch_up)
    for f in catch_up:
        assert wait_for_job(http, f["job_id"])["status"] == "completed"
    # No job without its firing, no firing with two jobs.
    for name in policies:
        http.post(f"/api/schedules/{name}/pause").raise_for_status()
    with psycopg.connect(cluster.stack.database_url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM coremachine.jobs WHERE job_type = 'noop'),"
            " (SELECT count(DISTINCT job_id) FROM coremachine.schedule_firings"
            "  WHERE outcome IN ('submitted', 'pending'))"
        ).fetchone()
    assert row is not None and row[0] == row[1]


def test_overlap_skip_waits_for_the_previous_run(cluster: Cluster, http: httpx.Client):
    create(
        http,
        name="overlap-skip",
        job_type="sleepy",
        parameters={"seconds": 2.5},
        interval_seconds=1,
        overlap="skip",
    )
    wait_until(lambda: len(fired(firings(http, "overlap-skip"))) >= 3, timeout=60, what="3 runs")
    http.post("/api/schedules/overlap-skip/pause").raise_for_status()
    records = firings(http, "overlap-skip")
    skipped = [f for f in records if f["outcome"] == "skipped"]
    assert skipped and all("still going" in f["detail"] for f in skipped)
    job_ids = [f["job_id"] for f in fired(records)]
    with psycopg.connect(cluster.stack.database_url) as conn:
        spans = conn.execute(
            "SELECT min(started_at), max(coalesce(completed_at, now())) FROM coremachine.tasks"
            " WHERE job_id = ANY(%s) GROUP BY job_id ORDER BY 1",
            (job_ids,),
        ).fetchall()
    for (_, ended), (started, _) in itertools.pairwise(spans):
        assert started >= ended, "two runs of the schedule overlapped"


def test_overlap_cancel_previous_cancels_the_run_still_going(cluster: Cluster, http: httpx.Client):
    create(
        http,
        name="overlap-cancel",
        job_type="sleepy",
        parameters={"seconds": 30},
        interval_seconds=2,
        overlap="cancel_previous",
    )
    wait_until(lambda: len(fired(firings(http, "overlap-cancel"))) >= 3, timeout=60, what="3 runs")
    http.post("/api/schedules/overlap-cancel/pause").raise_for_status()
    runs = fired(firings(http, "overlap-cancel"))
    statuses = [http.get(f"/api/jobs/status/{f['job_id']}").json() for f in runs[:2]]
    assert [s["status"] for s in statuses] == ["cancelled", "cancelled"]
    assert all("schedule 'overlap-cancel'" in s["error"] for s in statuses)


def test_trigger_pause_resume_and_delete_through_the_api(cluster: Cluster, http: httpx.Client):
    created = create(
        http,
        name="yearly",
        job_type="hello_world",
        parameters={"n": 2},
        cron="0 3 1 1 *",
        timezone="Europe/Paris",
        description="new year",
    )
    assert created["next_fire_at"].startswith(f"{dt.date.today().year + 1}-01-01T02:00")
    again = {"name": "yearly", "job_type": "hello_world", "cron": "* * * * *"}
    assert http.post("/api/schedules", json=again).status_code == 409
    bad = http.post(
        "/api/schedules", json={"name": "bad", "job_type": "hello_world", "cron": "61 * * * *"}
    )
    assert bad.status_code == 400 and "cron" in bad.text
    bad = http.post(
        "/api/schedules",
        json={
            "name": "bad",
            "job_type": "hello_world",
            "cron": "* * * * *",
            "parameters": {"n": -1},
        },
    )
    assert bad.status_code == 400 and "n" in bad.json()["message"]
    triggered = http.post("/api/schedules/yearly/trigger").raise_for_status().json()
    assert triggered["firing"]["kind"] == "manual" and triggered["job"]["job_type"] == "hello_world"
    assert wait_for_job(http, triggered["job"]["job_id"])["status"] == "completed"
    [manual] = firings(http, "yearly")
    assert (manual["outcome"], manual["job_id"]) == ("submitted", triggered["job"]["job_id"])
    assert http.post("/api/schedules/yearly/pause").json()["paused"] is True
    resumed = http.post("/api/schedules/yearly/resume").json()
    assert resumed["paused"] is False
    names = [s["name"] for s in http.get("/api/schedules").json()["schedules"]]
    assert "yearly" in names
    assert http.delete("/api/schedules/yearly").json() == {"deleted": True}
    assert http.get("/api/schedules/yearly").status_code == 404


def test_the_sdk_and_the_cli_manage_schedules(cluster: Cluster, capsys):
    from coremachine_sdk import Client, Conflict, Schedule
    from coremachine_sdk.cli import main

    address, key = cluster.stack.grpc_address, cluster.stack.api_key
    with Client(address, api_key=key) as client:
        created = client.create_schedule(
            Schedule(
                name="sdk-daily", job_type="hello_world", parameters={"n": 1}, cron="0 4 * * *"
            )
        )
        # Validated by the job type's model: its defaults filled in.
        assert created.next_fire_at is not None and created.parameters["n"] == 1
        assert created.parameters["message"] == "Hello World"
        with pytest.raises(Conflict):
            client.create_schedule(
                Schedule(name="sdk-daily", job_type="hello_world", cron="* * * * *")
            )
        assert "sdk-daily" in [s.name for s in client.list_schedules()]
        assert client.pause_schedule("sdk-daily").paused
        assert not client.resume_schedule("sdk-daily").paused
        firing, job = client.trigger_schedule("sdk-daily")
        assert firing.kind == "manual" and job is not None
        assert client.wait(job.job_id, timeout=60).status == "completed"
        assert [f.job_id for f in client.schedule_firings("sdk-daily")] == [job.job_id]
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
        delayed = client.submit_job(
            "hello_world", {"n": 1, "message": "later"}, priority=8, not_before=later
        )
        assert (delayed.status, delayed.priority) == ("queued", 8)
        assert delayed.not_before is not None and "starts at" in (delayed.waiting or "")
        assert client.delete_schedule("sdk-daily")
    args = ["--address", address, "--api-key", key, "--json"]
    assert (
        main([*args, "schedule", "create", "cli-hourly", "hello_world", "n=2", "--every", "3600"])
        == 0
    )
    shown = capsys.readouterr().out
    assert '"interval_seconds": 3600.0' in shown
    assert main([*args, "schedule", "trigger", "cli-hourly"]) == 0
    assert '"kind": "manual"' in capsys.readouterr().out
    assert main([*args, "schedule", "firings", "cli-hourly"]) == 0
    assert '"outcome": "submitted"' in capsys.readouterr().out
    assert main([*args, "schedules"]) == 0
    assert "cli-hourly" in capsys.readouterr().out
    assert (
        main([*args, "submit", "hello_world", "n=1", "--priority", "7", "--not-before", "+3600"])
        == 0
    )
    assert '"priority": 7' in capsys.readouterr().out
    assert main([*args, "schedule", "delete", "cli-hourly"]) == 0
