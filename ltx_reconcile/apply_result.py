"""What an apply is asked to do (options) and what it did (summary, with money).

Kept apart from the executor so that commands which only plan never import the HTTP
client: `plan` must start in well under half a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from ltx_reconcile.errors import ApiError, ExitCode

__all__ = ["DEFAULT_GRACE_S", "ApplyOptions", "ApplySummary"]

DEFAULT_GRACE_S: Final = 30.0
DEFAULT_DEFER_START_S: Final = 5.0


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
    deleted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)
    over_budget: list[str] = field(default_factory=list)
    not_started: list[str] = field(default_factory=list)
    outputs_kept: list[str] = field(default_factory=list)
    spent: int = 0
    max_cost: int | None = None
    interrupted: bool = False
    fatal: ApiError | None = None

    @property
    def exit_code(self) -> ExitCode:
        """The documented exit status for this outcome (docs/exit-codes.md)."""
        if self.interrupted:
            return ExitCode.INTERRUPTED
        done = self.generated or self.reused or self.moved or self.resumed or self.deleted
        if self.fatal is not None and not done:
            return ExitCode.API
        if self.failed or self.unknown or self.fatal is not None:
            return ExitCode.PARTIAL
        if self.over_budget:
            return ExitCode.OVER_BUDGET
        return ExitCode.OK
