"""Follows many running jobs at once with one scheduler listing per tick.

Polling every job's status on its own costs one request per job per tick, which at a
concurrency of 100 is most of apply's CPU. Instead, each tick reads `GET /scheduler` once
(contract 2.6: it lists exactly the jobs still executing) and asks `GET /assets/{jobId}`
only for the jobs that left it, plus, every few ticks (and at most every few seconds),
each job directly, in case a listing ever misses one. Only jobs watched before a listing
was asked for are judged by it, and a failed listing frees no slot. Status reads run
beside the ticks (at most one per job), so a slow one never holds up the next listing.
A job counts as done only when it is `completed` with an `assetUrl`, or `failed`
(contract 2.2 caveat); a completed job whose URL lags is asked again next tick.

Ticks are paced by what the jobs have shown so far: after a few jobs have finished, the
watcher knows roughly how long the quickest of them run, and does not list before the
earliest moment a watched job could be done; from then on it ticks every `interval_s`.
A short interval then finds a finished job quickly without listing dozens of times while
every job is still mid-way (most of apply's CPU at a short interval).

The watcher owns no state: the executor journals what it learns.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Final

from ltx_reconcile.api.client import ApiClient
from ltx_reconcile.api.model import JobStatus
from ltx_reconcile.errors import ApiError, NotFoundError

__all__ = ["JobWatcher", "Watch"]

DIRECT_CHECK_EVERY: Final = 10
"""Ticks between direct status reads of a job the scheduler still lists."""
DIRECT_CHECK_MIN_S: Final = 5.0
"""...and at least this many seconds, whatever the poll interval."""
PACING_SAMPLES: Final = 32
"""How many recent job run times pace the ticks."""
PACING_MIN_SAMPLES: Final = 3
"""Below this many, tick every interval: too little is known about the jobs."""
PACING_MAX_SLEEP_S: Final = 5.0
"""The longest pause between ticks while jobs are watched, however long jobs run."""


@dataclass(slots=True)
class Watch:
    """One job being followed: `left` is set when it stops using a job slot, `done` when
    its final status is known (a completed status with an artifact URL, or failed)."""

    job_id: str
    left: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Future[JobStatus] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    checked_at: float = field(default_factory=lambda: asyncio.get_running_loop().time())
    """When the job's status was last read directly (or, before that, first watched)."""
    watched_at: float = field(default_factory=lambda: asyncio.get_running_loop().time())
    listed_at: float | None = None
    """When a listing last showed the job executing: it finished after that."""


class JobWatcher:
    """Follows jobs until they finish; run `run()` as a background task."""

    def __init__(self, client: ApiClient, *, interval_s: float, pace: bool = True) -> None:
        """`pace=False` lists every interval, whatever the jobs have shown (a baseline)."""
        self._client = client
        self._interval_s = interval_s
        self._pace = pace
        self._watches: dict[str, Watch] = {}
        self._wakeup = asyncio.Event()
        self._checks: dict[str, asyncio.Task[None]] = {}
        """Direct status reads in flight, by job id: at most one per job."""
        self._run_times: deque[float] = deque(maxlen=PACING_SAMPLES)
        """Recent jobs' shortest possible run times: watched until last listed."""
        self.listings = 0
        """Scheduler listings asked for so far (for benchmarks and tests)."""

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
        """Poll until cancelled; idles while nothing is watched.

        Ticks start every `interval_s` (or back to back when a listing takes longer): the
        status reads a tick starts run on their own, so a slow one never delays the next
        listing, and with it the next freed slot.
        """
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self._watches:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                started = loop.time()
                await self._tick()
                await asyncio.sleep(max(0.0, self._next_tick(started) - loop.time()))
        finally:
            for task in list(self._checks.values()):
                task.cancel()

    def _next_tick(self, last_started: float) -> float:
        """When to start the next tick: one interval after the last, or, while no watched
        job can be done yet by the recent jobs' run times, when the first of them could."""
        soonest = last_started + self._interval_s
        if not self._pace or len(self._run_times) < PACING_MIN_SAMPLES or not self._watches:
            return soonest
        # A low quantile, not the mean: a job found late costs a slot's idle time, a
        # listing found early costs one request. Not the very lowest once there are a few:
        # a stalled event loop makes one job look far quicker than it was, and that one
        # sample alone would turn pacing off.
        samples = sorted(self._run_times)
        quickest = samples[max(len(samples) // 10, 1 if len(samples) > PACING_MIN_SAMPLES else 0)]
        could_be_done = min(w.watched_at for w in self._watches.values()) + quickest
        return max(soonest, min(could_be_done, last_started + PACING_MAX_SLEEP_S))

    async def _tick(self) -> None:
        # Only the jobs watched before the listing is asked for can be judged by it: a job
        # created while the request is in flight is missing from the answer although it is
        # executing, and counting it as gone would free its slot early (the next create
        # then meets a 429 and waits out a deferral).
        watched = list(self._watches.values())
        asked_at = asyncio.get_running_loop().time()
        self.listings += 1
        try:
            running: set[str] | None = {
                entry.job_id for entry in await self._client.scheduler() if entry.job_id
            }
        except ApiError:
            # The listing is an optimisation; without it every job is asked directly, and a
            # slot is freed only once its job's own status says it is over.
            running = None
        now = asyncio.get_running_loop().time()
        for watch in watched:
            if running is not None and watch.job_id not in running:
                if not watch.left.is_set() and watch.listed_at is not None:
                    # Never seen listed: it ran for less than a tick, which says nothing.
                    self._run_times.append(watch.listed_at - watch.watched_at)
                watch.left.set()
                due = True
            else:
                if running is not None:
                    watch.listed_at = asked_at
                due = running is None or self._direct_check_due(watch, now)
            if due and watch.job_id not in self._checks and not watch.done.done():
                self._start_check(watch, now)

    def _direct_check_due(self, watch: Watch, now: float) -> bool:
        """Whether to ask a listed job directly, in case the listing is wrong about it:
        every `DIRECT_CHECK_EVERY` intervals, but not more often than every
        `DIRECT_CHECK_MIN_S` (a short poll interval must not multiply the requests)."""
        # By time, not by ticks: paced ticks are sparse while jobs run.
        return now - watch.checked_at >= max(
            DIRECT_CHECK_MIN_S, DIRECT_CHECK_EVERY * self._interval_s
        )

    def _start_check(self, watch: Watch, now: float) -> None:
        watch.checked_at = now
        task = asyncio.create_task(self._check(watch))
        self._checks[watch.job_id] = task
        task.add_done_callback(lambda done: self._checked(watch, done))

    def _checked(self, watch: Watch, task: asyncio.Task[None]) -> None:
        if self._checks.get(watch.job_id) is task:
            del self._checks[watch.job_id]
        if not task.cancelled() and task.exception() is not None:
            # Not an API answer (a bug, say): fail this job's follower rather than leave
            # it waiting for a status that no tick will ever read.
            self._finish(watch, error=task.exception())

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
        self,
        watch: Watch,
        *,
        status: JobStatus | None = None,
        error: BaseException | None = None,
    ) -> None:
        self._watches.pop(watch.job_id, None)
        watch.left.set()
        if watch.done.done():
            return
        if error is not None:
            watch.done.set_exception(error)
        else:
            watch.done.set_result(status)  # type: ignore[arg-type]
