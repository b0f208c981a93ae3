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
