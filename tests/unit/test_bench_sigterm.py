"""A benchmark killed with SIGTERM still stops its stack (bench/local_stack.py)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Stands in for a stack: what the context manager's finally must reach.
PROGRAM = textwrap.dedent(
    """
    import sys, time
    from bench.local_stack import stop_on_sigterm
    try:
        with stop_on_sigterm():
            print("up", flush=True)
            time.sleep(60)
    finally:
        print("stopped", flush=True)
    """
)


def test_sigterm_unwinds_to_the_stacks_stop():
    proc = subprocess.Popen(
        [sys.executable, "-c", PROGRAM], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "up"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert out.strip() == "stopped"
    assert proc.returncode == 128 + signal.SIGTERM


def test_the_previous_handler_comes_back():
    from bench.local_stack import stop_on_sigterm

    before = signal.getsignal(signal.SIGTERM)
    with stop_on_sigterm():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
