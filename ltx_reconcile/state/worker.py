"""State writes on one dedicated thread, so a commit's fsync never stalls the event loop.

Every commit of the state waits for the disk (`synchronous = FULL`: the intent row that
stops us paying twice must survive a power cut). Made on the event loop's thread, each of
those waits held up every other image: downloads, status reads and the next create. An
apply instead sends each state call here and awaits it; the calls run one at a time, in
the order they were sent, on a thread of their own, so the connection is never used by two
threads at once. Ordering is what the journal needs: an intent is committed before the
create that it covers is sent, because the sender awaits the commit.

A call that is cancelled while it runs still completes on the thread (a commit cannot be
taken back halfway); `close` waits for every call sent so far.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["StateWorker"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


class StateWorker:
    """Runs callables on one thread, in order; `await worker.call(fn, ...)`."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ltx-state")

    async def call(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        """`fn(*args, **kwargs)` on the state thread; its result, or its exception."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        """Wait for every call sent so far, then stop the thread."""
        self._pool.shutdown(wait=True)
