"""`make load`: many concurrent clients against the gateway; a report, and
exit 1 on any 5xx or failed connection (figures are reported, not asserted).

    python -m bench.load [--clients 50] [--duration 30] [--workers 2 ...]
    python -m bench.load --url http://host:8080 --api-key KEY   # a running stack

Without --url it starts its own stack (DATABASE_URL, else the embedded
PostgreSQL) on a fresh database, with the replicas asked for.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.local_stack import ROOT, local_stack
from bench.traffic import DEFAULT_WEIGHTS, Stats, Traffic

console = Console()


def parse_weights(text: str) -> dict[str, int]:
    """`submit=2,status=5,list=2,events=1`."""
    weights = dict(DEFAULT_WEIGHTS)
    for part in filter(None, text.split(",")):
        kind, _, value = part.partition("=")
        if kind not in weights:
            raise argparse.ArgumentTypeError(f"unknown request kind {kind!r}")
        weights[kind] = int(value)
    return weights


def add_stack_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help="a running gateway (default: start a stack)")
    parser.add_argument("--api-key", help="its admin or submitter key (with --url)")
    for service, flag in (
        ("state", "states"),
        ("orchestrator", "orchestrators"),
        ("worker", "workers"),
        ("api_gateway", "gateways"),
    ):
        parser.add_argument(f"--{flag}", type=int, default=1, help=f"replicas of {service}")


def replicas_of(args: argparse.Namespace) -> dict[str, int]:
    return {
        "state": args.states,
        "orchestrator": args.orchestrators,
        "worker": args.workers,
        "api_gateway": args.gateways,
    }


def report(stats: Stats, title: str) -> None:
    table = Table(title=title)
    for column in ("kind", "requests", "req/s", "p50 ms", "p99 ms", "answers"):
        table.add_column(column, justify="left" if column in ("kind", "answers") else "right")
    for kind, s in stats.kinds.items():
        table.add_row(
            kind,
            f"{len(s.latencies_ms):,}",
            f"{len(s.latencies_ms) / stats.seconds:,.1f}" if stats.seconds else "-",
            f"{s.percentile(0.5):.1f}",
            f"{s.percentile(0.99):.1f}",
            ", ".join(f"{code}: {n}" for code, n in sorted(s.codes.items())),
        )
    total = stats.requests / stats.seconds if stats.seconds else 0
    table.add_row("all", f"{stats.requests:,}", f"{total:,.1f}", "", "", "")
    console.print(table)


async def drive(url: str, key: str, args: argparse.Namespace) -> Stats:
    traffic = Traffic(url, key, weights=args.mix, seed=args.seed)
    return await traffic.run(args.clients, args.duration)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds")
    parser.add_argument("--mix", type=parse_weights, default=DEFAULT_WEIGHTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(ROOT / ".data" / "load.json"))
    add_stack_arguments(parser)
    args = parser.parse_args()
    if args.url:
        stats = asyncio.run(drive(args.url, args.api_key or "", args))
    else:
        with local_stack("load", replicas_of(args)) as stack:
            console.print(f"stack up: {', '.join(stack.processes)}; {args.clients} clients")
            stats = asyncio.run(drive(stack.http_url, stack.api_key, args))
    report(stats, f"load: {args.clients} clients, {stats.seconds:.0f} s")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(stats.as_dict(), indent=2) + "\n")
    errors = stats.server_errors()
    if errors:
        console.print(f"[red]server errors: {errors}[/red]")
        return 1
    console.print("[green]no 5xx, no failed connection[/green]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
