"""When and how long the API client waits before repeating a request (contract 4.4).

This module owns the backoff arithmetic only; which failures are safe to repeat is decided
by the client, request by request. Every delay and attempt count is a field of a frozen
value object, so tests can shrink them to milliseconds without patching anything.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_RETRY_POLICY", "Backoff", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: the n-th wait is uniform in [0, min(cap, first·2ⁿ)]."""

    attempts: int
    """Tries in all, the first included; 1 means never repeat."""
    first_delay_s: float
    max_delay_s: float

    def delay_s(
        self, retry: int, rng: random.Random, *, retry_after_s: float | None = None
    ) -> float:
        """The wait before retry number `retry` (0-based), never shorter than `retry_after_s`.

        Full jitter spreads many clients' retries apart; the server's Retry-After is a floor,
        but the cap still bounds it, so a policy shrunk for tests stays fast.
        """
        ceiling = min(self.max_delay_s, self.first_delay_s * 2**retry)
        delay = rng.uniform(0.0, ceiling)
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return min(delay, self.max_delay_s)


SAFE_BACKOFF: Final = Backoff(attempts=6, first_delay_s=0.5, max_delay_s=30.0)
"""GETs and uploads: 0.5 s doubling, capped at 30 s (contract 4.4)."""

CREATE_BUSY_BACKOFF: Final = Backoff(attempts=6, first_delay_s=5.0, max_delay_s=60.0)
"""A create answered 429 made no job: 5 s doubling, capped at 60 s (contract 4.4)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The two backoff schedules the client uses.

    `safe` covers every request that may be repeated (GETs, uploads, storage downloads,
    and a create whose connection failed before anything was sent); `create_busy` covers a
    create answered 429. A create whose answer was lost is never repeated, whatever the
    policy says (contract 4.5).
    """

    safe: Backoff = SAFE_BACKOFF
    create_busy: Backoff = CREATE_BUSY_BACKOFF


DEFAULT_RETRY_POLICY: Final = RetryPolicy()
