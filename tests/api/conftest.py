"""Fixtures of the API client's tests: the anyio backend and a scripted HTTP server.

The emulator (`emulator` fixtures in the test modules) is the faithful counterpart; the
scripted server here answers byte for byte what a test queues, for the answers no faithful
emulator gives (412, an HTML 502, a garbled 200) and for exact transport failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections import deque
from dataclasses import dataclass, field

import pytest


@pytest.fixture
def anyio_backend():
    """The client is asyncio-only in production, so its tests run on asyncio."""
    return "asyncio"


@dataclass(frozen=True)
class Canned:
    """One scripted answer: a status with body and headers, or a transport failure."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    close_before_answer: bool = False
    """Read the request, then close the connection without a byte of answer."""
    delay_s: float = 0.0
    declared_length: int | None = None
    """Content-Length to declare instead of the body's own (a truncated body)."""

    def encode(self) -> bytes:
        length = len(self.body) if self.declared_length is None else self.declared_length
        lines = [f"HTTP/1.1 {self.status} X", f"Content-Length: {length}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


@dataclass(frozen=True)
class Received:
    """One request as it arrived: request line, header lines and body."""

    request_line: str
    headers: dict[str, str]
    body: bytes


@dataclass
class ScriptedServer:
    """A loopback HTTP/1.1 server answering queued `Canned` answers in order."""

    origin: str
    script: deque[Canned] = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)

    def queue(self, *answers: Canned) -> None:
        self.script.extend(answers)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            headers = {
                name.strip().lower(): value.strip()
                for name, _, value in (line.partition(":") for line in header_lines if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.received.append(Received(request_line, headers, body))
            canned = self.script.popleft() if self.script else Canned(status=599)
            await asyncio.sleep(canned.delay_s)
            if not canned.close_before_answer:
                writer.write(canned.encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
def scripted():
    """A `ScriptedServer` on 127.0.0.1, served from its own thread and loop."""
    loop = asyncio.new_event_loop()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = ScriptedServer(origin=f"http://127.0.0.1:{sock.getsockname()[1]}")
    started = threading.Event()

    async def serve() -> None:
        async with await asyncio.start_server(server.handle, sock=sock):
            started.set()
            await asyncio.Event().wait()

    def run() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(5)
    yield server
    for task in asyncio.all_tasks(loop):
        loop.call_soon_threadsafe(task.cancel)
    thread.join(5)
    loop.close()


@pytest.fixture
def closed_port_origin():
    """An origin on loopback where nothing listens: connecting fails before any send."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
