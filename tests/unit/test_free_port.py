"""The ports a local stack's services listen on (coremachine/stack/processes.py)."""

from __future__ import annotations

import socket

from coremachine.stack import processes
from coremachine.stack.processes import free_port


def test_free_ports_are_below_the_ephemeral_range_distinct_and_bindable():
    low = processes._ephemeral_low()
    ports = [free_port() for _ in range(100)]
    # Outgoing connections take ports from the ephemeral range: none of
    # these can be taken by one between being handed out and being bound.
    assert all(1024 <= p < low for p in ports)
    assert len(set(ports)) == len(ports)
    for port in ports[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_in_use_is_not_handed_out(monkeypatch):
    picks: list[int] = []

    def pick(low: int, high: int) -> int:
        if not picks:
            picks.append(port)  # first, the port in use
            return port
        with socket.socket() as spare:  # then one that is free
            spare.bind(("127.0.0.1", 0))
            picks.append(spare.getsockname()[1])
        return picks[-1]

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(processes.random, "randrange", pick)
        assert free_port() == picks[-1] != port
