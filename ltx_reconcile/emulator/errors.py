"""The emulator's refusals, and the one place their bodies are rendered.

Route code raises `ApiError`; the app's exception handler turns it into the contract's
`{"error": <message>, "code": <status>}` body (E3). Storage URLs are not the API: they
answer plain text, like a storage bucket, through `StorageError`.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.responses import JSONResponse, PlainTextResponse, Response

__all__ = ["ApiError", "StorageError", "render_api_error", "render_storage_error"]


class ApiError(Exception):
    """A refusal on the `/v1/ltxstudio` surface: an HTTP status and the contract's message."""

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class StorageError(Exception):
    """A refusal from the artifact storage (E41): plain text, no JSON."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def render_api_error(err: ApiError) -> Response:
    """The JSON error body of E3 for `err`."""
    return JSONResponse(
        {"error": err.message, "code": err.status}, status_code=err.status, headers=err.headers
    )


def render_storage_error(err: StorageError) -> Response:
    """The plain-text storage answer for `err`."""
    return PlainTextResponse(err.message, status_code=err.status)
