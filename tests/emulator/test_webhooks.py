"""Webhooks to `replyUrl` (section 5, E39, E28, E19), received by a real HTTP server.

The receiver (`testing.emulator.webhook_receiver`) is an `http.server` on loopback in its
own thread: the emulator's notifications cross a real socket, as they would in production.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from PIL import Image

from ltx_reconcile.emulator.config import FaultConfig, FaultKind, FaultRule
from ltx_reconcile.emulator.jobs import FAILURE_MESSAGES
from ltx_reconcile.emulator.server import RunningEmulator
from testing.emulator import (
    WebhookReceiver,
    api_client,
    fetch,
    running_emulator,
    wait_for_status,
    wait_until,
    webhook_receiver,
)

SLOW_JOBS = {"flux": 500.0, "flux-premium": 500.0, "nano-banana": 500.0}
"""About 500 ms of wall clock: long enough to cancel a job before it ends."""


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A real webhook receiver on loopback."""
    with webhook_receiver() as running:
        yield running


def _create(client: httpx.Client, **fields: object) -> str:
    response = client.post("/images/create", json={"prompt": "a lighthouse", **fields})
    assert response.status_code == 200, response.text
    return str(response.json()["jobId"])


def _notified(emulator: RunningEmulator, job_id: str) -> bool:
    """Whether the emulator has delivered, or given up on, the job's notification."""
    job = emulator.state.job(job_id)
    return job is not None and job.webhook_done


def _without_urls(body: dict[str, object]) -> dict[str, object]:
    """The body with its signed URL and expiry removed: each body signs a fresh one (E41)."""
    status = dict(body["status"])  # type: ignore[call-overload]
    if "artifact" in status:
        status["artifact"] = {**status["artifact"], "assetUrl": "", "expirationDateString": ""}
    return {**body, "status": status}


def test_a_completed_job_posts_its_status_body_once(emulator, client, receiver):
    """One JSON POST: the GET assets/{jobId} body with artifact, replyRef, replyUrl, code."""
    reply_url = f"{receiver.url}/ltx-callback?source=test"
    job_id = _create(client, replyUrl=reply_url, replyRef="ltxr:hook", aspectRatio="1:1")
    (delivery,) = receiver.wait_for(1)
    wait_until(lambda: _notified(emulator, job_id))
    polled = wait_for_status(client, job_id)
    body = delivery.json()
    assert (delivery.method, delivery.path) == ("POST", "/ltx-callback?source=test")
    assert delivery.headers["content-type"] == "application/json"
    assert delivery.headers["user-agent"] == "ltx-emulator-webhook/1"
    assert "authorization" not in delivery.headers
    assert set(body) == {"status", "jobId", "replyRef", "replyUrl", "code"}
    assert (body["jobId"], body["replyRef"], body["replyUrl"], body["code"]) == (
        job_id,
        "ltxr:hook",
        reply_url,
        200,
    )
    assert (body["status"]["type"], body["status"]["progress"]) == ("completed", 100)
    assert body["status"]["artifact"]["asset"]["mimeType"] == "image/png"
    assert _without_urls(body) == _without_urls(polled)
    picture = fetch(body["status"]["artifact"]["assetUrl"])
    assert Image.open(io.BytesIO(picture.content)).size == (1024, 1024)
    assert len(receiver.received()) == 1


def test_the_webhook_carries_the_artifact_even_while_status_reads_lag(receiver):
    """E34: status reads may lack assetUrl after completion; the webhook never does."""
    with running_emulator(artifact_lag_reads=50) as emulator, api_client(emulator) as client:
        job_id = _create(client, replyUrl=receiver.url)
        (delivery,) = receiver.wait_for(1)
        read = client.get(f"/assets/{job_id}").json()
    assert "artifact" in delivery.json()["status"]
    assert read["status"]["type"] == "completed"
    assert "artifact" not in read["status"]


def test_a_failed_job_notifies_with_the_failed_status(receiver):
    """A failure is terminal too: one POST with status failed and its message (E36)."""
    faults = FaultConfig(rules=(FaultRule(FaultKind.FAIL_JOB),))
    with running_emulator(faults=faults) as emulator, api_client(emulator) as client:
        job_id = _create(client, replyUrl=receiver.url)
        (delivery,) = receiver.wait_for(1)
    status = delivery.json()["status"]
    assert delivery.json()["jobId"] == job_id
    assert status["type"] == "failed"
    assert status["message"] in FAILURE_MESSAGES
    assert "artifact" not in status


def test_non_2xx_answers_are_retried_three_times_after_scaled_delays(emulator, client, receiver):
    """E39: after a failure, retries 1 s, 5 s and 25 s later, times time_scale (0.001)."""
    receiver.answer_with(500, 503, 404)
    job_id = _create(client, replyUrl=receiver.url, replyRef="ltxr:retry")
    deliveries = receiver.wait_for(4)
    wait_until(lambda: _notified(emulator, job_id))
    times = [d.received_s for d in deliveries]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert [d.answered for d in receiver.received()] == [500, 503, 404, 204]
    assert len({d.body for d in deliveries}) == 1
    assert gaps[0] >= 0.001
    assert gaps[1] >= 0.005
    assert gaps[2] >= 0.025
    # Unscaled, the second retry alone would wait 5 s.
    assert times[-1] - times[0] < 5.0


def test_a_receiver_that_always_fails_gets_four_attempts_in_all(emulator, client, receiver):
    """E39: the first attempt and three retries, then the sender gives up."""
    receiver.answer_with(500, 500, 500, 500, 500)
    job_id = _create(client, replyUrl=receiver.url)
    wait_until(lambda: _notified(emulator, job_id))
    assert [d.answered for d in receiver.received()] == [500] * 4


def test_an_answer_slower_than_the_webhook_timeout_is_retried(receiver):
    """E39: only a 2xx within the timeout counts as delivered."""
    with (
        running_emulator(webhook_timeout_s=0.05) as emulator,
        api_client(emulator) as client,
    ):
        receiver.answer_with(204, delay_s=0.3)
        job_id = _create(client, replyUrl=receiver.url)
        deliveries = receiver.wait_for(2)
        wait_until(lambda: _notified(emulator, job_id))
    assert deliveries[0].body == deliveries[1].body


def test_an_unreachable_receiver_is_given_up_without_harm(emulator, client):
    """Connection refused counts as a failed attempt; the job itself is unaffected."""
    with webhook_receiver() as gone:
        dead_url = gone.url
    job_id = _create(client, replyUrl=dead_url)
    wait_until(lambda: _notified(emulator, job_id))
    assert wait_for_status(client, job_id)["status"]["type"] == "completed"


def test_a_cancelled_job_sends_no_webhook(receiver):
    """E28: after DELETE scheduler/{jobId} no notification is sent; an uncancelled twin is."""
    with (
        running_emulator(latency_median_s=SLOW_JOBS, latency_sigma=0.0) as emulator,
        api_client(emulator) as client,
    ):
        cancelled = _create(client, replyUrl=f"{receiver.url}/cancelled")
        kept = _create(client, replyUrl=f"{receiver.url}/kept")
        assert client.delete(f"/scheduler/{quote(cancelled, safe='')}").status_code == 204
        wait_until(lambda: _notified(emulator, cancelled) and _notified(emulator, kept))
        finished = wait_for_status(client, cancelled)
    assert [d.path for d in receiver.received()] == ["/kept"]
    assert finished["status"]["type"] == "completed"


def test_a_duplicate_webhook_fault_delivers_the_same_body_twice(receiver):
    """E19: a deliberate duplicate, for the job its rule names by replyRef only."""
    rule = FaultRule(FaultKind.DUPLICATE_WEBHOOK, reply_ref_contains="twice")
    with (
        running_emulator(faults=FaultConfig(rules=(rule,))) as emulator,
        api_client(emulator) as client,
    ):
        twice = _create(client, replyUrl=f"{receiver.url}/twice", replyRef="ltxr:twice")
        once = _create(client, replyUrl=f"{receiver.url}/once", replyRef="ltxr:once")
        wait_until(lambda: _notified(emulator, twice) and _notified(emulator, once))
    by_path: dict[str, list[bytes]] = {}
    for delivery in receiver.received():
        by_path.setdefault(delivery.path, []).append(delivery.body)
    assert len(by_path["/twice"]) == 2
    assert by_path["/twice"][0] == by_path["/twice"][1]
    assert len(by_path["/once"]) == 1


def test_no_reply_url_means_no_notification(emulator, client, receiver):
    """Without replyUrl nothing is sent, and nothing is owed."""
    job_id = _create(client, replyRef="ltxr:quiet")
    wait_for_status(client, job_id)
    assert receiver.received() == []
    assert emulator.state.pending_webhooks() == []
