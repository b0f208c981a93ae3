"""The state thread: calls run one at a time, in order, off the event loop, errors intact."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from ltx_reconcile.errors import StateError
from ltx_reconcile.state.worker import StateWorker


def test_calls_run_in_order_on_one_thread_that_is_not_the_loops():
    worker = StateWorker()
    seen: list[tuple[int, str]] = []

    def record(index: int) -> int:
        time.sleep(0.001 * (5 - index))  # later calls are quicker: order must not follow speed
        seen.append((index, threading.current_thread().name))
        return index * 10

    async def scenario() -> list[int]:
        return await asyncio.gather(*(worker.call(record, i) for i in range(5)))

    try:
        assert asyncio.run(scenario()) == [0, 10, 20, 30, 40]
    finally:
        worker.close()
    assert [index for index, _thread in seen] == [0, 1, 2, 3, 4]
    threads = {thread for _index, thread in seen}
    assert len(threads) == 1
    assert threads != {threading.current_thread().name}


def test_the_loop_keeps_running_while_a_call_waits():
    """A slow commit (an fsync, say) must not stall the other images' coroutines."""
    worker = StateWorker()

    async def scenario() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        await worker.call(time.sleep, 0.2)
        task.cancel()
        return ticks

    try:
        assert asyncio.run(scenario()) >= 10
    finally:
        worker.close()


def test_an_exception_reaches_the_caller_and_close_waits_for_a_cancelled_call():
    worker = StateWorker()
    finished = threading.Event()

    def fail() -> None:
        raise StateError("no such entry")

    def slow() -> None:
        time.sleep(0.1)
        finished.set()

    async def scenario() -> None:
        with pytest.raises(StateError, match="no such entry"):
            await worker.call(fail)
        call = asyncio.ensure_future(worker.call(slow))
        await asyncio.sleep(0.01)
        call.cancel()  # the caller gives up; the call itself runs to its end

    asyncio.run(scenario())
    worker.close()
    assert finished.is_set()
