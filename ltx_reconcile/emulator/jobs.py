"""Generation jobs and their lifecycle (section 3, E33, E36, E37).

A job's whole life is decided when it is accepted: its duration is drawn then, and so is
whether it fails. Its state at any moment is therefore a pure function of the job and the
clock (`phase`), which keeps scheduler membership, admission and status reads consistent
without timers. Only side effects of a terminal state (refund, asset, webhook) need
someone to act, and `state.EmulatorState` settles those.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ltx_reconcile.emulator.validation import CreateParams

__all__ = [
    "FAILURE_MESSAGES",
    "Job",
    "JobPhase",
    "JobType",
    "draw_duration_s",
    "phase",
    "progress_at",
]

FAILURE_MESSAGES: Final = (
    "Generation failed: the model returned no image",
    "Generation failed: upstream timeout",
    "Prompt was rejected by content moderation",
)
_PROGRESS_STEP: Final = 5
_ACTIVE_CAP: Final = 95
"""The highest multiple of the step below 100: progress stays ≤ 99 while active (E33)."""
_SLOWDOWN_FREE_JOBS: Final = 10


class JobType(StrEnum):
    """`status.type` values (S3)."""

    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Job:
    """An accepted create: what it asked for, when it ends, and how."""

    job_id: str
    uuid: str
    generation_id: str
    email: str
    params: CreateParams
    price: int
    request_sha256: str
    effective_seed: int
    reference_digest: str | None
    file_uuid: str
    origin: str
    """The emulator's origin as the creating client saw it; webhook bodies sign URLs on it."""
    accepted_s: float
    duration_s: float
    """The drawn generation time, in wall-clock seconds."""
    failure_message: str | None = None
    fail_fraction: float = 1.0
    """Share of `duration_s` after which a failing job fails."""
    lag_window_s: float = 0.0
    duplicate_webhook: bool = False
    download_fault: str | None = None
    """A `FaultKind` value to apply to the first download of the artifact."""
    noise_seed: int | None = None
    cancelled: bool = False
    settled: bool = False
    """The terminal side effects (refund or asset) have been recorded."""
    webhook_done: bool = False

    @property
    def fails(self) -> bool:
        """Whether this job ends `failed`."""
        return self.failure_message is not None

    @property
    def ends_s(self) -> float:
        """When the job reaches its terminal state."""
        return self.accepted_s + self.duration_s * (self.fail_fraction if self.fails else 1.0)

    def is_executing(self, now_s: float) -> bool:
        """In the scheduler: accepted, not terminal, not cancelled (E26)."""
        return not self.cancelled and now_s < self.ends_s


@dataclass(frozen=True, slots=True)
class JobPhase:
    """A job's state at one moment."""

    type: JobType
    progress: int
    message: str | None = None


def progress_at(job: Job, now_s: float) -> int:
    """Time-based progress while active: steps of 5, never above 95 (E33)."""
    if job.duration_s <= 0:
        return _ACTIVE_CAP
    share = max(0.0, (now_s - job.accepted_s) / job.duration_s)
    stepped = math.floor(share * 100 / _PROGRESS_STEP) * _PROGRESS_STEP
    return min(_ACTIVE_CAP, stepped)


def phase(job: Job, now_s: float) -> JobPhase:
    """The job's state at `now_s`; a failed job's progress is frozen where it failed."""
    if now_s < job.ends_s:
        return JobPhase(JobType.ACTIVE, progress_at(job, now_s))
    if job.failure_message is not None:
        return JobPhase(JobType.FAILED, progress_at(job, job.ends_s), job.failure_message)
    return JobPhase(JobType.COMPLETED, 100)


def draw_duration_s(
    rng: random.Random, median_s: float, sigma: float, executing: int, time_scale: float
) -> float:
    """A job's wall-clock duration: log-normal, clipped, slowed past 10 jobs (E37)."""
    drawn = median_s * math.exp(sigma * rng.gauss(0.0, 1.0))
    clipped = min(max(drawn, 0.5 * median_s), 3.0 * median_s)
    slowdown = 1.0 + 0.1 * max(0, executing - _SLOWDOWN_FREE_JOBS)
    return clipped * slowdown * time_scale
