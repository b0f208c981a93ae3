"""Turns the API's answers into the `ApiError` subclasses of `ltx_reconcile.errors`.

This module owns the status-code table of contract 4.3: which status means which failure,
and the user-facing message for each. It sends nothing and never decides about retries.
Messages name the image and quote the API's `error` text; they never include headers, so
the token cannot reach them, and any text from the server is scrubbed of it as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

import httpx
from pydantic import ValidationError

from ltx_reconcile.api.model import ApiErrorBody
from ltx_reconcile.errors import (
    ApiError,
    InsufficientCreditsError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    RejectedError,
    ServerError,
    TransportError,
    UnauthorizedError,
)

__all__ = ["Failure", "is_transient", "retry_after_s"]

_MAX_BODY_QUOTE: Final = 200
"""Characters of a non-JSON error body worth quoting (a proxy's HTML page is not)."""

_SUBSCRIPTION_REQUIRED: Final = "Subscription required"
_INSUFFICIENT_CREDITS: Final = "Insufficient credits"

_OUTCOME_UNKNOWN_HINT: Final = (
    "do not resend by hand: the job may exist and be paid for; run `ltx-reconcile apply` "
    "again and recovery will look it up by its replyRef first"
)


def is_transient(status: int) -> bool:
    """Whether an answer with `status` may go away on its own (429, 5xx, useapi.net's 596)."""
    return status == httpx.codes.TOO_MANY_REQUESTS or status >= httpx.codes.INTERNAL_SERVER_ERROR


def retry_after_s(response: httpx.Response) -> float | None:
    """The `Retry-After` header in seconds, when it is a number (the contract never needs it)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


@dataclass(frozen=True, slots=True)
class Failure:
    """Builds the error for one request: which image, which action, and what to scrub."""

    action: str
    """What was being done, e.g. `creating the image` or `reading job <jobId>`."""
    image: str | None
    secret: str = field(repr=False)
    """The token, so that server text quoting it is scrubbed (defence in depth). Kept out
    of the repr: a traceback rendered with its locals shows every frame's `failure`."""

    def text(self, detail: str) -> str:
        """`<image>: <action>: <detail>`, scrubbed of the token."""
        subject = f"{self.image}: " if self.image else ""
        return self._scrub(f"{subject}{self.action}: {detail}")

    def _scrub(self, text: str) -> str:
        return text.replace(self.secret, "[token]") if self.secret else text

    def api_message(self, response: httpx.Response) -> str | None:
        """The API's `error` (or `message`) text; the start of a non-JSON body; else None."""
        try:
            text = ApiErrorBody.model_validate_json(response.content).text
        except ValidationError:
            text = response.text.strip()[:_MAX_BODY_QUOTE] or None
        return self._scrub(text) if text is not None else None

    def for_status(self, response: httpx.Response, *, attempts: int = 1) -> ApiError:
        """The error for a non-2xx answer to a request that is safe to repeat."""
        status = response.status_code
        message = self.api_message(response)
        quoted = f": {message}" if message else ""
        if status == httpx.codes.BAD_REQUEST:
            return RejectedError(
                self.text(f"the API rejected the request (400){quoted}"),
                status=status,
                api_message=message,
                image=self.image,
            )
        if status == httpx.codes.UNAUTHORIZED or (
            status == httpx.codes.PAYMENT_REQUIRED
            and (message or "").startswith(_SUBSCRIPTION_REQUIRED)
        ):
            return self._unauthorized(status, message)
        if status in (httpx.codes.PAYMENT_REQUIRED, httpx.codes.PRECONDITION_FAILED):
            return InsufficientCreditsError(
                self.text(f"the account cannot pay for this ({status}){quoted}"),
                status=status,
                api_message=message,
                image=self.image,
                hint="check the balance with the account's email; credits renew monthly",
            )
        if status == httpx.codes.NOT_FOUND:
            return NotFoundError(
                self.text(f"not found or expired (404){quoted}"),
                status=status,
                api_message=message,
                image=self.image,
            )
        if status == httpx.codes.TOO_MANY_REQUESTS:
            return RateLimitedError(
                self.text(f"the API is busy (429){quoted}"),
                retry_after_s=retry_after_s(response),
                api_message=message,
                image=self.image,
            )
        if httpx.codes.BAD_REQUEST < status < httpx.codes.INTERNAL_SERVER_ERROR:
            return RejectedError(
                self.text(f"the API refused the request ({status}){quoted}"),
                status=status,
                api_message=message,
                image=self.image,
            )
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return ServerError(
            self.text(f"the API failed with HTTP {status}{tries}{quoted}"),
            status=status,
            api_message=message,
            image=self.image,
            hint="the service may be down; try again later",
        )

    def _unauthorized(self, status: int, message: str | None) -> UnauthorizedError:
        if status == httpx.codes.UNAUTHORIZED:
            detail, hint = (
                "the API refused the token (401 Unauthorized)",
                "check USEAPI_TOKEN",
            )
        else:
            detail, hint = (
                "the useapi.net subscription is not active (402 Subscription required)",
                "renew the useapi.net subscription",
            )
        return UnauthorizedError(
            self.text(detail), status=status, api_message=message, image=self.image, hint=hint
        )

    def for_create(self, response: httpx.Response) -> ApiError:
        """The error for a create's non-2xx answer: a 5xx/596 may hide an accepted, paid job."""
        status = response.status_code
        if httpx.codes.BAD_REQUEST <= status < httpx.codes.INTERNAL_SERVER_ERROR:
            return self.for_status(response)
        message = self.api_message(response)
        quoted = f": {message}" if message else ""
        return OutcomeUnknownError(
            self.text(f"the API answered HTTP {status}, so the job may or may not exist{quoted}"),
            status=status,
            api_message=message,
            image=self.image,
            hint=_OUTCOME_UNKNOWN_HINT,
        )

    def answer_lost(self, exc: httpx.TransportError) -> OutcomeUnknownError:
        """The error for a create that was sent but whose answer never arrived."""
        return OutcomeUnknownError(
            self.text(
                f"the request was sent but its answer was lost ({_describe(exc)}), "
                "so the job may or may not exist"
            ),
            image=self.image,
            hint=_OUTCOME_UNKNOWN_HINT,
        )

    def unreadable_create(self, response: httpx.Response) -> OutcomeUnknownError:
        """The error for a create answered 2xx with a body that is not the contract's."""
        return OutcomeUnknownError(
            self.text(
                f"the API accepted the request (HTTP {response.status_code}) but its answer "
                "has no readable jobId, so the job exists and cannot be followed"
            ),
            status=response.status_code,
            image=self.image,
            hint=_OUTCOME_UNKNOWN_HINT,
        )

    def unreadable(self, response: httpx.Response) -> ServerError:
        """The error for a safe request answered 2xx with a body that is not the contract's."""
        return ServerError(
            self.text(
                f"the API answered HTTP {response.status_code} with a body that does not "
                "match the contract"
            ),
            status=response.status_code,
            image=self.image,
        )

    def unreachable(self, exc: httpx.TransportError, *, attempts: int) -> TransportError:
        """The error for a request that never got an answer, after `attempts` tries."""
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return TransportError(
            self.text(f"no answer from the API{tries} ({_describe(exc)})"),
            image=self.image,
            hint="check the network and LTX_API_URL",
        )


def _describe(exc: httpx.TransportError) -> str:
    """Name a transport failure; httpx messages hold no headers, but may be empty."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
