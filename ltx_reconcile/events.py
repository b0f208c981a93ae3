"""Progress events and the Reporter protocol: how the core tells the world what it does.

The core never prints. It calls `reporter(event)` with one frozen event; the CLI supplies a
rich reporter for terminals, a plain-line one, and a JSON-lines one (`--json`). Events are
data, in the manner of stamina's `RetryDetails`: a reporter may ignore any it does not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Event", "NullReporter", "Reporter"]


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every progress event; `image` is the image address it concerns, if any."""

    image: str | None


class Reporter(Protocol):
    """Receives every event the core emits, on the thread that emitted it."""

    def __call__(self, event: Event) -> None: ...


class NullReporter:
    """A reporter that drops every event (library use without output)."""

    def __call__(self, event: Event) -> None:
        """Ignore the event."""


@dataclass(frozen=True, slots=True)
class ApplyStarted(Event):
    """Apply begins: how many changes, the estimate, and how many jobs may run at once."""

    changes: int
    estimated_cost: int
    parallelism: int
    email: str


@dataclass(frozen=True, slots=True)
class RecoveryStarted(Event):
    """Open journal entries from an earlier run are being settled before anything new."""

    entries: int


@dataclass(frozen=True, slots=True)
class JobAdopted(Event):
    """A job whose answer was lost was found at the API and adopted (never paid again)."""

    job_id: str
    found_by: str
    """`scheduler` or `assets` (contract 4.5, steps 4.2 and 4.3)."""
    extra_jobs: int = 0
    """Further paid jobs found for the same replyRef, recorded as extra."""


@dataclass(frozen=True, slots=True)
class JobSubmitted(Event):
    """A create was accepted: the job id is journaled and its price is spent."""

    job_id: str
    attempt: int
    cost: int


@dataclass(frozen=True, slots=True)
class JobDeferred(Event):
    """The API had no free job slot (429): nothing was charged; sending again later."""

    delay_s: float


@dataclass(frozen=True, slots=True)
class ImageDone(Event):
    """An image is in the store and recorded, and its named file is in place."""

    action: str
    digest: str
    output: str


@dataclass(frozen=True, slots=True)
class ImageFailed(Event):
    """An image could not be made; the API's message, and what the attempt cost."""

    message: str
    cost: int = 0


@dataclass(frozen=True, slots=True)
class ImageUnknown(Event):
    """An attempt's outcome is unknown: it may have been paid for; not sent again."""

    message: str
    possible_cost: int


@dataclass(frozen=True, slots=True)
class ImageRemoved(Event):
    """An image left the specs: no longer tracked; its named file removed if unchanged."""

    output_removed: bool


@dataclass(frozen=True, slots=True)
class OutputKept(Event):
    """A named file was changed by someone else, so it was left alone."""

    path: str


@dataclass(frozen=True, slots=True)
class BudgetReached(Event):
    """Submitting stopped: the next image would pass --max-cost."""

    spent: int
    limit: int


@dataclass(frozen=True, slots=True)
class StopRequested(Event):
    """SIGINT/SIGTERM: no new submissions; in-flight jobs are finished within the grace."""

    grace_s: float
