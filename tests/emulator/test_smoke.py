"""The contract's own example request, end to end over real HTTP."""

from __future__ import annotations

import io

import httpx
from PIL import Image

from ltx_reconcile.emulator.server import RunningEmulator
from testing.emulator import wait_for_status

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


def test_example_request_as_json_yields_a_1280_by_720_png(
    emulator: RunningEmulator, client: httpx.Client
):
    """Section 2.1's example, sent as JSON, creates a job whose artifact is a 16:9 PNG."""
    created = client.post("/images/create", json=EXAMPLE)
    assert created.status_code == 200
    assert set(created.json()) == {"jobId", "generationId"}
    body = wait_for_status(client, created.json()["jobId"])
    assert body["code"] == 200
    assert body["replyRef"] == EXAMPLE["replyRef"]
    download = httpx.get(body["status"]["artifact"]["assetUrl"])
    assert download.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(download.content)).size == (1280, 720)
