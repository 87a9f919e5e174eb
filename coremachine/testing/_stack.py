"""The real services, with your apps loaded, for a test that runs a job end to end.

    with CoreMachineStack(apps="mypackage.jobs:app") as cm:
        job = cm.run("my_job", n=3)

Starts PostgreSQL's database (a fresh one on DATABASE_URL's server, else the
embedded PostgreSQL), migrates it, and runs the state service, the
orchestrator, one worker per pool and the gateway as real processes on free
ports — the same code a deployment runs, with short leases and retries so a
test finishes in seconds. `run` submits through the SDK and waits.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg

from coremachine.shared.pg_urls import start_embedded, with_dbname
from coremachine.stack.processes import Ports, Replica, Stack, data_dir, replica_name

# Quick recovery and retries: a test should not wait out production timeouts.
FAST_ENV = {
    "TASK_LEASE_SECONDS": "5",
    "BROKER_LOCK_SECONDS": "5",
    "JANITOR_INTERVAL_SECONDS": "1",
    "STAGE_STALL_SECONDS": "2",
    "TASK_RETRY_BASE_MS": "50",
    "TASK_RETRY_MAX_MS": "500",
    "WORKER_SHUTDOWN_GRACE_SECONDS": "2",
    "WORKER_HEARTBEAT_SECONDS": "1",
    "ORCHESTRATOR_REGISTRATION_SECONDS": "1",
    "LOG_LEVEL": "INFO",
}


class CoreMachineStack:
    """The four services as processes, with `apps` loaded (a context manager).

    apps: what COREMACHINE_APPS says ("pkg.module:app", several allowed);
        None: the apps installed packages register (entry points).
    pools: the queues of the workers, one worker process per item (an item
        may name several queues, comma-separated); default: one worker on
        "tasks".
    env: more settings for every service.
    database_url: a PostgreSQL server to create a fresh database on; default:
        DATABASE_URL, else the embedded PostgreSQL under COREMACHINE_DATA_DIR.
    """

    def __init__(
        self,
        apps: str | Sequence[str] | None = None,
        *,
        pools: Sequence[str] = ("tasks",),
        env: Mapping[str, str] | None = None,
        database_url: str | None = None,
        log_dir: Path | None = None,
    ) -> None:
        if not pools:
            raise ValueError("pools needs at least one queue")
        self.apps = apps if isinstance(apps, str) or apps is None else ",".join(apps)
        self.pools = list(pools)
        self.env = dict(env or {})
        self.server_url = database_url or os.environ.get("DATABASE_URL")
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="coremachine-logs-"))
        self.database_url = ""
        self.stack: Stack | None = None
        self._client: Any = None

    # -- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> CoreMachineStack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        admin = self.server_url or start_embedded(data_dir() / "test-pg")
        name = f"cm_app_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self._admin_url = admin
        self.database_url = with_dbname(admin, name)
        env = {**FAST_ENV, **self.env}
        if self.apps is not None:
            env["COREMACHINE_APPS"] = self.apps
        self.stack = Stack(
            self.database_url,
            Ports.free(),
            log_dir=self.log_dir,
            extra_env=env,
            # One worker process per pool, on the same services.
            replicas={
                "worker": [
                    Replica({"WORKER_QUEUES": pool, "WORKER_ID": f"worker-{pool}"})
                    for pool in self.pools
                ]
            },
        )
        self.stack.up()

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.stack is not None:
            self.stack.stop()
            self.stack = None
        if self.database_url:
            name = psycopg.conninfo.conninfo_to_dict(self.database_url)["dbname"]
            with psycopg.connect(self._admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            self.database_url = ""

    # -- what a test uses --------------------------------------------------------

    def _running(self) -> Stack:
        if self.stack is None:
            raise RuntimeError("the stack is not running: use `with CoreMachineStack(...)`")
        return self.stack

    @property
    def http_url(self) -> str:
        return self._running().http_url

    @property
    def grpc_address(self) -> str:
        return self._running().grpc_address

    @property
    def api_key(self) -> str:
        """The admin API key of this stack (send `Authorization: Bearer <key>`)."""
        return self._running().api_key

    @property
    def client(self) -> Any:
        """A coremachine_sdk.Client of the stack's gateway."""
        if self._client is None:
            from coremachine_sdk import Client

            self._client = Client(self.grpc_address, api_key=self.api_key)
        return self._client

    def run(self, job_type: str, timeout: float = 60.0, **parameters: Any) -> Any:
        """Submits a job and waits until it ends; returns the SDK's Job."""
        job = self.client.submit(job_type, **parameters)
        return self.client.wait(job.job_id, timeout=timeout)

    def stop_pool(self, pool: str) -> None:
        """Stops the pool's worker as a rolling restart would (SIGTERM): its
        queue then has no live consumer until start_pool."""
        self._running().terminate(self._pool_worker(pool))

    def start_pool(self, pool: str) -> None:
        stack = self._running()
        stack.start(self._pool_worker(pool))
        stack.wait_serving(self._pool_worker(pool))

    def _pool_worker(self, pool: str) -> str:
        if pool not in self.pools:
            raise KeyError(f"no pool {pool!r}; pools: {self.pools}")
        return replica_name("worker", self.pools.index(pool), len(self.pools))

    def logs(self) -> dict[str, str]:
        """The services' logs so far (for a failing test's message)."""
        return {p.name: p.read_text(errors="replace") for p in self.log_dir.rglob("*.log")}
