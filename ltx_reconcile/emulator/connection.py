"""Real connection resets for fault injection (E19), reaching below ASGI.

ASGI gives an app no way to reset its TCP connection, so `attach_aborter` runs before any
Starlette middleware wraps `send`: uvicorn's `send` is a bound method of the request
cycle, and every uvicorn HTTP implementation (h11, httptools, zttp) keeps the connection's
asyncio transport on that cycle as `.transport`. Aborting it sends a TCP RST with nothing
written, which a client sees as a reset or a closed connection. Where no transport can be
found (starlette's TestClient, another server) the reset raises `ConnectionResetError` in
the app instead, which TestClient hands to the test: a clean, visible fallback.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Final

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = [
    "ABORT_SCOPE_KEY",
    "AbortConnection",
    "ResetResponse",
    "TruncatedResponse",
    "attach_aborter",
]

ABORT_SCOPE_KEY: Final = "ltx_emulator.abort"
_DRAIN_TIMEOUT_S: Final = 2.0

Aborter = Callable[[], Awaitable[None]]


class AbortConnection(Exception):  # noqa: N818  # it is an instruction, not an error
    """Raised by a route to have its connection reset instead of answered."""


def attach_aborter(scope: Scope, receive: Receive, send: Send) -> None:
    """Store, in `scope`, a coroutine function that resets this request's connection."""
    transport = _transport_of(send)

    async def abort() -> None:
        if transport is None:
            raise ConnectionResetError("emulated connection reset (no transport to abort)")
        transport.abort()
        await _drain_until_disconnect(receive)

    scope[ABORT_SCOPE_KEY] = abort


def _transport_of(send: Send) -> asyncio.Transport | None:
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    return transport if isinstance(transport, asyncio.Transport) else None


async def _drain_until_disconnect(receive: Receive) -> None:
    """Wait until the server has seen the connection go, so it logs no stray error."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(_DRAIN_TIMEOUT_S):
            while (await receive())["type"] != "http.disconnect":
                pass


async def _abort(scope: Scope) -> None:
    abort: Aborter | None = scope.get(ABORT_SCOPE_KEY)
    if abort is None:
        raise ConnectionResetError("emulated connection reset (no aborter attached)")
    await abort()


class ResetResponse(Response):
    """A response that is never sent: the connection is reset instead."""

    def __init__(self) -> None:
        super().__init__(status_code=500)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002  # the ASGI signature; nothing is received or sent
        await _abort(scope)


class TruncatedResponse(Response):
    """Declares the full body length, sends the first half, then resets the connection."""

    def __init__(self, content: bytes, media_type: str) -> None:
        super().__init__(content, media_type=media_type)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002  # the ASGI signature; the body is already read
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        half = self.body[: len(self.body) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        await _abort(scope)
