"""The client against a scripted server: exact answers and exact transport failures.

These cover the status codes and failures the faithful emulator never produces (412, HTML
error pages, garbled bodies, a refused connection) and pin what goes on the wire.
"""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from ltx_reconcile.api import (
    ApiClient,
    ArtifactUrlExpiredError,
    Backoff,
    CreateImageRequest,
    JobCreated,
    JobStatus,
    PartialDownloadError,
    RetryPolicy,
)
from ltx_reconcile.errors import (
    DownloadError,
    InsufficientCreditsError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    RejectedError,
    ServerError,
    TransportError,
    UnauthorizedError,
)

from .conftest import Canned

pytestmark = pytest.mark.anyio

TOKEN = "user:12345-scripted-token"
EMAIL = "user@example.com"
JOB_ID = f"email:{EMAIL}:7a34b821-9fd0-205e-d21b-4abc6f7839e7-type:image"
FAST = RetryPolicy(
    safe=Backoff(attempts=3, first_delay_s=0.001, max_delay_s=0.005),
    create_busy=Backoff(attempts=3, first_delay_s=0.001, max_delay_s=0.005),
)
REQUEST = CreateImageRequest(email=EMAIL, prompt="a lighthouse", seed=7, reply_ref="ltxr:1")


def _client(origin: str, **kwargs) -> ApiClient:
    kwargs.setdefault("retry", FAST)
    kwargs.setdefault("timeout_s", 2.0)
    return ApiClient(origin + "/v1/ltxstudio", TOKEN, **kwargs)


def _json(status: int, body: object, *headers: tuple[str, str]) -> Canned:
    return Canned(
        status=status,
        body=json.dumps(body).encode(),
        headers=(("Content-Type", "application/json"), *headers),
    )


def _error(status: int, text: str) -> Canned:
    return _json(status, {"error": text, "code": status})


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 20), (200, 10, 10)).save(buffer, format="PNG")
    return buffer.getvalue()


CREATED = _json(200, {"jobId": JOB_ID, "generationId": "gen_0123456789ab"})


async def test_create_sends_the_json_body_with_the_token_only_in_the_header(scripted):
    """The body is the wire form of the request; the token rides in Authorization only."""
    scripted.queue(CREATED)
    async with _client(scripted.origin) as client:
        created = await client.create_image(REQUEST, image="hero")
    assert created == JobCreated(job_id=JOB_ID, generation_id="gen_0123456789ab")
    (received,) = scripted.received
    assert received.request_line == "POST /v1/ltxstudio/images/create HTTP/1.1"
    assert received.headers["authorization"] == f"Bearer {TOKEN}"
    assert received.headers["content-type"] == "application/json"
    assert json.loads(received.body) == {
        "email": EMAIL,
        "prompt": "a lighthouse",
        "seed": 7,
        "replyRef": "ltxr:1",
    }


async def test_a_create_answered_with_a_status_body_is_read_as_the_job_status(scripted):
    """A pollForResult create that finished answers the status model (contract 2.1, E16)."""
    scripted.queue(
        _json(200, {"status": {"type": "failed", "message": "boom"}, "jobId": JOB_ID, "code": 200})
    )
    async with _client(scripted.origin) as client:
        answer = await client.create_image(REQUEST.model_copy(update={"poll_for_result": 1}))
    assert isinstance(answer, JobStatus)
    assert answer.is_failed


async def test_job_ids_are_percent_encoded_in_the_path(scripted):
    """`:` and `@` in a jobId are encoded as `quote(job_id, safe='')` does (contract 1.6)."""
    scripted.queue(_json(200, {"status": {"type": "active", "progress": 5}, "jobId": JOB_ID}))
    async with _client(scripted.origin) as client:
        status = await client.get_job(JOB_ID)
    assert status.status.progress == 5
    assert scripted.received[0].request_line == (
        "GET /v1/ltxstudio/assets/email%3Auser%40example.com%3A"
        "7a34b821-9fd0-205e-d21b-4abc6f7839e7-type%3Aimage HTTP/1.1"
    )


@pytest.mark.parametrize(
    ("canned", "error_type", "api_message"),
    [
        (_error(400, "seed must be an integer"), RejectedError, "seed must be an integer"),
        (_error(401, "Unauthorized"), UnauthorizedError, "Unauthorized"),
        (_error(402, "Subscription required"), UnauthorizedError, "Subscription required"),
        (
            _error(402, "Insufficient credits: model flux costs 28, account a has 3"),
            InsufficientCreditsError,
            "Insufficient credits: model flux costs 28, account a has 3",
        ),
        (Canned(status=412), InsufficientCreditsError, None),
        (
            _error(404, "Job not found or has expired"),
            NotFoundError,
            "Job not found or has expired",
        ),
        (
            Canned(status=404, body=b"Job not found.", headers=(("Content-Type", "text/plain"),)),
            NotFoundError,
            "Job not found.",
        ),
        (_error(409, "Conflict"), RejectedError, "Conflict"),
    ],
)
async def test_each_refusal_maps_to_its_error_with_the_api_text(
    scripted, canned, error_type, api_message
):
    """Permanent answers are not retried and carry the status and the API's own text."""
    scripted.queue(canned)
    async with _client(scripted.origin) as client:
        with pytest.raises(error_type) as caught:
            await client.get_job(JOB_ID, image="specs/a.yaml#hero")
    assert len(scripted.received) == 1
    assert (caught.value.status, caught.value.api_message) == (canned.status, api_message)
    assert caught.value.image == "specs/a.yaml#hero"
    assert str(caught.value).startswith(f"specs/a.yaml#hero: reading job {JOB_ID}: ")
    if api_message is not None:
        assert api_message in str(caught.value)


async def test_the_same_refusals_on_a_create_are_permanent_too(scripted):
    """A create answered 400/401/402 is reported at once, never resent (contract 4.4)."""
    scripted.queue(_error(402, "Insufficient credits: model flux costs 28, account a has 3"))
    async with _client(scripted.origin) as client:
        with pytest.raises(InsufficientCreditsError, match=r"^hero: creating the image: "):
            await client.create_image(REQUEST, image="hero")
    assert len(scripted.received) == 1


async def test_a_get_is_retried_through_429_and_5xx_until_it_succeeds(scripted):
    """Transient answers to a safe request are retried with backoff (contract 4.4)."""
    scripted.queue(
        _error(429, "busy"),
        Canned(
            status=502, body=b"<html>Bad Gateway</html>", headers=(("Content-Type", "text/html"),)
        ),
        _json(200, {"status": {"type": "active"}}),
    )
    async with _client(scripted.origin) as client:
        status = await client.get_job(JOB_ID)
    assert status.status.type == "active"
    assert len(scripted.received) == 3


async def test_a_get_that_keeps_failing_raises_server_error_after_the_last_attempt(scripted):
    """After `attempts` tries a 5xx becomes ServerError quoting the body's start."""
    page = Canned(
        status=502, body=b"<html>Bad Gateway</html>", headers=(("Content-Type", "text/html"),)
    )
    scripted.queue(page, page, page)
    async with _client(scripted.origin) as client:
        with pytest.raises(
            ServerError, match="HTTP 502 after 3 attempts: <html>Bad Gateway"
        ) as caught:
            await client.scheduler()
    assert caught.value.status == 502
    assert len(scripted.received) == 3


async def test_a_get_rate_limited_to_the_end_raises_rate_limited_with_retry_after(scripted):
    """The last 429 surfaces as RateLimitedError carrying the server's Retry-After."""
    busy = _json(429, {"error": "slow down", "code": 429}, ("Retry-After", "5"))
    scripted.queue(busy, busy, busy)
    async with _client(scripted.origin) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.scheduler_available()
    assert (caught.value.retry_after_s, caught.value.api_message) == (5.0, "slow down")


async def test_a_create_answered_5xx_is_outcome_unknown_and_never_resent(scripted):
    """A 5xx/596 may hide an accepted, paid job: one request, then OutcomeUnknownError."""
    for status in (500, 502, 503, 596):
        scripted.queue(_error(status, "upstream"))
        async with _client(scripted.origin) as client:
            with pytest.raises(OutcomeUnknownError, match=f"HTTP {status}") as caught:
                await client.create_image(REQUEST, image="hero")
        assert caught.value.status == status
    assert len(scripted.received) == 4


async def test_a_create_whose_connection_closes_after_sending_is_outcome_unknown(scripted):
    """A reset after the request went out means it may have been accepted: never resent."""
    scripted.queue(Canned(close_before_answer=True), CREATED)
    async with _client(scripted.origin) as client:
        with pytest.raises(OutcomeUnknownError, match="answer was lost") as caught:
            await client.create_image(REQUEST, image="hero")
    assert len(scripted.received) == 1
    assert caught.value.hint is not None
    assert "replyRef" in caught.value.hint


async def test_a_create_that_times_out_after_sending_is_outcome_unknown(scripted):
    """A read timeout on a create is a lost answer, not a retry."""
    scripted.queue(Canned(delay_s=0.5, body=b"{}"), CREATED)
    async with _client(scripted.origin, timeout_s=0.1) as client:
        with pytest.raises(OutcomeUnknownError, match="ReadTimeout"):
            await client.create_image(REQUEST)
    assert len(scripted.received) == 1


async def test_a_pollforresult_create_gets_a_timeout_covering_the_wait(scripted):
    """With pollForResult the read timeout covers pollForResult x step + 10 s (E47)."""
    scripted.queue(Canned(delay_s=0.3, body=CREATED.body))
    async with _client(scripted.origin, timeout_s=0.1, poll_step_s=0.001) as client:
        answer = await client.create_image(REQUEST.model_copy(update={"poll_for_result": 1}))
    assert isinstance(answer, JobCreated)


async def test_a_create_that_cannot_connect_is_retried_then_transport_error(closed_port_origin):
    """Nothing was sent when the connection is refused, so even a create may be retried."""
    async with _client(closed_port_origin) as client:
        with pytest.raises(TransportError, match="after 3 attempts") as caught:
            await client.create_image(REQUEST, image="hero")
    assert not isinstance(caught.value, OutcomeUnknownError)
    assert caught.value.image == "hero"


async def test_a_create_answered_429_is_resent_and_then_accepted(scripted):
    """429 proves no job was made, so the create is resent, same body, same replyRef."""
    scripted.queue(_error(429, "Account a is executing 1 of 1 jobs, retry later"), CREATED)
    async with _client(scripted.origin) as client:
        created = await client.create_image(REQUEST)
    assert isinstance(created, JobCreated)
    first, second = scripted.received
    assert first.body == second.body


async def test_a_create_still_busy_after_its_retries_raises_rate_limited(scripted):
    """When every try is 429 the caller gets RateLimitedError, with no job made."""
    busy = _error(429, "Account a is executing 1 of 1 jobs, retry later")
    scripted.queue(busy, busy, busy)
    async with _client(scripted.origin) as client:
        with pytest.raises(RateLimitedError, match="executing 1 of 1"):
            await client.create_image(REQUEST)
    assert len(scripted.received) == 3


async def test_a_create_accepted_with_an_unreadable_body_is_outcome_unknown(scripted):
    """A 200 without a jobId means a paid job nobody can follow: say so, do not resend."""
    scripted.queue(Canned(status=200, body=b"<html>ok</html>"))
    async with _client(scripted.origin) as client:
        with pytest.raises(OutcomeUnknownError, match="no readable jobId"):
            await client.create_image(REQUEST)


async def test_a_get_answered_with_an_unreadable_body_is_a_server_error(scripted):
    """A 200 that does not match the contract is a ServerError, not a crash."""
    scripted.queue(_json(200, {"status": {"type": "exploded"}}))
    async with _client(scripted.origin) as client:
        with pytest.raises(ServerError, match="does not match the contract"):
            await client.get_job(JOB_ID)


async def test_upload_sends_raw_bytes_with_their_mime_and_the_query(scripted):
    """The upload body is the file itself; email and type travel in the query (2.4)."""
    scripted.queue(
        _json(
            200,
            {
                "assetUrl": f"{scripted.origin}/storage/u",
                "expirationDateString": "1759762931412",
                "asset": {"type": "image", "fileId": "asset:3b18-type:image/png"},
            },
        )
    )
    async with _client(scripted.origin) as client:
        uploaded = await client.upload_reference(b"\x89PNG...", "image/png", EMAIL)
    assert uploaded.file_id == "asset:3b18-type:image/png"
    (received,) = scripted.received
    assert received.request_line == (
        "POST /v1/ltxstudio/assets/?email=user%40example.com&type=reference-image HTTP/1.1"
    )
    assert (received.headers["content-type"], received.body) == ("image/png", b"\x89PNG...")


async def test_an_upload_whose_answer_is_lost_is_retried(scripted):
    """Uploads are free, so a lost answer is retried like a GET (contract 4.4)."""
    scripted.queue(Canned(close_before_answer=True), _json(200, {"asset": {"fileId": "asset:x"}}))
    async with _client(scripted.origin) as client:
        uploaded = await client.upload_reference(b"x", "image/png", EMAIL)
    assert uploaded.file_id == "asset:x"
    assert len(scripted.received) == 2


async def test_download_never_sends_the_token_even_to_the_api_origin(scripted, tmp_path):
    """Storage URLs get no Authorization header, whatever their origin (contract 6)."""
    png = _png()
    scripted.queue(Canned(body=png, headers=(("Content-Type", "image/png"),)))
    async with _client(scripted.origin) as client:
        download = await client.download(
            f"{scripted.origin}/v1/ltxstudio/storage/a.png?X-Goog-Signature=s",
            tmp_path,
            expected_size=len(png),
        )
    assert "authorization" not in scripted.received[0].headers
    assert download.path.read_bytes() == png
    assert download.path.parent == tmp_path
    assert download.size_bytes == len(png)
    assert download.mime_type == "image/png"


async def test_a_body_shorter_than_its_content_length_is_a_partial_download(scripted, tmp_path):
    """A connection cut mid-body is reported, and no temp file is left behind."""
    png = _png()
    scripted.queue(
        Canned(
            body=png[: len(png) // 2],
            declared_length=len(png),
            headers=(("Content-Type", "image/png"),),
        )
    )
    async with _client(scripted.origin) as client:
        with pytest.raises(PartialDownloadError, match=f"of {len(png)} bytes"):
            await client.download(f"{scripted.origin}/storage/a.png", tmp_path, image="hero")
    assert list(tmp_path.iterdir()) == []


async def test_a_size_other_than_expected_is_a_download_error(scripted, tmp_path):
    """The caller's expected size is checked against what storage declares."""
    png = _png()
    scripted.queue(Canned(body=png, headers=(("Content-Type", "image/png"),)))
    async with _client(scripted.origin) as client:
        with pytest.raises(DownloadError, match=f"declares {len(png)} bytes, not 3"):
            await client.download(f"{scripted.origin}/storage/a.png", tmp_path, expected_size=3)
    assert list(tmp_path.iterdir()) == []


async def test_a_corrupted_png_is_a_download_error(scripted, tmp_path):
    """A flipped byte fails a chunk CRC, although the size is right."""
    png = bytearray(_png())
    png[40] ^= 0xFF
    scripted.queue(Canned(body=bytes(png), headers=(("Content-Type", "image/png"),)))
    async with _client(scripted.origin) as client:
        with pytest.raises(DownloadError, match="corrupt PNG: chunk") as caught:
            await client.download(f"{scripted.origin}/storage/a.png", tmp_path)
    assert not isinstance(caught.value, ArtifactUrlExpiredError)
    assert list(tmp_path.iterdir()) == []


async def test_storage_403_asks_for_a_fresh_url_and_hides_the_signature(scripted, tmp_path):
    """An expired URL raises ArtifactUrlExpiredError; the message omits the signed query."""
    scripted.queue(
        Canned(status=403, body=b"Request has expired", headers=(("Content-Type", "text/plain"),))
    )
    async with _client(scripted.origin) as client:
        with pytest.raises(
            ArtifactUrlExpiredError, match="HTTP 403: Request has expired"
        ) as caught:
            await client.download(
                f"{scripted.origin}/storage/a.png?X-Goog-Signature=secret-sig", tmp_path
            )
    assert "secret-sig" not in str(caught.value)
    assert len(scripted.received) == 1


async def test_storage_400_from_the_token_guard_is_a_refused_url_and_not_retried(
    scripted, tmp_path
):
    """E41's 400 (`Authorization` sent to storage) is a 4xx: refresh, never repeat as is."""
    message = b"Authorization header must not be sent to storage URLs"
    scripted.queue(Canned(status=400, body=message, headers=(("Content-Type", "text/plain"),)))
    async with _client(scripted.origin) as client:
        with pytest.raises(ArtifactUrlExpiredError) as caught:
            await client.download(f"{scripted.origin}/storage/a.png", tmp_path, image="hero")
    assert (caught.value.status, caught.value.api_message) == (400, message.decode())
    assert str(caught.value) == (
        "hero: downloading the artifact: storage answered HTTP 400: " + message.decode()
    )
    assert [r.headers.get("authorization") for r in scripted.received] == [None]
    assert list(tmp_path.iterdir()) == []


async def test_storage_5xx_is_retried(scripted, tmp_path):
    """A transient storage failure is retried like any GET."""
    png = _png()
    scripted.queue(
        Canned(status=503, body=b"later", headers=(("Content-Type", "text/plain"),)),
        Canned(body=png, headers=(("Content-Type", "image/png"),)),
    )
    async with _client(scripted.origin) as client:
        download = await client.download(f"{scripted.origin}/storage/a.png", tmp_path)
    assert download.size_bytes == len(png)
