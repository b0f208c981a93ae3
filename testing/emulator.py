"""Helpers for tests that run against the emulator: fast configs, clients, waiting.

Other test folders reuse these as plain functions (wrap them in fixtures where needed):

    with serve_emulator(fast_config()) as emulator, api_client(emulator) as client:
        job_id = client.post("/images/create", json={"prompt": "a cat"}).json()["jobId"]
        body = wait_for_status(client, job_id)

`webhook_receiver()` is a real HTTP server on loopback for `replyUrl`: it records every
notification and answers the statuses a test scripts.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, TypeVar

import httpx
from PIL import Image

from ltx_reconcile.emulator.config import AccountConfig, EmulatorConfig
from ltx_reconcile.emulator.server import RunningEmulator, serve_emulator

__all__ = [
    "LOOPBACK_TLS",
    "TEST_TOKEN",
    "Delivery",
    "WebhookReceiver",
    "api_client",
    "auth_headers",
    "fast_config",
    "fetch",
    "running_emulator",
    "tiny_image",
    "wait_for_status",
    "wait_until",
    "webhook_receiver",
]

TEST_TOKEN = "user:12345-emulator-test-token"  # noqa: S105  # a fixed test token, not a secret
LOOPBACK_TLS: Final = httpx.create_ssl_context()
"""One TLS context for every test client. httpx builds one per client by default, loading the
CA bundle each time (tens of ms, hundreds of times a run); loopback traffic is plain HTTP."""
_T = TypeVar("_T")


def fast_config(**overrides: Any) -> EmulatorConfig:
    """A test-mode config where a job takes milliseconds (time_scale 0.001).

    Jobs last about 8-12 ms, pollForResult steps 3 ms, webhook retries 1/5/25 ms and URLs
    stay valid 3.6 s. Latencies are seeded, so a run replays the same durations.
    """
    settings: dict[str, Any] = {
        "test_mode": True,
        "time_scale": 0.001,
        "latency_seed": 1,
        "tokens": (TEST_TOKEN,),
        "accounts": (AccountConfig("user@example.com"),),
    }
    settings.update(overrides)
    return EmulatorConfig(**settings)


def auth_headers(token: str = TEST_TOKEN) -> dict[str, str]:
    """The Authorization header for `token`."""
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def running_emulator(**overrides: Any) -> Iterator[RunningEmulator]:
    """`serve_emulator(fast_config(**overrides))`."""
    with serve_emulator(fast_config(**overrides)) as emulator:
        yield emulator


@contextmanager
def api_client(emulator: RunningEmulator, token: str = TEST_TOKEN) -> Iterator[httpx.Client]:
    """A plain httpx client on the emulator's API base URL, authorised with `token`."""
    with httpx.Client(
        base_url=emulator.base_url, headers=auth_headers(token), timeout=30, verify=LOOPBACK_TLS
    ) as c:
        yield c


def fetch(url: str, **kwargs: Any) -> httpx.Response:
    """`httpx.get(url, **kwargs)` with the shared TLS context: a storage URL, say."""
    return httpx.get(url, verify=LOOPBACK_TLS, **kwargs)


def wait_until(condition: Callable[[], _T | None], timeout_s: float = 5.0) -> _T:
    """Poll `condition` until it returns something truthy; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            msg = f"condition not met within {timeout_s} s"
            raise AssertionError(msg)
        time.sleep(0.002)


def wait_for_status(
    client: httpx.Client, job_id: str, *, want_artifact: bool = True, timeout_s: float = 5.0
) -> dict[str, Any]:
    """Poll GET assets/{jobId} until the job is failed, or completed (with its artifact)."""

    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/assets/{job_id}").json()
        status = body["status"]
        if status["type"] == "failed":
            return body
        if status["type"] == "completed" and (not want_artifact or "artifact" in status):
            return body
        return None

    return wait_until(done, timeout_s)


def tiny_image(image_format: str = "PNG", size: tuple[int, int] = (8, 4)) -> bytes:
    """A small real picture in `image_format` (PNG, JPEG, WEBP), e.g. for reference uploads."""
    out = io.BytesIO()
    Image.new("RGB", size, (200, 10, 10)).save(out, format=image_format)
    return out.getvalue()


@dataclass(frozen=True)
class Delivery:
    """One request that reached a `WebhookReceiver`, and the status it was answered with."""

    method: str
    path: str
    """The request target: path and query."""
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes
    received_s: float
    """`time.monotonic()` when the request had been read."""
    answered: int

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """A loopback HTTP server that records every request and answers scripted statuses.

    Answers are taken in order from `answer_with`; once they run out every request gets
    204. `delay_s` holds an answer back, e.g. past the sender's timeout.
    """

    url: str
    """`http://127.0.0.1:<port>`: append any path for a `replyUrl`."""
    deliveries: list[Delivery] = field(default_factory=list)
    _script: deque[tuple[int, float]] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer_with(self, *statuses: int, delay_s: float = 0.0) -> None:
        """Queue these statuses for the next requests, each held back `delay_s`."""
        with self._lock:
            self._script.extend((status, delay_s) for status in statuses)

    def received(self) -> list[Delivery]:
        """Every request so far, in arrival order."""
        with self._lock:
            return list(self.deliveries)

    def wait_for(self, count: int, timeout_s: float = 5.0) -> list[Delivery]:
        """Poll until at least `count` requests arrived; AssertionError at the deadline."""

        def enough() -> list[Delivery] | None:
            got = self.received()
            return got if len(got) >= count else None

        return wait_until(enough, timeout_s)

    def _next_answer(self) -> tuple[int, float]:
        with self._lock:
            return self._script.popleft() if self._script else (204, 0.0)

    def _record(self, delivery: Delivery) -> None:
        with self._lock:
            self.deliveries.append(delivery)


def _handler_for(receiver: WebhookReceiver) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # the method name http.server dispatches to
            self._handle()

        def do_GET(self) -> None:
            self._handle()

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received_s = time.monotonic()
            status, delay_s = receiver._next_answer()
            headers = {name.lower(): value for name, value in self.headers.items()}
            receiver._record(Delivery(self.command, self.path, headers, body, received_s, status))
            time.sleep(delay_s)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # http.server's signature
            """Silent: a test reads `deliveries`, not stderr."""

    return _Handler


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """Serve a `WebhookReceiver` on a free loopback port for the `with` block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    receiver = WebhookReceiver(url=f"http://127.0.0.1:{server.server_address[1]}")
    server.RequestHandlerClass = _handler_for(receiver)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
    )
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
