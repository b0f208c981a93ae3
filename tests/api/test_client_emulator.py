"""The client against the project's emulator over real HTTP on loopback.

Two independent readings of the contract meet here: a misreading in either fails a test.
The emulator's ledger says what was charged, so every "never pay twice" claim is checked
against money, not against the client's own account of itself.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time

import pytest
from PIL import Image

from ltx_reconcile.api import (
    ArtifactUrlExpiredError,
    Backoff,
    CreateImageRequest,
    JobCreated,
    JobStatus,
    PartialDownloadError,
    RetryPolicy,
)
from ltx_reconcile.emulator.config import FaultConfig, FaultKind, FaultRule
from ltx_reconcile.errors import (
    DownloadError,
    InsufficientCreditsError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    RejectedError,
    UnauthorizedError,
)

from .conftest import EMAIL, FAST_RETRY, TIME_SCALE, Canned, api_client

pytestmark = pytest.mark.anyio

FAILURE_MESSAGES = {
    "Generation failed: the model returned no image",
    "Generation failed: upstream timeout",
    "Prompt was rejected by content moderation",
}
SLOW_JOBS = {"flux": 20_000.0, "flux-premium": 20_000.0, "nano-banana": 20_000.0}
"""Emulated seconds: 20 s of wall clock at the test time scale, longer than any test."""
QUICK_JOBS = {"flux": 1.0, "flux-premium": 1.0, "nano-banana": 1.0}


def _request(reply_ref: str = "ltxr:test", **fields) -> CreateImageRequest:
    body = {"email": EMAIL, "prompt": "a red lighthouse", "reply_ref": reply_ref, **fields}
    return CreateImageRequest.model_validate(body)


def _faults(*rules: FaultRule) -> FaultConfig:
    return FaultConfig(rules=rules)


def _png(size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (0, 90, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


async def _done(client, job_id: str) -> JobStatus:
    status = await client.wait_for_job(job_id, poll_interval_s=0.002, timeout_s=10)
    assert status.is_done, status
    return status


async def _created(client, request: CreateImageRequest) -> str:
    created = await client.create_image(request)
    assert isinstance(created, JobCreated)
    return created.job_id


# -- lifecycle ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aspect_ratio", "size"), [("16:9", (1280, 720)), ("9:16", (720, 1280)), ("1:1", (1024, 1024))]
)
async def test_create_poll_and_download_yield_a_png_of_the_right_size_charged_once(
    emulator, tmp_path, aspect_ratio, size
):
    """The whole lifecycle: one charge, a done status, a verified PNG of E44's size."""
    async with api_client(emulator.base_url) as client:
        job_id = await _created(client, _request("ltxr:life", aspect_ratio=aspect_ratio, seed=3))
        assert job_id.startswith(f"email:{EMAIL}:")
        status = await _done(client, job_id)
        assert (status.job_id, status.reply_ref, status.status.progress) == (
            job_id,
            "ltxr:life",
            100,
        )
        assert status.artifact is not None
        assert status.artifact.asset_url is not None
        assert not status.artifact.is_expired(int(time.time() * 1000), margin_ms=0)
        download = await client.download(status.artifact.asset_url, tmp_path, image="hero")
    with Image.open(download.path) as picture:
        assert (picture.format, picture.size) == ("PNG", size)
    assert download.mime_type == "image/png"
    assert emulator.charges_by_reply_ref() == {"ltxr:life": 1}


async def test_polling_sees_progress_rise_while_the_job_is_active(start_emulator):
    """Progress is an integer that never decreases, reaching 100 when done (E33)."""
    emulator = start_emulator(latency_median_s={"flux": 100.0}, latency_sigma=0.0)
    async with api_client(emulator.base_url) as client:
        job_id = await _created(client, _request())
        seen: list[int] = []
        while True:
            status = await client.get_job(job_id)
            seen.append(status.status.progress or 0)
            if status.is_done:
                break
            await asyncio.sleep(0.005)
    assert seen == sorted(seen)
    assert seen[-1] == 100
    assert len(set(seen)) > 2


async def test_completed_without_asset_url_is_polled_again_until_the_url_appears(start_emulator):
    """The first reads after completion lack assetUrl (E34); the client waits it out."""
    emulator = start_emulator(artifact_lag_reads=3, latency_median_s=QUICK_JOBS)
    async with api_client(emulator.base_url) as client:
        job_id = await _created(client, _request())
        statuses: list[JobStatus] = []
        while not (statuses and statuses[-1].is_done):
            statuses.append(await client.get_job(job_id))
    lagging = [s for s in statuses if s.status.type == "completed" and not s.is_done]
    assert len(lagging) == 3
    assert all(s.artifact is None for s in lagging)


async def test_wait_for_job_rides_out_a_lag_window(emulator):
    """A completed-without-URL window (fault) ends in a done status, not an error."""
    emulator.set_faults(
        _faults(FaultRule(FaultKind.LAG_WINDOW, endpoint="images/create", delay_s=0.05))
    )
    async with api_client(emulator.base_url) as client:
        job_id = await _created(client, _request())
        status = await _done(client, job_id)
    assert status.status.type == "completed"


async def test_wait_for_job_returns_the_last_status_when_time_runs_out(start_emulator):
    """A job still running at the deadline comes back active, neither done nor failed."""
    emulator = start_emulator(latency_median_s=SLOW_JOBS)
    async with api_client(emulator.base_url) as client:
        job_id = await _created(client, _request())
        status = await client.wait_for_job(job_id, poll_interval_s=0.005, timeout_s=0.05)
    assert (status.status.type, status.is_done, status.is_failed) == ("active", False, False)


async def test_a_failed_job_is_reported_with_its_message_and_refunded(emulator):
    """A job that fails returns status failed with one of E36's messages; E40 refunds it."""
    emulator.set_faults(_faults(FaultRule(FaultKind.FAIL_JOB, endpoint="images/create")))
    async with api_client(emulator.base_url) as client:
        job_id = await _created(client, _request("ltxr:fails"))
        status = await client.wait_for_job(job_id, poll_interval_s=0.002, timeout_s=10)
    assert status.is_failed
    assert status.status.message in FAILURE_MESSAGES
    assert emulator.net_spend(EMAIL) == 0


async def test_pollforresult_that_finishes_in_its_window_answers_the_status(start_emulator):
    """With pollForResult the create itself answers the status model (contract 2.1)."""
    emulator = start_emulator(latency_median_s=QUICK_JOBS, latency_sigma=0.0)
    async with api_client(emulator.base_url) as client:
        answer = await client.create_image(_request("ltxr:poll", poll_for_result=20))
        assert isinstance(answer, JobStatus)
        assert (answer.status.type, answer.reply_ref) == ("completed", "ltxr:poll")
        assert answer.job_id is not None
        status = await _done(client, answer.job_id)
    assert status.job_id == answer.job_id
    assert emulator.charges_by_reply_ref() == {"ltxr:poll": 1}


async def test_pollforresult_that_runs_out_answers_the_job_id(start_emulator):
    """A window too short for the job ends with the job-created body (E16)."""
    emulator = start_emulator(latency_median_s=SLOW_JOBS)
    async with api_client(emulator.base_url) as client:
        answer = await client.create_image(_request(poll_for_result=2))
    assert isinstance(answer, JobCreated)
    assert answer.generation_id is not None


async def test_pollforresult_that_fails_in_its_window_answers_the_failed_status(start_emulator):
    """A failure inside the window answers 200 with status failed (E16)."""
    emulator = start_emulator(latency_median_s=QUICK_JOBS, latency_sigma=0.0)
    emulator.set_faults(_faults(FaultRule(FaultKind.FAIL_JOB, endpoint="images/create")))
    async with api_client(emulator.base_url) as client:
        answer = await client.create_image(_request(poll_for_result=20))
    assert isinstance(answer, JobStatus)
    assert answer.is_failed


async def test_pollforresult_wait_longer_than_the_plain_timeout_still_answers(start_emulator):
    """The create's timeout stretches to pollForResult x step + 10 s (E47)."""
    emulator = start_emulator(latency_median_s=SLOW_JOBS)
    async with api_client(
        emulator.base_url, timeout_s=0.02, poll_step_s=3.0 * TIME_SCALE
    ) as client:
        # 20 steps of 3 emulated seconds = 60 ms, three times the 20 ms plain timeout.
        answer = await client.create_image(_request(poll_for_result=20))
    assert isinstance(answer, JobCreated)
    assert len(emulator.charges()) == 1


# -- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt": "x" * 2001}, "prompt must be at most 2000 characters"),
        ({"seed": -1}, "seed must be an integer between 0 and 4294967295"),
        ({"reference_strength": 101}, "reference_strength must be an integer between 0 and 100"),
        ({"model": "nano-banana", "style": "anime"}, "style is not supported by model nano-banana"),
        ({"poll_for_result": 21}, "pollForResult must be an integer between 1 and 20"),
        ({"max_jobs": 0}, "maxJobs must be an integer between 1 and 100"),
        (
            {"reply_url": "ftp://x"},
            "replyUrl must be an absolute http or https URL of at most 2048 characters",
        ),
        ({"email": "nobody@example.com"}, "Unable to locate account nobody@example.com"),
    ],
)
async def test_a_rejected_create_carries_the_api_message_and_costs_nothing(
    emulator, fields, message
):
    """400 becomes RejectedError quoting the API verbatim; no charge, no retry."""
    async with api_client(emulator.base_url) as client:
        with pytest.raises(RejectedError) as caught:
            await client.create_image(_request(**fields), image="hero")
    assert (caught.value.status, caught.value.api_message) == (400, message)
    assert (
        str(caught.value)
        == f"hero: creating the image: the API rejected the request (400): {message}"
    )
    assert emulator.charges() == []


async def test_a_wrong_token_is_unauthorized(emulator):
    """401 becomes UnauthorizedError with the hint to check USEAPI_TOKEN."""
    async with api_client(emulator.base_url, token="user:wrong") as client:
        with pytest.raises(UnauthorizedError) as caught:
            await client.get_account(EMAIL)
    assert (caught.value.status, caught.value.api_message) == (401, "Unauthorized")
    assert caught.value.hint == "check USEAPI_TOKEN"


async def test_an_inactive_subscription_is_unauthorized_not_insufficient_credits(start_emulator):
    """402 `Subscription required` is an auth problem, told apart by its text (1.3, E48)."""
    emulator = start_emulator(subscription_active=False)
    async with api_client(emulator.base_url) as client:
        with pytest.raises(UnauthorizedError) as caught:
            await client.create_image(_request())
    assert (caught.value.status, caught.value.api_message) == (402, "Subscription required")
    assert emulator.charges() == []


async def test_a_short_balance_is_insufficient_credits_and_charges_nothing(emulator):
    """402 `Insufficient credits…` becomes InsufficientCreditsError (E17)."""
    emulator.set_balance(EMAIL, 27)
    async with api_client(emulator.base_url) as client:
        with pytest.raises(InsufficientCreditsError) as caught:
            await client.create_image(_request(), image="hero")
        account = await client.get_account(EMAIL)
    assert caught.value.status == 402
    assert caught.value.api_message is not None
    assert caught.value.api_message.startswith("Insufficient credits")
    assert account.credits == 27
    assert emulator.charges() == []


async def test_an_accepted_create_lowers_the_balance_by_the_model_price(emulator):
    """The account's balance reads back 28 lower after a flux image (E40)."""
    async with api_client(emulator.base_url) as client:
        before = (await client.get_account(EMAIL)).credits
        await _created(client, _request())
        after = (await client.get_account(EMAIL)).credits
    assert (before, after) == (10_000, 10_000 - 28)


async def test_unknown_jobs_and_accounts_are_not_found(emulator):
    """404 becomes NotFoundError with the API's prose (E3)."""
    async with api_client(emulator.base_url) as client:
        with pytest.raises(NotFoundError, match="Job not found or has expired"):
            await client.get_job(f"email:{EMAIL}:00000000-0000-4000-8000-000000000000-type:image")
        with pytest.raises(NotFoundError, match="Account configuration not found"):
            await client.get_account("nobody@example.com")


async def test_a_malformed_job_id_is_rejected_by_the_api_not_the_client(emulator):
    """jobIds are opaque to the client; the API judges them (E21)."""
    async with api_client(emulator.base_url) as client:
        with pytest.raises(RejectedError, match="jobId not-a-job is malformed"):
            await client.get_job("not-a-job")


async def test_job_ids_reach_the_api_percent_encoded_and_intact(emulator):
    """A jobId with `:` and `@` round-trips through the encoded path (1.6, E7)."""
    async with api_client(emulator.base_url) as client:
        job_id = await _created(client, _request())
        status = await client.get_job(job_id)
    assert status.job_id == job_id


# -- capacity -----------------------------------------------------------------------------


async def test_a_full_account_answers_429_and_no_job_is_made(start_emulator):
    """maxJobs reached: RateLimitedError after the create retries, Retry-After kept (E18)."""
    emulator = start_emulator(latency_median_s=SLOW_JOBS)
    async with api_client(emulator.base_url) as client:
        await _created(client, _request("ltxr:first", max_jobs=1))
        with pytest.raises(RateLimitedError) as caught:
            await client.create_image(_request("ltxr:second", max_jobs=1), image="hero")
    assert caught.value.retry_after_s == 5.0
    assert caught.value.api_message == f"Account {EMAIL} is executing 1 of 1 jobs, retry later"
    assert emulator.charges_by_reply_ref() == {"ltxr:first": 1}


async def test_a_create_answered_429_is_resent_until_a_slot_frees(start_emulator, caplog):
    """A busy answer is resent with backoff; once a slot frees, one job, one charge."""
    caplog.set_level(logging.INFO, logger="ltx_reconcile.api.client")
    emulator = start_emulator(latency_median_s={"flux": 30.0}, latency_sigma=0.0)
    patient = RetryPolicy(
        safe=FAST_RETRY.safe,
        create_busy=Backoff(attempts=50, first_delay_s=0.002, max_delay_s=0.01),
    )
    async with api_client(emulator.base_url, retry=patient) as client:
        await _created(client, _request("ltxr:first", max_jobs=1))
        await _created(client, _request("ltxr:second", max_jobs=1))
    assert emulator.charges_by_reply_ref() == {"ltxr:first": 1, "ltxr:second": 1}
    assert "retrying create (429)" in caplog.text


async def test_scheduler_lists_running_jobs_with_their_reply_ref(start_emulator):
    """A running job shows in both scheduler views, with capacity counted (2.6, 2.7)."""
    emulator = start_emulator(latency_median_s=SLOW_JOBS)
    async with api_client(emulator.base_url) as client:
        job_id = await _created(client, _request("ltxr:running"))
        entries = await client.scheduler()
        available = await client.scheduler_available()
    assert [(e.job_id, e.reply_ref, e.email) for e in entries] == [(job_id, "ltxr:running", EMAIL)]
    assert entries[0].started is not None
    assert [e.job_id for e in available.executing] == [job_id]
    capacity = available.capacity_for(EMAIL)
    assert capacity is not None
    assert (capacity.max_jobs, capacity.executing, capacity.available) == (20, 1, 19)


# -- assets -------------------------------------------------------------------------------


async def test_listing_pages_through_every_asset_up_to_total_pages(emulator):
    """iter_assets follows meta.totalPages; a page past the end is empty (E23)."""
    async with api_client(emulator.base_url) as client:
        job_ids = [await _created(client, _request(f"ltxr:{n}", seed=n)) for n in range(5)]
        for job_id in job_ids:
            await _done(client, job_id)
        listed = [item async for item in client.iter_assets(EMAIL, limit=2, filter="images")]
        past_end = await client.list_assets(EMAIL, page=4, limit=2)
    assert sorted(item.job_id or "" for item in listed) == sorted(job_ids)
    assert (past_end.items, past_end.meta.total_pages, past_end.meta.total_items) == ([], 3, 5)


async def test_an_uploaded_reference_guides_a_flux_create(emulator, tmp_path):
    """The upload's fileId is accepted as referenceAssetId and the job completes (2.4)."""
    async with api_client(emulator.base_url) as client:
        uploaded = await client.upload_reference(_png(), "image/png", EMAIL)
        assert uploaded.file_id is not None
        assert uploaded.file_id.startswith("asset:")
        job_id = await _created(
            client, _request(reference_asset_id=uploaded.file_id, reference_strength=80)
        )
        await _done(client, job_id)


async def test_an_upload_that_is_not_the_declared_image_is_rejected(emulator):
    """The API's upload validation reaches the user verbatim (E24)."""
    async with api_client(emulator.base_url) as client:
        with pytest.raises(RejectedError) as caught:
            await client.upload_reference(b"not a png", "image/png", EMAIL)
    assert caught.value.api_message == "File is not a valid image/png image"


# -- artifact URLs ------------------------------------------------------------------------


async def test_an_expired_url_is_refused_and_a_fresh_status_read_signs_a_new_one(
    start_emulator, tmp_path
):
    """Storage answers 403 past expiry; get_job signs a fresh URL that downloads (6, E41)."""
    emulator = start_emulator(url_ttl_s=50.0)  # 50 ms of wall clock
    async with api_client(emulator.base_url) as client:
        status = await _done(client, await _created(client, _request()))
        assert status.artifact is not None
        assert status.artifact.asset_url is not None
        expires_ms = status.artifact.expiration_ms or 0
        await asyncio.sleep(max(0.0, (expires_ms + 5) / 1000 - time.time()))
        with pytest.raises(ArtifactUrlExpiredError, match="HTTP 403: Request has expired"):
            await client.download(status.artifact.asset_url, tmp_path)
        fresh = await client.get_job(status.job_id or "")
        assert fresh.artifact is not None
        assert fresh.artifact.asset_url is not None
        download = await client.download(fresh.artifact.asset_url, tmp_path)
    assert download.size_bytes > 0
    assert [p.name for p in tmp_path.iterdir()] == [download.path.name]


async def test_an_early_expiry_fault_is_an_expired_url(emulator, tmp_path):
    """A URL refused before its time is still refreshed the same way (E19)."""
    emulator.set_faults(_faults(FaultRule(FaultKind.EXPIRE_EARLY, endpoint="storage")))
    async with api_client(emulator.base_url) as client:
        status = await _done(client, await _created(client, _request()))
        assert status.artifact is not None
        url = status.artifact.asset_url or ""
        with pytest.raises(ArtifactUrlExpiredError):
            await client.download(url, tmp_path)
        assert (await client.download(url, tmp_path)).size_bytes > 0


async def test_a_truncated_download_is_reported_and_leaves_no_file(emulator, tmp_path):
    """Half the bytes then a cut connection: PartialDownloadError, temp file removed."""
    emulator.set_faults(_faults(FaultRule(FaultKind.TRUNCATE_DOWNLOAD, endpoint="storage")))
    async with api_client(emulator.base_url) as client:
        status = await _done(client, await _created(client, _request()))
        assert status.artifact is not None
        url = status.artifact.asset_url or ""
        with pytest.raises(PartialDownloadError, match="the connection broke after"):
            await client.download(url, tmp_path, image="hero")
        assert list(tmp_path.iterdir()) == []
        assert (await client.download(url, tmp_path)).size_bytes > 0


async def test_a_corrupted_download_is_caught_by_the_png_check(emulator, tmp_path):
    """Flipped bytes at the right length fail a chunk CRC: DownloadError, no file kept."""
    emulator.set_faults(_faults(FaultRule(FaultKind.CORRUPT_DOWNLOAD, endpoint="storage")))
    async with api_client(emulator.base_url) as client:
        status = await _done(client, await _created(client, _request()))
        assert status.artifact is not None
        url = status.artifact.asset_url or ""
        with pytest.raises(DownloadError, match="corrupt PNG") as caught:
            await client.download(url, tmp_path)
        assert not isinstance(caught.value, ArtifactUrlExpiredError)
        assert list(tmp_path.iterdir()) == []
        good = await client.download(url, tmp_path)
    with Image.open(good.path) as picture:
        picture.verify()


async def test_two_downloads_of_one_artifact_have_one_digest(emulator, tmp_path):
    """The bytes behind a fileId never change (E41), whatever URL signs them."""
    async with api_client(emulator.base_url) as client:
        status = await _done(client, await _created(client, _request()))
        fresh = await client.get_job(status.job_id or "")
        assert status.artifact is not None
        assert fresh.artifact is not None
        first = await client.download(status.artifact.asset_url or "", tmp_path)
        second = await client.download(fresh.artifact.asset_url or "", tmp_path)
    assert first.sha256 == second.sha256
    assert first.path != second.path


# -- faults on the create: never pay twice ------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 596])
async def test_an_error_before_acceptance_charges_nothing(emulator, status):
    """429 is resent and accepted; 5xx/596 is unknown to the client, and nothing was charged."""
    emulator.set_faults(
        _faults(FaultRule(FaultKind.STATUS_BEFORE_ACCEPT, endpoint="images/create", status=status))
    )
    async with api_client(emulator.base_url) as client:
        if status == 429:
            await _created(client, _request("ltxr:busy"))
            assert emulator.charges_by_reply_ref() == {"ltxr:busy": 1}
            return
        with pytest.raises(OutcomeUnknownError) as caught:
            await client.create_image(_request())
    assert caught.value.status == status
    assert emulator.charges() == []


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_an_error_after_acceptance_is_outcome_unknown_and_the_job_is_findable(
    start_emulator, status
):
    """The job was charged once and never resent; the scheduler finds it by replyRef (4.5)."""
    emulator = start_emulator(latency_median_s=SLOW_JOBS)
    emulator.set_faults(
        _faults(FaultRule(FaultKind.STATUS_AFTER_ACCEPT, endpoint="images/create", status=status))
    )
    async with api_client(emulator.base_url) as client:
        with pytest.raises(OutcomeUnknownError):
            await client.create_image(_request("ltxr:lost"))
        refs = [entry.reply_ref for entry in await client.scheduler()]
    assert emulator.charges_by_reply_ref() == {"ltxr:lost": 1}
    assert refs == ["ltxr:lost"]


async def test_a_reset_after_acceptance_is_outcome_unknown_and_charged_once(emulator):
    """The connection drops after the job exists: one charge, one request, no resend."""
    emulator.set_faults(_faults(FaultRule(FaultKind.RESET_AFTER_ACCEPT, endpoint="images/create")))
    async with api_client(emulator.base_url) as client:
        with pytest.raises(OutcomeUnknownError, match="answer was lost"):
            await client.create_image(_request("ltxr:reset"))
    assert emulator.charges_by_reply_ref() == {"ltxr:reset": 1}


async def test_a_reset_before_the_request_is_read_is_still_outcome_unknown(emulator):
    """The client cannot tell this reset from a later one, so it never resends (4.4)."""
    emulator.set_faults(_faults(FaultRule(FaultKind.RESET_BEFORE_READ, endpoint="images/create")))
    async with api_client(emulator.base_url) as client:
        with pytest.raises(OutcomeUnknownError):
            await client.create_image(_request())
    assert emulator.charges() == []


async def test_a_create_held_past_the_timeout_is_outcome_unknown_and_charged_once(emulator):
    """An answer held open (job accepted) times out: unknown, never resent."""
    emulator.set_faults(_faults(FaultRule(FaultKind.HOLD, endpoint="images/create", delay_s=0.5)))
    async with api_client(emulator.base_url, timeout_s=0.1) as client:
        with pytest.raises(OutcomeUnknownError, match="ReadTimeout"):
            await client.create_image(_request("ltxr:held"))
    assert emulator.charges_by_reply_ref() == {"ltxr:held": 1}


async def test_a_slow_create_past_the_timeout_is_outcome_unknown(emulator):
    """A slow answer is indistinguishable from a held one: unknown, never resent."""
    emulator.set_faults(_faults(FaultRule(FaultKind.SLOW, endpoint="images/create", delay_s=0.5)))
    async with api_client(emulator.base_url, timeout_s=0.1) as client:
        with pytest.raises(OutcomeUnknownError):
            await client.create_image(_request())


# -- faults on safe requests: retried -----------------------------------------------------


@pytest.mark.parametrize(
    "rule",
    [
        FaultRule(FaultKind.STATUS_BEFORE_ACCEPT, endpoint="assets/status", status=503, times=2),
        FaultRule(FaultKind.STATUS_BEFORE_ACCEPT, endpoint="assets/status", status=429, times=2),
        FaultRule(FaultKind.STATUS_BEFORE_ACCEPT, endpoint="assets/status", status=596, times=2),
        FaultRule(FaultKind.RESET_BEFORE_READ, endpoint="assets/status", times=2),
        FaultRule(FaultKind.SLOW, endpoint="assets/status", delay_s=0.5, times=1),
    ],
    ids=["503", "429", "596", "reset", "slow"],
)
async def test_a_status_read_rides_out_transient_faults(emulator, rule, caplog):
    """GETs are safe: 429, 5xx, resets and timeouts are retried until an answer comes."""
    caplog.set_level(logging.INFO, logger="ltx_reconcile.api.client")
    async with api_client(emulator.base_url, timeout_s=0.2) as client:
        job_id = await _created(client, _request())
        emulator.set_faults(_faults(rule))
        status = await client.get_job(job_id)
    assert status.job_id == job_id
    assert "retrying GET assets/" in caplog.text


@pytest.mark.parametrize(
    ("endpoint", "call"),
    [
        ("assets/list", lambda c: c.list_assets(EMAIL)),
        ("assets/upload", lambda c: c.upload_reference(_png(), "image/png", EMAIL)),
        ("scheduler", lambda c: c.scheduler()),
        ("scheduler/available", lambda c: c.scheduler_available()),
        ("accounts", lambda c: c.get_account(EMAIL)),
    ],
)
async def test_every_safe_endpoint_is_retried_through_a_5xx(emulator, endpoint, call, caplog):
    """Listing, upload, scheduler and account reads all retry a transient 502."""
    caplog.set_level(logging.INFO, logger="ltx_reconcile.api.client")
    emulator.set_faults(
        _faults(FaultRule(FaultKind.STATUS_BEFORE_ACCEPT, endpoint=endpoint, status=502, times=2))
    )
    async with api_client(emulator.base_url) as client:
        assert await call(client) is not None
    assert caplog.text.count("retrying") == 2


async def test_random_faults_on_reads_never_break_a_whole_lifecycle(start_emulator, tmp_path):
    """With 30% of reads failing at random, status reads and listing still succeed."""
    emulator = start_emulator(latency_median_s=QUICK_JOBS)
    patient = RetryPolicy(
        safe=Backoff(attempts=30, first_delay_s=0.001, max_delay_s=0.003),
        create_busy=FAST_RETRY.create_busy,
    )
    async with api_client(emulator.base_url, retry=patient) as client:
        job_id = await _created(client, _request("ltxr:noisy"))
        emulator.set_faults(
            FaultConfig(seed=7, status_before_accept_rate=0.3, reset_before_read_rate=0.1)
        )
        await _done(client, job_id)
        listed = [item.job_id async for item in client.iter_assets(EMAIL)]
    assert listed == [job_id]
    assert emulator.charges_by_reply_ref() == {"ltxr:noisy": 1}


# -- webhooks -----------------------------------------------------------------------------


async def test_webhook_bodies_read_as_job_status_even_when_duplicated(emulator, scripted):
    """The webhook body is the status model (contract 5); a duplicate reads the same."""
    scripted.queue(Canned(status=204), Canned(status=204))
    emulator.set_faults(_faults(FaultRule(FaultKind.DUPLICATE_WEBHOOK, endpoint="images/create")))
    async with api_client(emulator.base_url) as client:
        job_id = await _created(client, _request("ltxr:hook", reply_url=f"{scripted.origin}/hook"))
        await _done(client, job_id)
        for _ in range(1000):
            if len(scripted.received) >= 2:
                break
            await asyncio.sleep(0.005)
    bodies = [JobStatus.model_validate(json.loads(r.body)) for r in scripted.received]
    assert len(bodies) == 2
    assert bodies[0] == bodies[1]
    assert (bodies[0].job_id, bodies[0].reply_ref, bodies[0].is_done) == (job_id, "ltxr:hook", True)
    assert "authorization" not in scripted.received[0].headers
