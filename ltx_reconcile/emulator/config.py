"""Configuration of one emulator: value objects with the contract's defaults.

Every knob the contract calls configurable (section 8, values in brackets) lives here, as a
frozen dataclass, so a test or the CLI states a whole emulator in one expression and two
emulators in one process never share anything. Nothing here reads the environment or the
clock; the app (`app.create_app`) and the fault injector interpret these values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal

__all__ = [
    "DEFAULT_ACCOUNT_EMAIL",
    "DEFAULT_LATENCY_MEDIAN_S",
    "DEFAULT_PRICES",
    "FAULT_ENDPOINTS",
    "AccountConfig",
    "EmulatorConfig",
    "FaultConfig",
    "FaultKind",
    "FaultRule",
]

DEFAULT_ACCOUNT_EMAIL: Final = "demo@ltx-emulator.test"
DEFAULT_PRICES: Final[Mapping[str, int]] = MappingProxyType(
    {"flux": 28, "flux-premium": 28, "nano-banana": 49}
)
DEFAULT_LATENCY_MEDIAN_S: Final[Mapping[str, float]] = MappingProxyType(
    {"flux": 8.0, "flux-premium": 12.0, "nano-banana": 10.0}
)

FAULT_ENDPOINTS: Final = (
    "images/create",
    "assets/status",
    "assets/list",
    "assets/upload",
    "scheduler",
    "scheduler/available",
    "scheduler/cancel",
    "accounts",
    "storage",
)
"""Names a scripted fault rule may give as `endpoint` (the alias flux-create is images/create)."""


class FaultKind(StrEnum):
    """What a scripted fault rule does to the request it matches (E19)."""

    RESET_BEFORE_READ = "reset_before_read"
    """Abort the connection before the request body is read: nothing happens."""
    STATUS_BEFORE_ACCEPT = "status_before_accept"
    """Answer `status` (429/500/502/503/596) without creating a job or charging."""
    STATUS_AFTER_ACCEPT = "status_after_accept"
    """images/create only: accept and charge the job, then answer `status` (500/502/503)."""
    RESET_AFTER_ACCEPT = "reset_after_accept"
    """images/create only: accept and charge the job, then abort the connection."""
    SLOW = "slow"
    """Wait `delay_s` before handling the request."""
    HOLD = "hold"
    """images/create: accept and charge, then hold the answer open for `delay_s`;
    scheduler: read the listing, then hold the answer open for `delay_s`."""
    FAIL_JOB = "fail_job"
    """images/create only: the accepted job will fail (E36), with `message` if given."""
    LAG_WINDOW = "lag_window"
    """images/create only: status reads omit the artifact for `delay_s` after completion."""
    TRUNCATE_DOWNLOAD = "truncate_download"
    """A download declares the full length, sends half of the bytes and cuts the connection."""
    CORRUPT_DOWNLOAD = "corrupt_download"
    """A download sends the full length with some bytes flipped."""
    EXPIRE_EARLY = "expire_early"
    """A download answers 403 `Request has expired` although its URL has not expired."""
    DUPLICATE_WEBHOOK = "duplicate_webhook"
    """images/create only: the job's webhook notification is delivered twice."""


@dataclass(frozen=True, slots=True)
class FaultRule:
    """One scripted fault: applies to the next `times` requests it matches.

    A rule matches when every criterion it sets matches: `endpoint` names one of
    `FAULT_ENDPOINTS`, `reply_ref_contains` is a substring of the request's `replyRef`.
    Download faults (truncate, corrupt, expire early) that match a create by `replyRef` are
    attached to that job and hit the first download of its artifact.
    """

    kind: FaultKind
    endpoint: str | None = None
    reply_ref_contains: str | None = None
    times: int = 1
    status: int | None = None
    delay_s: float | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Every injectable fault of E19: probabilities drawn from a seeded RNG, plus scripts.

    All rates are per request (or per job, download or notification) and default to 0.
    Fault delays are real seconds: they are not multiplied by `time_scale`, because crash
    tests need a wall-clock window in which to kill a client.
    """

    seed: int = 0
    rules: tuple[FaultRule, ...] = ()
    reset_before_read_rate: float = 0.0
    status_before_accept_rate: float = 0.0
    status_before_accept_codes: tuple[int, ...] = (429, 500, 502, 503, 596)
    status_after_accept_rate: float = 0.0
    status_after_accept_codes: tuple[int, ...] = (500, 502, 503)
    reset_after_accept_rate: float = 0.0
    slow_rate: float = 0.0
    slow_delay_s: float = 1.0
    hold_create_s: float = 0.0
    """Hold every create answer open this long after the job is accepted and charged."""
    job_failure_rate: float = 0.0
    lag_window_rate: float = 0.0
    lag_window_s: float = 1.0
    truncate_download_rate: float = 0.0
    corrupt_download_rate: float = 0.0
    early_expiry_rate: float = 0.0
    duplicate_webhook_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """An LTX Studio account the emulator creates at start-up (E29)."""

    email: str = DEFAULT_ACCOUNT_EMAIL
    max_jobs: int = 20
    balance: int | None = None
    """Starting credits; None means the emulator's `starting_balance`."""


@dataclass(frozen=True, slots=True)
class EmulatorConfig:
    """Everything one emulator needs; the defaults are the contract's (section 8)."""

    base_path: str = "/v1/ltxstudio"
    tokens: tuple[str, ...] = field(default=(), repr=False)
    """Accepted Bearer tokens; empty accepts any non-empty token (E2). Never shown."""
    accounts: tuple[AccountConfig, ...] = (AccountConfig(),)
    test_mode: bool = False
    """Serve the `/_emulator/` control surface (E43)."""
    subscription_active: bool = True
    prices: Mapping[str, int] = field(default_factory=lambda: DEFAULT_PRICES)
    starting_balance: int = 10_000
    refund_failed_jobs: bool = True
    time_scale: float = 1.0
    latency_median_s: Mapping[str, float] = field(default_factory=lambda: DEFAULT_LATENCY_MEDIAN_S)
    latency_sigma: float = 0.25
    latency_seed: int | None = None
    poll_step_s: float = 3.0
    artifact_lag_reads: int = 1
    job_ttl_s: float = 7 * 24 * 3600.0
    """How long a terminal job's record stays readable (E35); not scaled by `time_scale`."""
    url_ttl_s: float = 3600.0
    webhook_timeout_s: float = 10.0
    webhook_retry_delays_s: tuple[float, ...] = (1.0, 5.0, 25.0)
    retry_after_s: int = 5
    unseeded: Literal["random", "derive"] = "random"
    nondeterministic_output: bool = False
    state_path: Path | None = None
    """SQLite file that keeps accounts, jobs, assets and the ledger across restarts (E46)."""
    faults: FaultConfig = FaultConfig()

    def scaled(self, seconds: float) -> float:
        """`seconds` of emulated time in wall-clock seconds (E37's `time_scale`)."""
        return seconds * self.time_scale
