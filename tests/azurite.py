"""Azurite (the Azure Storage emulator) for tests: its blob service as a child process.

Installed by `make node-deps` (and `make test`). Import the fixture into a test
module (`from tests.azurite import azurite_connection_string`) or use
`run_azurite` directly.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from coremachine.stack.processes import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
AZURITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
# Azurite's well-known development account (public, documented by Microsoft).
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
STARTUP_DEADLINE = 30.0


def _wait_until_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> bool:
    """Polls until Azurite accepts connections; False if it exited first."""
    deadline = time.monotonic() + STARTUP_DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)  # poll interval, not a wait for work
    proc.kill()
    pytest.fail(
        f"Azurite did not accept connections on port {port} within {STARTUP_DEADLINE}s; "
        f"log:\n{log.read_text(errors='replace')}"
    )


def connection_string(port: int) -> str:
    """The dev account's connection string for an Azurite blob service on port."""
    return (
        "DefaultEndpointsProtocol=http;"
        f"AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{DEV_ACCOUNT};"
    )


@contextlib.contextmanager
def run_azurite(workdir: Path) -> Iterator[str]:
    """Starts Azurite's blob service on a free port; yields a dev-account connection string."""
    if not AZURITE_BIN.exists():
        pytest.fail(
            f"{AZURITE_BIN} is missing: run `make node-deps` to install Azurite "
            "(the Azure blob-store tests need it)"
        )
    log = workdir / "azurite.log"
    # A free port can be taken between probing and binding: try a few.
    for _ in range(3):
        port = free_port()
        with open(log, "wb") as log_file:
            proc = subprocess.Popen(
                [
                    str(AZURITE_BIN),
                    "--skipApiVersionCheck",
                    "--inMemoryPersistence",
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    str(port),
                    "--silent",
                ],
                cwd=workdir,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        if _wait_until_listening(proc, port, log):
            break
    else:
        pytest.fail(f"Azurite exited during start-up; log:\n{log.read_text(errors='replace')}")
    try:
        yield connection_string(port)
    finally:
        # In-memory data is disposable, and on SIGTERM Azurite waits out its idle
        # keep-alive connections (seconds), so it is killed outright.
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def azurite_connection_string(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Azurite's blob service for the session; yields a dev-account connection string."""
    with run_azurite(tmp_path_factory.mktemp("azurite")) as connection:
        yield connection
