"""Fault injection (E19): decides, per request phase, whether a fault fires.

A `FaultInjector` holds the current `FaultConfig`, a RNG seeded from it, and how many uses
each scripted rule has left. Routes ask it at fixed points of a request (before the body
is read, before acceptance, after acceptance, at download) and act on the answer; the
injector itself never touches a request or a job. Scripted rules are tried first, in
order; the configured rates are drawn only when no rule matches, so a script is exact.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from ltx_reconcile.emulator.config import FaultConfig, FaultKind, FaultRule

__all__ = ["CREATE_ENDPOINT", "DOWNLOAD_KINDS", "FaultHit", "FaultInjector"]

CREATE_ENDPOINT: Final = "images/create"
DOWNLOAD_KINDS: Final = frozenset(
    {FaultKind.TRUNCATE_DOWNLOAD, FaultKind.CORRUPT_DOWNLOAD, FaultKind.EXPIRE_EARLY}
)


@dataclass(frozen=True, slots=True)
class FaultHit:
    """A fault that fired: its kind and the parameters the route needs."""

    kind: FaultKind
    status: int | None = None
    delay_s: float = 0.0
    message: str | None = None


class FaultInjector:
    """The current fault configuration with its RNG and scripted rules; thread-safe."""

    def __init__(self, config: FaultConfig) -> None:
        self._lock = threading.Lock()
        self.replace(config)

    @property
    def config(self) -> FaultConfig:
        """The configuration in force (rules as given, not as consumed)."""
        return self._config

    def replace(self, config: FaultConfig) -> None:
        """Switch to `config` at run time: fresh rule counts and a freshly seeded RNG."""
        with self._lock:
            self._config = config
            # Seeded on purpose (not secrets): a fault run must be reproducible (E19 fault_seed).
            self._rng = random.Random(config.seed)  # noqa: S311
            self._left = [rule.times for rule in config.rules]

    def draw(self, rate: float) -> bool:
        """True with probability `rate`, from the seeded RNG."""
        if rate <= 0.0:
            return False
        with self._lock:
            return self._rng.random() < rate

    def choose(self, options: Collection[int]) -> int:
        """One of `options`, from the seeded RNG."""
        with self._lock:
            return self._rng.choice(sorted(options))

    def take_rule(
        self,
        kinds: Collection[FaultKind],
        endpoint: str,
        reply_ref: str | None,
        *,
        explicit_only: bool = False,
    ) -> FaultHit | None:
        """Consume one use of the first live rule of `kinds` matching this request.

        With `explicit_only`, a rule must name this endpoint or a replyRef to match; that is
        how a download fault scripted for one job is told from one for the next download.
        """
        with self._lock:
            for index, rule in enumerate(self._config.rules):
                if self._left[index] <= 0 or rule.kind not in kinds:
                    continue
                if not _matches(rule, endpoint, reply_ref, explicit_only=explicit_only):
                    continue
                self._left[index] -= 1
                return FaultHit(rule.kind, rule.status, rule.delay_s or 0.0, rule.message)
        return None

    def before_read(self, endpoint: str) -> FaultHit | None:
        """A reset before the request is read (no replyRef is known yet)."""
        hit = self.take_rule({FaultKind.RESET_BEFORE_READ}, endpoint, None)
        if hit is None and self.draw(self._config.reset_before_read_rate):
            hit = FaultHit(FaultKind.RESET_BEFORE_READ)
        return hit

    def slow(self, endpoint: str, reply_ref: str | None) -> float:
        """Seconds to wait before handling this request."""
        hit = self.take_rule({FaultKind.SLOW}, endpoint, reply_ref)
        if hit is not None:
            return hit.delay_s
        return self._config.slow_delay_s if self.draw(self._config.slow_rate) else 0.0

    def held(self, endpoint: str) -> float:
        """Seconds to hold a read's answer open after its work is done (`scheduler`: the
        listing is read, then answered late, so it misses what happened meanwhile)."""
        hit = self.take_rule({FaultKind.HOLD}, endpoint, None, explicit_only=True)
        return 0.0 if hit is None else hit.delay_s

    def before_accept(self, endpoint: str, reply_ref: str | None) -> FaultHit | None:
        """An error answer that stops the request before any job exists."""
        hit = self.take_rule({FaultKind.STATUS_BEFORE_ACCEPT}, endpoint, reply_ref)
        if hit is None and self.draw(self._config.status_before_accept_rate):
            status = self.choose(self._config.status_before_accept_codes)
            hit = FaultHit(FaultKind.STATUS_BEFORE_ACCEPT, status)
        return hit

    def after_accept(self, reply_ref: str | None) -> FaultHit | None:
        """What happens to a create's answer once its job is accepted and charged."""
        kinds = {FaultKind.STATUS_AFTER_ACCEPT, FaultKind.RESET_AFTER_ACCEPT, FaultKind.HOLD}
        hit = self.take_rule(kinds, CREATE_ENDPOINT, reply_ref)
        if hit is not None:
            return hit
        config = self._config
        if self.draw(config.reset_after_accept_rate):
            return FaultHit(FaultKind.RESET_AFTER_ACCEPT)
        if self.draw(config.status_after_accept_rate):
            status = self.choose(config.status_after_accept_codes)
            return FaultHit(FaultKind.STATUS_AFTER_ACCEPT, status)
        if config.hold_create_s > 0:
            return FaultHit(FaultKind.HOLD, delay_s=config.hold_create_s)
        return None

    def job_faults(self, reply_ref: str | None) -> tuple[FaultHit, ...]:
        """Faults attached to a new job: failure, artifact lag, download faults, duplicates."""
        hits: list[FaultHit] = []
        config = self._config
        rated = {
            FaultKind.FAIL_JOB: config.job_failure_rate,
            FaultKind.LAG_WINDOW: config.lag_window_rate,
            FaultKind.DUPLICATE_WEBHOOK: config.duplicate_webhook_rate,
        }
        for kind, rate in rated.items():
            hit = self.take_rule({kind}, CREATE_ENDPOINT, reply_ref)
            if hit is None and self.draw(rate):
                hit = FaultHit(kind, delay_s=config.lag_window_s)
            if hit is not None:
                hits.append(hit)
        hit = self.take_rule(DOWNLOAD_KINDS, CREATE_ENDPOINT, reply_ref, explicit_only=True)
        if hit is not None:
            hits.append(hit)
        return tuple(hits)

    def download(self) -> FaultHit | None:
        """A fault for one artifact download not already scripted for its job."""
        hit = self.take_rule(DOWNLOAD_KINDS, "storage", None)
        if hit is not None:
            return hit
        config = self._config
        rated = (
            (FaultKind.EXPIRE_EARLY, config.early_expiry_rate),
            (FaultKind.TRUNCATE_DOWNLOAD, config.truncate_download_rate),
            (FaultKind.CORRUPT_DOWNLOAD, config.corrupt_download_rate),
        )
        for kind, rate in rated:
            if self.draw(rate):
                return FaultHit(kind)
        return None


def _matches(rule: FaultRule, endpoint: str, reply_ref: str | None, *, explicit_only: bool) -> bool:
    if explicit_only and rule.endpoint != endpoint and rule.reply_ref_contains is None:
        return False
    if rule.endpoint is not None and rule.endpoint != endpoint:
        return False
    if rule.reply_ref_contains is None:
        return True
    return reply_ref is not None and rule.reply_ref_contains in reply_ref
