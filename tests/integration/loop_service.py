"""A minimal service for test_background_loops: a gRPC server and one loop
that fails as the mode (argv[1]) says; its port goes to argv[2]."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from coremachine.shared.background import Background
from coremachine.shared.grpc_server import GrpcServer, serve_until_signalled


async def main(mode: str, port_file: Path) -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    server = GrpcServer(0, host="127.0.0.1")
    runs = 0

    async def flaky(stopping: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        if mode == "returns" and runs == 1:
            return  # ends while nobody asked it to stop
        if mode == "always" or runs <= 2:
            raise RuntimeError(f"run {runs} failed")
        print(f"run {runs} is up", flush=True)
        await stopping.wait()

    async def write_port(stopping: asyncio.Event) -> None:
        await asyncio.to_thread(port_file.write_text, str(server.port))
        await stopping.wait()

    loop = Background(
        flaky,
        name="flaky",
        restart=mode != "fatal",
        initial_backoff=0.05,
        max_failures=3,
    )
    await serve_until_signalled(server, background=[write_port, loop], grace=1)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2])))
