"""Helpers for tests that run against the emulator: fast configs, clients, waiting.

Other test folders reuse these as plain functions (wrap them in fixtures where needed):

    with serve_emulator(fast_config()) as emulator, api_client(emulator) as client:
        job_id = client.post("/images/create", json={"prompt": "a cat"}).json()["jobId"]
        body = wait_for_status(client, job_id)
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import httpx
from PIL import Image

from ltx_reconcile.emulator.config import AccountConfig, EmulatorConfig
from ltx_reconcile.emulator.server import RunningEmulator, serve_emulator

__all__ = [
    "TEST_TOKEN",
    "api_client",
    "auth_headers",
    "fast_config",
    "running_emulator",
    "tiny_image",
    "wait_for_status",
    "wait_until",
]

TEST_TOKEN = "user:12345-emulator-test-token"  # noqa: S105  # a fixed test token, not a secret
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
    with httpx.Client(base_url=emulator.base_url, headers=auth_headers(token), timeout=30) as c:
        yield c


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
