"""Fixtures of the API client's tests: the anyio backend and a scripted HTTP server.

The emulator (`emulator` fixtures in the test modules) is the faithful counterpart; the
scripted server here answers byte for byte what a test queues, for the answers no faithful
emulator gives (412, an HTML 502, a garbled 200) and for exact transport failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import threading
from collections import deque
from dataclasses import dataclass, field

import pytest

from ltx_reconcile.api import ApiClient, Backoff, RetryPolicy
from ltx_reconcile.emulator.config import AccountConfig, EmulatorConfig
from ltx_reconcile.emulator.server import RunningEmulator, serve_emulator


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
    # The loop stops as soon as `serve` ends, before the cancelled handlers (e.g. one still
    # sleeping out a `delay_s`) have unwound; finish them here and let their transports
    # close, or they are destroyed pending and warn inside some later test.
    leftover = asyncio.all_tasks(loop)
    for task in leftover:
        task.cancel()

    async def unwind() -> None:
        await asyncio.gather(*leftover, return_exceptions=True)
        await asyncio.sleep(0)

    loop.run_until_complete(unwind())
    loop.close()


@pytest.fixture
def closed_port_origin():
    """An origin on loopback where nothing listens: connecting fails before any send."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


TOKEN = "user:12345-api-tests"
EMAIL = "demo@ltx-emulator.test"
TIME_SCALE = 0.001
"""Emulated seconds per real millisecond: an 8 s job takes 8 ms."""

FAST_RETRY = RetryPolicy(
    safe=Backoff(attempts=4, first_delay_s=0.001, max_delay_s=0.005),
    create_busy=Backoff(attempts=4, first_delay_s=0.001, max_delay_s=0.005),
)


def emulator_config(**changes) -> EmulatorConfig:
    """A fast test-mode emulator accepting `TOKEN`, with one account, `EMAIL`."""
    base = EmulatorConfig(
        tokens=(TOKEN,),
        accounts=(AccountConfig(email=EMAIL),),
        test_mode=True,
        time_scale=TIME_SCALE,
        latency_seed=1,
    )
    return dataclasses.replace(base, **changes)


@pytest.fixture
def start_emulator():
    """Start emulators with `emulator_config(**changes)`; all stop at the test's end."""
    with contextlib.ExitStack() as stack:

        def start(**changes) -> RunningEmulator:
            return stack.enter_context(serve_emulator(emulator_config(**changes)))

        yield start


@pytest.fixture(scope="module")
def emulator_config_for_module() -> EmulatorConfig:
    """The configuration of this folder's shared emulator (tests/conftest.py)."""
    return emulator_config()


def api_client(base_url: str, **kwargs) -> ApiClient:
    """A client for `base_url` with `TOKEN`, millisecond retries and a scaled poll step."""
    kwargs.setdefault("retry", FAST_RETRY)
    kwargs.setdefault("timeout_s", 5.0)
    kwargs.setdefault("poll_step_s", 3.0 * TIME_SCALE)
    return ApiClient(base_url, kwargs.pop("token", TOKEN), **kwargs)
