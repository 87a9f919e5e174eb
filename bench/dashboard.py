"""`python -m bench.dashboard`: how long the dashboard's pages take on a 100,000-task job.

A stack of its own with no worker (the job's tasks stay queued while the
pages are read), one hello_world job of n tasks, a signed-in session, then
each page read `--rounds` times: median and 95th percentile per page. The
pages are built from stage counters and one page of tasks, so their time
should not grow with n; compare `--n 1000` with the default.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import httpx

from bench.harness import bench_stack
from coremachine.stack.processes import Stack


def signed_in(base_url: str, api_key: str) -> httpx.Client:
    ui = httpx.Client(base_url=base_url, timeout=60)
    token = ui.get("/ui/login").text.split('name="csrf_token" value="')[1].split('"')[0]
    r = ui.post("/ui/login", data={"csrf_token": token, "api_key": api_key})
    if r.status_code != 303:  # signed in: sent on to the jobs page
        raise RuntimeError(f"sign-in failed: {r.status_code} {r.text[:200]}")
    return ui


def planned_job(stack: Stack, n: int) -> str:
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    with httpx.Client(base_url=stack.http_url, headers=headers, timeout=60) as http:
        r = http.post("/api/jobs/submit/hello_world", json={"n": n, "message": "bench"})
        job_id: str = r.raise_for_status().json()["job"]["job_id"]
        while True:
            stages = http.get(f"/api/jobs/status/{job_id}").json()["stages"]
            if stages and stages[0]["task_count"] == n:
                return job_id
            time.sleep(0.2)


def page_times(ui: httpx.Client, paths: dict[str, str], rounds: int) -> dict[str, dict[str, float]]:
    results = {}
    for label, path in paths.items():
        ui.get(path).raise_for_status()  # warm: connections, job types
        samples = []
        for _ in range(rounds):
            started = time.perf_counter()
            ui.get(path).raise_for_status()
            samples.append((time.perf_counter() - started) * 1000)
        samples.sort()
        results[label] = {
            "p50_ms": round(statistics.median(samples), 1),
            "p95_ms": round(samples[int(len(samples) * 0.95) - 1], 1),
        }
    return results


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard")
    parser.add_argument("--n", type=int, default=100_000, help="tasks of the job's first stage")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with bench_stack() as stack:
        stack.kill("worker")  # the tasks stay queued while the pages are read
        job_id = planned_job(stack, args.n)
        ui = signed_in(stack.http_url, stack.api_key)
        try:
            times = page_times(
                ui,
                {
                    "job": f"/ui/jobs/{job_id}",
                    "tasks": f"/ui/jobs/{job_id}/tasks",
                    "tasks, stage 1 queued": f"/ui/jobs/{job_id}/tasks?stage=1&status=queued",
                    "jobs": "/ui/jobs",
                    "queues": "/ui/queues",
                    "workers": "/ui/workers",
                },
                args.rounds,
            )
        finally:
            ui.close()
    print(json.dumps({"n": args.n, "rounds": args.rounds, "pages": times}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
