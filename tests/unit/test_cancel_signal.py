"""CancelSignal: set once, from any thread, seen by async and blocking waiters."""

from __future__ import annotations

import asyncio
import threading
import time

from coremachine.app._context import CancelSignal

DEADLINE = 5.0


def test_a_blocked_thread_wakes_when_another_thread_sets_it():
    signal = CancelSignal()
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(signal.wait_blocking(DEADLINE)))
    waiter.start()
    time.sleep(0.05)  # the waiter is blocked on the signal by now
    threading.Thread(target=signal.set, args=("job cancelled",)).start()
    waiter.join(DEADLINE)
    assert woke == [True]
    assert signal.is_set() and signal.reason == "job cancelled"


def test_waiting_after_it_was_set_returns_at_once():
    signal = CancelSignal()
    signal.set("lease lost")
    assert signal.wait_blocking(None) is True
    assert asyncio.run(signal.wait(None)) is True


def test_an_unset_signal_times_out_false():
    signal = CancelSignal()
    assert signal.wait_blocking(0.01) is False
    assert asyncio.run(signal.wait(0.01)) is False
    assert not signal.is_set()


def test_an_async_waiter_wakes_when_a_thread_sets_it():
    signal = CancelSignal()

    async def wait_and_set() -> bool:
        waiting = asyncio.create_task(signal.wait(DEADLINE))
        await asyncio.sleep(0.01)
        threading.Thread(target=signal.set, args=("job cancelled",)).start()
        return await waiting

    assert asyncio.run(wait_and_set()) is True


def test_the_first_reason_stays():
    signal = CancelSignal()
    signal.set("job cancelled")
    signal.set("lease lost")
    assert signal.reason == "job cancelled"
