"""Every refusal the emulator can give, read through the client's exception hierarchy.

Each test provokes a real answer from the emulator over loopback and checks the
`ltx_reconcile.errors` class, the HTTP status and the API's own text the user will see.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest

from ltx_reconcile.api import ApiClient, CreateImageRequest, JobCreated
from ltx_reconcile.emulator.config import AccountConfig, FaultConfig, FaultKind, FaultRule
from ltx_reconcile.emulator.server import RunningEmulator, serve_emulator
from ltx_reconcile.errors import (
    ApiError,
    ExitCode,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    ServerError,
    UnauthorizedError,
)
from testing.emulator import LOOPBACK_TLS

from .conftest import EMAIL, TOKEN, api_client, emulator_config

pytestmark = pytest.mark.anyio

SLOW_JOBS = {"flux": 20_000.0, "flux-premium": 20_000.0, "nano-banana": 20_000.0}
JOB_ID = f"email:{EMAIL}:7a34b821-9fd0-205e-d21b-4abc6f7839e7-type:image"
PNG_BYTES = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"
    b"\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xcf\xc0\x00\x00\x03\x01\x01\x00\xc9\xfe\x92\xef"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)
"""A valid 1x1 PNG."""

Call = Callable[[ApiClient], Awaitable[object]]
CALLS: dict[str, Call] = {
    "create_image": lambda c: c.create_image(CreateImageRequest(email=EMAIL, prompt="p")),
    "get_job": lambda c: c.get_job(JOB_ID),
    "list_assets": lambda c: c.list_assets(EMAIL),
    "upload_reference": lambda c: c.upload_reference(PNG_BYTES, "image/png", EMAIL),
    "scheduler": lambda c: c.scheduler(),
    "scheduler_available": lambda c: c.scheduler_available(),
    "get_account": lambda c: c.get_account(EMAIL),
}


def _request(reply_ref: str = "ltxr:refusal", **fields: object) -> CreateImageRequest:
    return CreateImageRequest.model_validate(
        {"email": EMAIL, "prompt": "a red lighthouse", "reply_ref": reply_ref, **fields}
    )


@pytest.fixture(scope="module")
def unsubscribed() -> Iterator[RunningEmulator]:
    """An emulator whose useapi.net subscription is off (E48)."""
    with serve_emulator(emulator_config(subscription_active=False)) as running:
        yield running


@pytest.fixture(scope="module")
def shared() -> Iterator[RunningEmulator]:
    """An emulator for tests that change nothing a neighbour could see."""
    with serve_emulator(emulator_config()) as running:
        yield running


@pytest.mark.parametrize("call", CALLS)
async def test_a_wrong_token_is_unauthorized_on_every_call(shared, call):
    """401 on any endpoint becomes UnauthorizedError (exit 5), hinting at USEAPI_TOKEN."""
    async with api_client(shared.base_url, token="user:wrong") as client:
        with pytest.raises(UnauthorizedError) as caught:
            await CALLS[call](client)
    assert (caught.value.status, caught.value.api_message) == (401, "Unauthorized")
    assert caught.value.hint == "check USEAPI_TOKEN"
    assert caught.value.exit_code == ExitCode.API


@pytest.mark.parametrize("call", CALLS)
async def test_an_inactive_subscription_is_unauthorized_on_every_call(unsubscribed, call):
    """402 `Subscription required` (E48) is an auth problem, never a credits one."""
    async with api_client(unsubscribed.base_url) as client:
        with pytest.raises(UnauthorizedError) as caught:
            await CALLS[call](client)
    assert (caught.value.status, caught.value.api_message) == (402, "Subscription required")
    assert caught.value.hint == "renew the useapi.net subscription"
    assert unsubscribed.charges() == []


@pytest.mark.parametrize("status", [500, 502, 503, 596])
async def test_a_read_failing_on_every_attempt_raises_server_error(start_emulator, status):
    """5xx/596 on a safe request is retried, then ServerError with the API's text."""
    emulator = start_emulator()
    rule = FaultRule(FaultKind.STATUS_BEFORE_ACCEPT, endpoint="scheduler", status=status, times=99)
    emulator.set_faults(FaultConfig(rules=(rule,)))
    async with api_client(emulator.base_url) as client:
        with pytest.raises(ServerError) as caught:
            await client.scheduler()
    assert caught.value.status == status
    assert caught.value.api_message is not None
    assert "after 4 attempts" in str(caught.value)
    assert isinstance(caught.value, ApiError)


async def test_a_read_rate_limited_on_every_attempt_raises_rate_limited(start_emulator):
    """429 on a safe request past its retries: RateLimitedError with Retry-After."""
    emulator = start_emulator()
    rule = FaultRule(FaultKind.STATUS_BEFORE_ACCEPT, endpoint="assets/list", status=429, times=99)
    emulator.set_faults(FaultConfig(rules=(rule,)))
    async with api_client(emulator.base_url) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.list_assets(EMAIL)
    assert (caught.value.status, caught.value.retry_after_s) == (429, 5.0)


async def test_a_job_past_its_retention_is_not_found_but_its_asset_stays_listed(start_emulator):
    """E35: after job_ttl the status read is NotFoundError; the listing still has the jobId."""
    emulator = start_emulator(job_ttl_s=0.05)
    async with api_client(emulator.base_url) as client:
        created = await client.create_image(_request("ltxr:expires"))
        assert isinstance(created, JobCreated)
        status = await client.wait_for_job(created.job_id, poll_interval_s=0.002, timeout_s=5)
        assert status.is_done
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while True:
            try:
                await client.get_job(created.job_id, image="hero")
            except NotFoundError as exc:
                caught = exc
                break
            assert loop.time() < deadline, "the job record never expired"
            await asyncio.sleep(0.01)
        listed = [item.job_id async for item in client.iter_assets(EMAIL)]
    assert (caught.status, caught.api_message) == (404, "Job not found or has expired")
    assert str(caught).startswith(f"hero: reading job {created.job_id}: not found or expired")
    assert listed == [created.job_id]


async def test_the_accounts_own_max_jobs_makes_a_full_account_rate_limited(start_emulator):
    """E18: with no maxJobs in the request the account's limit (here 1) applies."""
    emulator = start_emulator(
        accounts=(AccountConfig(email=EMAIL, max_jobs=1),), latency_median_s=SLOW_JOBS
    )
    async with api_client(emulator.base_url) as client:
        await client.create_image(_request("ltxr:first"))
        with pytest.raises(RateLimitedError) as caught:
            await client.create_image(_request("ltxr:second"))
        await client.create_image(_request("ltxr:wider", max_jobs=2))
        capacity = (await client.scheduler_available()).capacity_for(EMAIL)
    assert caught.value.api_message == f"Account {EMAIL} is executing 1 of 1 jobs, retry later"
    assert caught.value.retry_after_s == 5.0
    assert emulator.charges_by_reply_ref() == {"ltxr:first": 1, "ltxr:wider": 1}
    assert capacity is not None
    assert (capacity.max_jobs, capacity.executing, capacity.available) == (1, 2, 0)


@pytest.mark.parametrize(
    ("data", "mime", "asset_type", "message"),
    [
        (b"GIF89a", "image/gif", "reference-image", "Unsupported Content-Type image/gif for type=reference-image"),
        (b"", "image/png", "image", "Request body is empty"),
        (b"not a png", "image/png", "reference-image", "File is not a valid image/png image"),
        (PNG_BYTES, "image/webp", "reference-image", "File is not a valid image/webp image"),
    ],
)  # fmt: skip
async def test_an_upload_refusal_reaches_the_user_verbatim(shared, data, mime, asset_type, message):
    """E24: 400 on an upload is RejectedError quoting the API, not retried."""
    async with api_client(shared.base_url) as client:
        with pytest.raises(RejectedError) as caught:
            await client.upload_reference(data, mime, EMAIL, asset_type=asset_type, image="hero")
    assert (caught.value.status, caught.value.api_message, caught.value.image) == (
        400,
        message,
        "hero",
    )


async def test_a_plain_image_upload_takes_any_content_type(shared):
    """E24: `type=image` accepts any bytes with any MIME type."""
    async with api_client(shared.base_url) as client:
        asset = await client.upload_reference(b"\x00", "application/pdf", EMAIL, asset_type="image")
    assert asset.file_id is not None
    assert asset.file_id.endswith("-type:application/pdf")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": 101}, "limit must be an integer between 1 and 100"),
        ({"limit": 0}, "limit must be an integer between 1 and 100"),
        ({"page": 0}, "page must be an integer ≥ 1"),
    ],
)
async def test_listing_out_of_bounds_is_rejected(shared, kwargs, message):
    """E23: the listing's bounds come back as RejectedError."""
    async with api_client(shared.base_url) as client:
        with pytest.raises(RejectedError) as caught:
            await client.list_assets(EMAIL, **kwargs)
    assert caught.value.api_message == message


@pytest.mark.parametrize("call", ["list_assets", "upload_reference", "create_image"])
async def test_naming_an_unknown_account_is_rejected(shared, call):
    """Row 24: `Unable to locate account <email>` on every call that names an account."""
    nobody = "nobody@example.com"
    calls: dict[str, Call] = {
        "list_assets": lambda c: c.list_assets(nobody),
        "upload_reference": lambda c: c.upload_reference(PNG_BYTES, "image/png", nobody),
        "create_image": lambda c: c.create_image(CreateImageRequest(email=nobody, prompt="p")),
    }
    async with api_client(shared.base_url) as client:
        with pytest.raises(RejectedError) as caught:
            await calls[call](client)
    assert caught.value.api_message == f"Unable to locate account {nobody}"


async def test_downloads_reach_storage_on_the_api_origin_without_the_token(emulator, tmp_path):
    """E41's guard answers 400 to any Authorization header; the client's download passes it.

    Storage shares the API's origin in the emulator, the worst case for a leaking client.
    """
    async with api_client(emulator.base_url) as client:
        created = await client.create_image(_request())
        assert isinstance(created, JobCreated)
        status = await client.wait_for_job(created.job_id, poll_interval_s=0.002, timeout_s=5)
        assert status.artifact is not None
        url = status.artifact.asset_url or ""
        assert url.startswith(emulator.origin)
        download = await client.download(url, tmp_path)
    async with httpx.AsyncClient(verify=LOOPBACK_TLS) as plain:
        with_token = await plain.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert (with_token.status_code, with_token.text) == (
        400,
        "Authorization header must not be sent to storage URLs",
    )
    assert download.size_bytes > 0
