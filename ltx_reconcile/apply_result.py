"""What an apply is asked to do (options), what it did (summary), and the money: budgets.

Kept apart from the executor so that commands which only plan never import the HTTP
client: `plan` must start in well under half a second. Pure values and arithmetic: the
workspace reads the clock and the spend ledger and hands the numbers in.

A budget's day is the UTC calendar day (00:00:00 to 23:59:59 UTC), whatever the machine's
time zone, so two machines applying to one state count the same day.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Final, Literal

from ltx_reconcile.errors import ApiError, ExitCode

__all__ = [
    "DEFAULT_GRACE_S",
    "ApplyOptions",
    "ApplySummary",
    "BudgetStatus",
    "LimitSource",
    "SpendLimit",
    "tightest_limit",
    "utc_day",
]

DEFAULT_GRACE_S: Final = 30.0
DEFAULT_DEFER_START_S: Final = 5.0
_SECONDS_PER_DAY: Final = 86_400

LimitSource = Literal["--max-cost", "budget.per_apply", "budget.per_day"]
"""Where the spending limit of an apply came from, as the user wrote it."""


def utc_day(now: float) -> tuple[str, float]:
    """The UTC calendar day holding `now` (epoch seconds): `YYYY-MM-DD` and its first second.

    Epoch seconds count no leap seconds, so every UTC day starts at a multiple of 86,400.
    """
    start = math.floor(now / _SECONDS_PER_DAY) * _SECONDS_PER_DAY
    return time.strftime("%Y-%m-%d", time.gmtime(start)), float(start)


@dataclass(frozen=True, slots=True)
class SpendLimit:
    """The most credits one apply may commit, and the setting that makes it the tightest."""

    credits: int
    source: LimitSource


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """The specs' `budget` against the state's spend ledger, on one UTC day."""

    per_apply: int | None
    per_day: int | None
    day: str
    """The UTC calendar day (`YYYY-MM-DD`) that `spent_today` covers."""
    spent_today: float
    """Credits the state's spend ledger recorded on `day` before now, refunds deducted."""

    @property
    def left_today(self) -> int | None:
        """Whole credits `per_day` still allows on `day` (never negative); None: no limit."""
        if self.per_day is None:
            return None
        return max(math.floor(self.per_day - self.spent_today), 0)

    def passed_by(self, cost: int) -> tuple[LimitSource, ...]:
        """The limits spending `cost` more credits would pass, per apply first."""
        passed: list[LimitSource] = []
        if self.per_apply is not None and cost > self.per_apply:
            passed.append("budget.per_apply")
        left = self.left_today
        if left is not None and cost > left:
            passed.append("budget.per_day")
        return tuple(passed)


def tightest_limit(max_cost: int | None, budget: BudgetStatus | None) -> SpendLimit | None:
    """The tightest of `--max-cost`, `per_apply` and what `per_day` leaves today; None when
    none is set. On a tie the flag names the limit, then `per_apply`."""
    candidates: list[SpendLimit] = []
    if max_cost is not None:
        candidates.append(SpendLimit(max_cost, "--max-cost"))
    if budget is not None:
        if budget.per_apply is not None:
            candidates.append(SpendLimit(budget.per_apply, "budget.per_apply"))
        left = budget.left_today
        if left is not None:
            candidates.append(SpendLimit(left, "budget.per_day"))
    # min() keeps the first of equal values: the order above is the tie-break.
    return min(candidates, key=lambda limit: limit.credits, default=None)


@dataclass(frozen=True, slots=True)
class ApplyOptions:
    """How an apply may spend and how it stops."""

    parallelism: int | None = None
    """At most this many jobs at once; LTX_PARALLELISM, else the account's maxJobs, when None."""
    max_cost: int | None = None
    """Stop submitting before spend in this apply would pass this many credits."""
    resubmit_unknown: bool = False
    """Send images whose earlier outcome is unknown again (may pay twice: the user's call)."""
    grace_s: float = DEFAULT_GRACE_S
    """After a stop request, how long in-flight jobs may take before apply exits."""
    defer_start_s: float = DEFAULT_DEFER_START_S
    """First wait after a 429 (contract 4.4: 5 s, doubling to 60 s)."""


@dataclass(slots=True)
class ApplySummary:
    """What an apply did, with money: the basis of the final summary line and exit code."""

    generated: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    by_others: list[str] = field(default_factory=list)
    """Images another apply on the same shared state generated while this one ran."""
    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)
    over_budget: list[str] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)
    outputs_kept: list[str] = field(default_factory=list)
    spent: int = 0
    max_cost: int | None = None
    limit: SpendLimit | None = None
    """The limit this apply ran under and where it came from; None: no limit."""
    budget: BudgetStatus | None = None
    """The specs' budget as it stood when this apply started; None: no `budget` section."""
    interrupted: bool = False
    fatal: ApiError | None = None

    @property
    def exit_code(self) -> ExitCode:
        """The documented exit status for this outcome (docs/exit-codes.md)."""
        if self.interrupted:
            return ExitCode.INTERRUPTED
        done = (
            self.generated
            or self.reused
            or self.moved
            or self.resumed
            or self.by_others
            or self.deleted
        )
        if self.fatal is not None and not done:
            return ExitCode.API
        if self.failed or self.unknown or self.fatal is not None:
            return ExitCode.PARTIAL
        if self.over_budget:
            return ExitCode.OVER_BUDGET
        return ExitCode.OK
