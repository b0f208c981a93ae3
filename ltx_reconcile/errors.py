"""Every failure ltx-reconcile anticipates, and the exit code each one maps to.

This module is the only place exit codes are defined; `docs/exit-codes.md` documents the
same table and a test keeps the two in step. Code below the CLI simply raises; the CLI's
error boundary (`cli/main.py`) renders `str(err)` and `err.hint` and exits with
`err.exit_code`.

    ReconcileError
    ├── UsageError                 bad flags or arguments (3)
    ├── SpecError                  invalid spec files, all diagnostics at once (3)
    ├── BudgetExceededError        the plan or the spend would pass a budget (7)
    ├── ApplyIncompleteError       some images failed, the rest are recorded (6)
    ├── ApplyInterruptedError      stopped by SIGINT/SIGTERM, journal intact (130)
    ├── StateError                 the state cannot be used as asked (4)
    │   ├── StateLockedError
    │   ├── StalePlanError
    │   ├── SchemaTooNewError
    │   └── IntegrityError         a stored object or download fails its digest
    └── ApiError                   the API refused, or could not be reached (5)
        ├── UnauthorizedError      401, or 402 "Subscription required"
        ├── InsufficientCreditsError  402 "Insufficient credits" (also 412)
        ├── RateLimitedError       429: no job was created
        ├── RejectedError          400: the API's validation message
        ├── NotFoundError          404: unknown or expired job, account or asset
        ├── ServerError            5xx/596 on a request that is safe to repeat
        ├── TransportError         connection failed before anything was sent
        ├── DownloadError          artifact URL expired, refused, truncated or corrupt
        └── OutcomeUnknownError    a create whose answer was lost: maybe paid for

Messages never contain the API token: nothing here formats headers or settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import ClassVar

__all__ = [
    "ApiError",
    "ApplyIncompleteError",
    "ApplyInterruptedError",
    "BudgetExceededError",
    "Diagnostic",
    "DownloadError",
    "ExitCode",
    "InsufficientCreditsError",
    "IntegrityError",
    "NotFoundError",
    "OutcomeUnknownError",
    "RateLimitedError",
    "ReconcileError",
    "RejectedError",
    "SchemaTooNewError",
    "ServerError",
    "SpecError",
    "StalePlanError",
    "StateError",
    "StateLockedError",
    "TransportError",
    "UnauthorizedError",
    "UsageError",
]


class ExitCode(IntEnum):
    """Process exit statuses; the table in docs/exit-codes.md mirrors this enum."""

    OK = 0
    """Success; `plan` found nothing to do (or ran without `--detailed-exitcode`)."""
    ERROR = 1
    """An error with no more specific code; an internal bug says so and names the crash log."""
    CHANGES = 2
    """`plan --detailed-exitcode`: changes present."""
    INVALID_INPUT = 3
    """Invalid input (specs, flags, arguments); nothing changed."""
    STATE = 4
    """State problem (locked, stale plan, corrupt or newer schema); nothing changed."""
    API = 5
    """The API refused or was unreachable before any work completed."""
    PARTIAL = 6
    """Partial apply: some images done and recorded, others failed; a rerun resumes."""
    OVER_BUDGET = 7
    """Over budget: nothing was submitted past the budget."""
    INTERRUPTED = 130
    """Interrupted (SIGINT/SIGTERM); in-flight jobs are journaled, so a rerun resumes."""


class ReconcileError(Exception):
    """Base of every failure we anticipate; `str(err)` is shown to the user as is."""

    exit_code: ClassVar[ExitCode] = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint
        """One sentence: what the user can do next."""


class UsageError(ReconcileError):
    """Raised when flags or arguments contradict each other or name nothing."""

    exit_code = ExitCode.INVALID_INPUT


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem in one spec file, located exactly."""

    path: Path
    line: int
    """1-based."""
    column: int
    """1-based."""
    key_path: str
    """Dotted path of the offending key, e.g. `images.hero.seed`."""
    message: str
    suggestion: str | None = None
    """The nearest valid key or value, shown as `(did you mean "seed"?)`."""

    def __str__(self) -> str:
        text = f"{self.path}:{self.line}:{self.column}: {self.key_path}: {self.message}"
        if self.suggestion is not None:
            text += f' (did you mean "{self.suggestion}"?)'
        return text


class SpecError(ReconcileError):
    """Raised when spec files are invalid; carries every diagnostic of every file."""

    exit_code = ExitCode.INVALID_INPUT

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        count = len(diagnostics)
        noun = "error" if count == 1 else "errors"
        super().__init__(
            f"{count} {noun} in spec files:\n" + "\n".join(str(d) for d in diagnostics),
            hint="fix the files named above; nothing was written",
        )
        self.diagnostics = diagnostics


class BudgetExceededError(ReconcileError):
    """Raised when the estimated or actual spend would pass a budget."""

    exit_code = ExitCode.OVER_BUDGET


class ApplyIncompleteError(ReconcileError):
    """Raised when an apply recorded some images but others failed or stayed unknown."""

    exit_code = ExitCode.PARTIAL

    def __init__(self, failures: list[str], *, hint: str | None = None) -> None:
        count = len(failures)
        noun = "image" if count == 1 else "images"
        super().__init__(
            f"{count} {noun} not generated:\n" + "\n".join(f"  {f}" for f in failures),
            hint=hint
            or "fix what is named above and run `ltx-reconcile apply` again; "
            "finished images are kept and nothing paid for is sent twice",
        )
        self.failures = failures


class ApplyInterruptedError(ReconcileError):
    """Raised when an apply stops on SIGINT/SIGTERM after committing what it had."""

    exit_code = ExitCode.INTERRUPTED


class StateError(ReconcileError):
    """Raised when the state cannot be read, written or trusted as asked."""

    exit_code = ExitCode.STATE


class StateLockedError(StateError):
    """Raised when another process holds the state's lease past the lock timeout."""


class StalePlanError(StateError):
    """Raised when a saved plan no longer matches the state or the specs it was made from."""


class SchemaTooNewError(StateError):
    """Raised when the state file was written by a newer ltx-reconcile."""


class IntegrityError(StateError):
    """Raised when stored or downloaded bytes do not match their recorded digest."""


class ApiError(ReconcileError):
    """Raised when the LTX Studio API refuses a request or cannot be reached."""

    exit_code = ExitCode.API

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        api_message: str | None = None,
        image: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        """The HTTP status, when an answer arrived."""
        self.api_message = api_message
        """The API's own `error` text, verbatim."""
        self.image = image
        """The image address the request was for, when there was one."""


class UnauthorizedError(ApiError):
    """Raised on 401, or 402 `Subscription required`: the token or subscription is wrong."""


class InsufficientCreditsError(ApiError):
    """Raised on 402 `Insufficient credits` (and 412): the account cannot pay for the image."""


class RateLimitedError(ApiError):
    """Raised on 429: no free job slot or rate limited; no job was created."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        status: int | None = 429,
        api_message: str | None = None,
        image: str | None = None,
    ) -> None:
        super().__init__(message, status=status, api_message=api_message, image=image)
        self.retry_after_s = retry_after_s
        """The server's Retry-After, when it sent one."""


class RejectedError(ApiError):
    """Raised on 400: the API rejected the request; its message names the field."""


class NotFoundError(ApiError):
    """Raised on 404: the job, account or asset is unknown or its record expired."""


class ServerError(ApiError):
    """Raised on 5xx/596 for a request that is safe to repeat, after retries ran out."""


class TransportError(ApiError):
    """Raised when the connection failed before the request could have been received."""


class DownloadError(ApiError):
    """Raised when an artifact URL is expired or refused, or its bytes are truncated."""


class OutcomeUnknownError(ApiError):
    """Raised when a create was sent but its answer was lost; the job may exist and be paid.

    Never retried silently: the journal's recovery (contract section 4.5) settles it.
    """
