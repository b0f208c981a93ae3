"""The contract's own example request (2.1), end to end over real HTTP, as JSON and as a form.

A plain httpx client plays the caller, so these tests read the emulator exactly as the
contract's examples show the service: documented shapes, documented values.
"""

from __future__ import annotations

import io
import re

import httpx
import pytest
from PIL import Image, PngImagePlugin

from ltx_reconcile.emulator.server import RunningEmulator
from testing.emulator import fetch, wait_for_status, webhook_receiver

EXAMPLE = {
    "email": "user@example.com",
    "prompt": "A serene mountain landscape at sunset",
    "aspectRatio": "16:9",
    "style": "cinematic",
    "shotType": "wide shot",
    "shotAngle": "eye-level",
    "seed": 123456,
    "replyRef": "ltxr:0b6c4a4e-3f7e-4f3a-9d0e-5a1f2b3c4d5e",
}
JOB_ID = re.compile(
    r"email:user@example\.com:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
    r"-type:image"
)
FILE_ID = re.compile(r"asset:[0-9a-f-]{36}-type:image/png")


def _send(client: httpx.Client, body: dict[str, object], encoding: str) -> httpx.Response:
    if encoding == "json":
        return client.post("/images/create", json=body)
    # In a form every value is a string; numbers travel as decimal strings (1.4).
    return client.post("/images/create", files={k: (None, str(v)) for k, v in body.items()})


def _assert_completed_status_shape(body: dict[str, object], job_id: str, reply_url: bool) -> None:
    """The 2.1/2.2 completed example: status with artifact, jobId, replyRef(, replyUrl), code."""
    expected_keys = {"status", "jobId", "replyRef", "code"} | ({"replyUrl"} if reply_url else set())
    assert set(body) == expected_keys
    assert (body["jobId"], body["replyRef"], body["code"]) == (job_id, EXAMPLE["replyRef"], 200)
    status = body["status"]
    assert isinstance(status, dict)
    assert set(status) == {"type", "progress", "artifact"}
    assert (status["type"], status["progress"]) == ("completed", 100)
    artifact = status["artifact"]
    assert set(artifact) == {"assetUrl", "expirationDateString", "asset"}
    assert re.fullmatch(r"\d{13}", artifact["expirationDateString"])
    assert "/storage/lt-infinity-prd/artifacts/vertex-ai/" in artifact["assetUrl"]
    asset = artifact["asset"]
    assert set(asset) == {"type", "fileId", "mimeType", "artifactSubtype"}
    assert (asset["type"], asset["mimeType"], asset["artifactSubtype"]) == (
        "artifact",
        "image/png",
        "vertex-ai",
    )
    assert FILE_ID.fullmatch(asset["fileId"])


def _assert_is_the_example_png(url: str) -> None:
    download = fetch(url)
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/png"
    assert int(download.headers["content-length"]) == len(download.content)
    with Image.open(io.BytesIO(download.content)) as picture:
        assert isinstance(picture, PngImagePlugin.PngImageFile)
        assert picture.size == (1280, 720)
        # E44: the text chunks hold the generation inputs only, no jobId or time.
        assert picture.text["prompt"] == EXAMPLE["prompt"]
        assert picture.text["seed"] == "123456"
        assert "jobId" not in picture.text


@pytest.mark.parametrize("encoding", ["json", "multipart"])
def test_example_request_yields_the_documented_shapes_and_a_1280_by_720_png(
    emulator: RunningEmulator, client: httpx.Client, encoding: str
):
    """Section 2.1's example creates a job; polling it gives 2.2's completed model."""
    created = _send(client, EXAMPLE, encoding)
    assert created.status_code == 200
    assert set(created.json()) == {"jobId", "generationId"}
    job_id = created.json()["jobId"]
    assert JOB_ID.fullmatch(job_id)
    assert re.fullmatch(r"gen_[0-9a-f]{12}", created.json()["generationId"])
    body = wait_for_status(client, job_id)
    _assert_completed_status_shape(body, job_id, reply_url=False)
    _assert_is_the_example_png(body["status"]["artifact"]["assetUrl"])
    assert [e.reply_ref for e in emulator.charges()] == [EXAMPLE["replyRef"]]


def test_json_and_multipart_examples_draw_the_same_picture(client: httpx.Client):
    """E44: the same inputs and seed give the same bytes, whichever encoding carried them."""
    pictures = []
    for encoding in ("json", "multipart"):
        job_id = _send(client, EXAMPLE, encoding).json()["jobId"]
        pictures.append(fetch(wait_for_status(client, job_id)["status"]["artifact"]["assetUrl"]))
    assert pictures[0].content == pictures[1].content


@pytest.mark.parametrize("encoding", ["json", "multipart"])
def test_example_with_poll_for_result_answers_the_status_model_itself(
    client: httpx.Client, encoding: str
):
    """2.1: with pollForResult the create answers the completed model with replyRef,
    replyUrl and code (the Seed's pollForResult example)."""
    with webhook_receiver() as receiver:
        reply_url = f"{receiver.url}/ltx-callback"
        answer = _send(client, {**EXAMPLE, "pollForResult": 20, "replyUrl": reply_url}, encoding)
        (notification,) = receiver.wait_for(1)
    assert answer.status_code == 200
    result = answer.json()
    assert result["replyUrl"] == reply_url
    assert notification.json()["jobId"] == result["jobId"]
    _assert_completed_status_shape(result, result["jobId"], reply_url=True)
    assert JOB_ID.fullmatch(result["jobId"])
    _assert_is_the_example_png(result["status"]["artifact"]["assetUrl"])
