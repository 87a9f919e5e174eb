"""Mixed HTTP traffic against the gateway, as many clients would send it:
submits, status reads, lists and event streams (`make load`, `make soak`)."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import httpx

KINDS = ("submit", "status", "list", "events")
DEFAULT_WEIGHTS = {"submit": 2, "status": 5, "list": 2, "events": 1}


@dataclass
class KindStats:
    latencies_ms: list[float] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)

    def percentile(self, fraction: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


@dataclass
class Stats:
    kinds: dict[str, KindStats] = field(default_factory=lambda: {k: KindStats() for k in KINDS})
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return sum(len(k.latencies_ms) for k in self.kinds.values())

    def server_errors(self) -> dict[str, int]:
        """5xx answers and failed connections, per kind and code."""
        return {
            f"{kind} {code}": count
            for kind, stats in self.kinds.items()
            for code, count in stats.codes.items()
            if code.startswith("5") or not code[0].isdigit()
        }

    def as_dict(self) -> dict[str, object]:
        return {
            "seconds": round(self.seconds, 1),
            "requests": self.requests,
            "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else 0,
            "kinds": {
                kind: {
                    "requests": len(s.latencies_ms),
                    "p50_ms": round(s.percentile(0.5), 1),
                    "p99_ms": round(s.percentile(0.99), 1),
                    "codes": dict(s.codes),
                }
                for kind, s in self.kinds.items()
            },
            "server_errors": self.server_errors(),
        }


class Traffic:
    """Runs clients that pick a request kind by weight, until the deadline.

    Submits are small hello_world jobs (n of 1 to 3); one in five repeats an
    earlier submit's parameters (the same job, answered 200). Event streams
    follow a recent job until its end. `rate` (requests per second over all
    clients) paces a steady soak; without it each client goes flat out.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        weights: dict[str, int] | None = None,
        seed: int = 0,
    ) -> None:
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.weights = weights or DEFAULT_WEIGHTS
        self.rng = random.Random(seed)
        self.stats = Stats()
        self.jobs: list[str] = []
        self._submitted: list[dict[str, object]] = []

    async def run(self, clients: int, duration: float, rate: float | None = None) -> Stats:
        limits = httpx.Limits(max_connections=clients * 2, max_keepalive_connections=clients * 2)
        async with httpx.AsyncClient(
            base_url=self.base_url, headers=self.headers, timeout=120, limits=limits
        ) as http:
            # A first job, so that reads have something to read.
            await self._submit(http)
            started = time.monotonic()
            deadline = started + duration
            interval = clients / rate if rate else 0.0
            await asyncio.gather(*(self._client(http, deadline, interval) for _ in range(clients)))
            self.stats.seconds = time.monotonic() - started
        return self.stats

    async def _client(self, http: httpx.AsyncClient, deadline: float, interval: float) -> None:
        kinds = list(self.weights)
        weights = [self.weights[k] for k in kinds]
        while time.monotonic() < deadline:
            began = time.monotonic()
            kind = self.rng.choices(kinds, weights)[0]
            await self._one(http, kind)
            if interval:
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))

    async def _one(self, http: httpx.AsyncClient, kind: str) -> None:
        started = time.perf_counter()
        try:
            code = await getattr(self, f"_{kind}")(http)
        except httpx.HTTPError as exc:
            code = type(exc).__name__
        stats = self.stats.kinds[kind]
        stats.latencies_ms.append((time.perf_counter() - started) * 1000)
        stats.codes[str(code)] += 1

    def _recent_job(self) -> str:
        return self.rng.choice(self.jobs[-50:])

    async def _submit(self, http: httpx.AsyncClient) -> int:
        if self._submitted and self.rng.random() < 0.2:
            body = self.rng.choice(self._submitted[-20:])
        else:
            body = {"n": self.rng.randint(1, 3), "message": uuid.uuid4().hex}
            self._submitted.append(body)
        r = await http.post("/api/jobs/submit/hello_world", json=body)
        if r.status_code in (200, 202):
            job_id = r.json()["job"]["job_id"]
            if r.status_code == 202:
                self.jobs.append(job_id)
        return r.status_code

    async def _status(self, http: httpx.AsyncClient) -> int:
        return (await http.get(f"/api/jobs/status/{self._recent_job()}")).status_code

    async def _list(self, http: httpx.AsyncClient) -> int:
        return (await http.get("/api/db/jobs", params={"limit": 20})).status_code

    async def _events(self, http: httpx.AsyncClient) -> int:
        """Follows a job's event stream to its end (or an error event)."""
        async with http.stream("GET", f"/api/jobs/{self._recent_job()}/events") as r:
            if r.status_code != 200:
                return r.status_code
            async for line in r.aiter_lines():
                if line == "event: end":
                    return 200
                if line == "event: error":
                    return 503  # the stream broke off: the gateway's 503 in the stream
        return 200
