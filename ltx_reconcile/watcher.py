"""Follows many running jobs at once with one scheduler listing per tick.

Polling every job's status on its own costs one request per job per tick, which at a
concurrency of 100 is most of apply's CPU. Instead, each tick reads `GET /scheduler` once
(contract 2.6: it lists exactly the jobs still executing) and asks `GET /assets/{jobId}`
only for the jobs that left it, plus, every few ticks, each job directly, in case a
listing ever misses one. A job counts as done only when it is `completed` with an
`assetUrl`, or `failed` (contract 2.2 caveat); a completed job whose URL lags is asked
again next tick.

The watcher owns no state: the executor journals what it learns.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Final

from ltx_reconcile.api.client import ApiClient
from ltx_reconcile.api.model import JobStatus
from ltx_reconcile.errors import ApiError, NotFoundError

__all__ = ["JobWatcher", "Watch"]

DIRECT_CHECK_EVERY: Final = 10
"""Ticks between direct status reads of a job the scheduler still lists."""


@dataclass(slots=True)
class Watch:
    """One job being followed: `left` is set when it stops using a job slot, `done` when
    its final status is known (a completed status with an artifact URL, or failed)."""

    job_id: str
    left: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Future[JobStatus] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    ticks: int = 0


class JobWatcher:
    """Follows jobs until they finish; run `run()` as a background task."""

    def __init__(self, client: ApiClient, *, interval_s: float) -> None:
        self._client = client
        self._interval_s = interval_s
        self._watches: dict[str, Watch] = {}
        self._wakeup = asyncio.Event()

    def watch(self, job_id: str) -> Watch:
        """Start following `job_id` (idempotent: the same job gives the same Watch)."""
        existing = self._watches.get(job_id)
        if existing is not None:
            return existing
        watch = Watch(job_id)
        self._watches[job_id] = watch
        self._wakeup.set()
        return watch

    async def run(self) -> None:
        """Poll until cancelled; idles while nothing is watched."""
        while True:
            if not self._watches:
                self._wakeup.clear()
                await self._wakeup.wait()
            await self._tick()
            await asyncio.sleep(self._interval_s)

    async def _tick(self) -> None:
        try:
            running = {entry.job_id for entry in await self._client.scheduler() if entry.job_id}
        except ApiError:
            # The listing is an optimisation; without it every job is asked directly.
            running = set()
        due = []
        for watch in list(self._watches.values()):
            watch.ticks += 1
            if watch.job_id not in running:
                watch.left.set()
                due.append(watch)
            elif watch.ticks % DIRECT_CHECK_EVERY == 0:
                due.append(watch)
        if due:
            await asyncio.gather(*(self._check(watch) for watch in due))

    async def _check(self, watch: Watch) -> None:
        try:
            status = await self._client.get_job(watch.job_id)
        except NotFoundError as err:
            self._finish(watch, error=err)
            return
        except ApiError:
            return  # transient after the client's own retries: ask again next tick
        if status.is_done or status.is_failed:
            self._finish(watch, status=status)

    def _finish(
        self, watch: Watch, *, status: JobStatus | None = None, error: Exception | None = None
    ) -> None:
        self._watches.pop(watch.job_id, None)
        watch.left.set()
        if watch.done.done():
            return
        if error is not None:
            watch.done.set_exception(error)
        else:
            watch.done.set_result(status)  # type: ignore[arg-type]
