"""Job lifecycle: progress, artifact lag, failures, retention, pollForResult, ledger, credits."""

from __future__ import annotations

import io
import threading
from urllib.parse import quote

import httpx
import pytest
from PIL import Image

from ltx_reconcile.emulator.config import FaultConfig, FaultKind, FaultRule
from ltx_reconcile.emulator.jobs import FAILURE_MESSAGES
from ltx_reconcile.emulator.ledger import LedgerKind
from testing.emulator import api_client, fetch, running_emulator, wait_for_status, wait_until

SLOW_JOBS = {"flux": 200.0, "flux-premium": 200.0, "nano-banana": 200.0}
"""With time_scale 0.001, jobs of about 200 ms: long enough to watch, short enough to wait."""
LONG_JOBS = {"flux": 20_000.0, "flux-premium": 20_000.0, "nano-banana": 20_000.0}
"""About 20 s: jobs that stay active for the whole test."""


def _create(client: httpx.Client, **fields: object) -> str:
    response = client.post("/images/create", json={"prompt": "a lighthouse", **fields})
    assert response.status_code == 200, response.text
    return str(response.json()["jobId"])


def test_progress_rises_in_steps_of_five_and_ends_at_100():
    """E33: integer progress, never decreasing, multiples of 5, at most 99 while active."""
    with (
        running_emulator(latency_median_s=SLOW_JOBS, artifact_lag_reads=0) as emulator,
        api_client(emulator) as client,
    ):
        job_id = _create(client)
        seen: list[tuple[str, int]] = []

        def finished() -> bool:
            status = client.get(f"/assets/{job_id}").json()["status"]
            seen.append((status["type"], status["progress"]))
            return status["type"] == "completed"

        wait_until(finished)
    progresses = [p for _, p in seen]
    assert progresses == sorted(progresses)
    assert all(p % 5 == 0 and p <= 99 for t, p in seen if t == "active")
    assert seen[-1] == ("completed", 100)
    assert len({p for t, p in seen if t == "active"}) > 2


def test_the_first_read_after_completion_has_no_artifact(client):
    """E34: `completed` can come before `assetUrl`; the next read carries it."""
    job_id = _create(client)
    first = wait_for_status(client, job_id, want_artifact=False)
    second = client.get(f"/assets/{job_id}").json()
    assert first["status"] == {"type": "completed", "progress": 100}
    assert set(second["status"]["artifact"]) == {"assetUrl", "expirationDateString", "asset"}


def test_artifact_lag_reads_is_configurable():
    """E34: `artifact_lag_reads` reads after completion omit the artifact."""
    with running_emulator(artifact_lag_reads=3) as emulator, api_client(emulator) as client:
        job_id = _create(client)
        wait_for_status(client, job_id, want_artifact=False)
        reads = [client.get(f"/assets/{job_id}").json()["status"] for _ in range(3)]
    assert ["artifact" in r for r in reads] == [False, False, True]


def test_a_lag_window_fault_withholds_the_artifact_for_a_time():
    """E19: a completed job may lack its assetUrl for a window, whatever the read count."""
    faults = FaultConfig(rules=(FaultRule(FaultKind.LAG_WINDOW, delay_s=0.3),))
    with (
        running_emulator(faults=faults, artifact_lag_reads=0) as emulator,
        api_client(emulator) as client,
    ):
        job_id = _create(client)
        completed = wait_for_status(client, job_id, want_artifact=False)
        again = client.get(f"/assets/{job_id}").json()
        final = wait_for_status(client, job_id)
    assert "artifact" not in completed["status"]
    assert "artifact" not in again["status"]
    assert "artifact" in final["status"]


def test_a_failed_job_reports_its_message_is_refunded_and_leaves_no_asset():
    """E36 and E40: failure message, frozen progress, a refund, nothing in the library."""
    faults = FaultConfig(rules=(FaultRule(FaultKind.FAIL_JOB, reply_ref_contains="doomed"),))
    with running_emulator(faults=faults) as emulator, api_client(emulator) as client:
        doomed = _create(client, replyRef="ltxr:doomed")
        fine = _create(client, replyRef="ltxr:fine")
        failed = wait_for_status(client, doomed)
        wait_for_status(client, fine)
        listing = client.get("/assets/").json()
        balance = client.get("/accounts/user@example.com").json()["balance"]
        ledger = emulator.ledger()
    status = failed["status"]
    assert status["type"] == "failed"
    assert status["message"] in FAILURE_MESSAGES
    assert 0 <= status["progress"] < 100
    assert "artifact" not in status
    assert [item["jobId"] for item in listing["items"]] == [fine]
    assert [(e.kind, e.reply_ref) for e in ledger if e.job_id == doomed] == [
        (LedgerKind.CHARGE, "ltxr:doomed"),
        (LedgerKind.REFUND, "ltxr:doomed"),
    ]
    assert balance == {"LTXStudio_token": 10_000 - 28}


def test_a_scripted_failure_can_name_its_message():
    """E19: a scripted job failure carries the given message."""
    rule = FaultRule(FaultKind.FAIL_JOB, message="Prompt was rejected by content moderation")
    with (
        running_emulator(faults=FaultConfig(rules=(rule,))) as emulator,
        api_client(emulator) as client,
    ):
        failed = wait_for_status(client, _create(client))
    assert failed["status"]["message"] == "Prompt was rejected by content moderation"


def test_the_failure_rate_fails_every_job_at_one():
    """E36: a failure probability of 1 fails every job."""
    with (
        running_emulator(faults=FaultConfig(job_failure_rate=1.0)) as emulator,
        api_client(emulator) as client,
    ):
        bodies = [wait_for_status(client, _create(client)) for _ in range(3)]
    assert {b["status"]["type"] for b in bodies} == {"failed"}


def test_a_job_record_expires_after_its_retention_but_its_asset_stays():
    """E35: 404 after `job_ttl`; the asset list still shows the image."""
    with running_emulator(job_ttl_s=0.05) as emulator, api_client(emulator) as client:
        job_id = _create(client)
        wait_for_status(client, job_id, want_artifact=False)
        gone = wait_until(lambda: client.get(f"/assets/{job_id}").status_code == 404 or None)
        expired = client.get(f"/assets/{job_id}")
        listing = client.get("/assets/").json()
    assert gone
    assert expired.json() == {"error": "Job not found or has expired", "code": 404}
    assert [item["jobId"] for item in listing["items"]] == [job_id]


def test_a_percent_encoded_job_id_works_like_the_raw_one(client):
    """E7: raw and percent-encoded jobIds are the same job."""
    job_id = _create(client)
    raw = client.get(f"/assets/{job_id}").json()
    encoded = client.get(f"/assets/{quote(job_id, safe='')}").json()
    assert raw["jobId"] == encoded["jobId"] == job_id


@pytest.mark.parametrize("job_id", ["not-a-job", "email:x@y.z:abc", "email:x@y.z:abc-type:audio"])
def test_a_malformed_job_id_is_a_400(client, job_id):
    """E21: a jobId outside the documented form is named in the 400."""
    response = client.get(f"/assets/{job_id}")
    assert response.json() == {"error": f"jobId {job_id} is malformed", "code": 400}


def test_an_unknown_job_is_a_404(client):
    """2.2: a well-formed but unknown jobId is 404 with the docs' prose."""
    response = client.get("/assets/email:user@example.com:0000-type:image")
    assert response.json() == {"error": "Job not found or has expired", "code": 404}


def test_status_bodies_omit_reply_fields_that_were_not_given(client):
    """E22: replyRef/replyUrl only if given, and `code: 200` always."""
    body = client.get(f"/assets/{_create(client)}").json()
    assert set(body) == {"status", "jobId", "code"}
    assert body["code"] == 200


def test_poll_for_result_returns_the_completed_status_model(client):
    """2.1: with pollForResult the create answers with the finished job and its artifact."""
    response = client.post(
        "/images/create",
        json={"prompt": "p", "pollForResult": 20, "replyRef": "r1", "aspectRatio": "1:1"},
    )
    body = response.json()
    assert body["status"]["type"] == "completed"
    assert body["replyRef"] == "r1"
    assert body["code"] == 200
    image = fetch(body["status"]["artifact"]["assetUrl"]).content
    assert Image.open(io.BytesIO(image)).size == (1024, 1024)


def test_poll_for_result_that_runs_out_returns_the_job_created_shape():
    """E16: a job still running after the window comes back as {jobId, generationId}."""
    with running_emulator(latency_median_s=LONG_JOBS) as emulator, api_client(emulator) as client:
        body = client.post("/images/create", json={"prompt": "p", "pollForResult": 2}).json()
    assert set(body) == {"jobId", "generationId"}
    assert body["generationId"].startswith("gen_")


def test_poll_for_result_reports_a_failure_inside_the_window():
    """E16: a job failing within the window is a 200 with the failed status model."""
    with (
        running_emulator(faults=FaultConfig(job_failure_rate=1.0)) as emulator,
        api_client(emulator) as client,
    ):
        body = client.post("/images/create", json={"prompt": "p", "pollForResult": 20}).json()
    assert body["status"]["type"] == "failed"


def test_a_job_is_in_the_scheduler_while_poll_for_result_waits():
    """E26: registered at acceptance, before the (blocked) create answers."""
    with (
        running_emulator(latency_median_s=SLOW_JOBS, poll_step_s=100.0) as emulator,
        api_client(emulator) as client,
    ):
        answers: list[httpx.Response] = []
        thread = threading.Thread(
            target=lambda: answers.append(
                client.post(
                    "/images/create",
                    json={"prompt": "p", "pollForResult": 5, "replyRef": "waiting"},
                )
            )
        )
        thread.start()
        entries = wait_until(lambda: client.get("/scheduler").json())
        thread.join()
    assert entries[0]["replyRef"] == "waiting"
    assert answers[0].json()["status"]["type"] == "completed"


def test_every_charge_is_in_the_ledger_with_its_request_digest(emulator, client):
    """E43: time, account, jobId, model, amount, replyRef and request digest per charge."""
    first = _create(client, seed=5, replyRef="a")
    second = _create(client, seed=5, replyRef="b")
    other = _create(client, seed=6, model="nano-banana")
    ledger = emulator.ledger()
    assert [(e.job_id, e.model, e.amount, e.reply_ref) for e in ledger] == [
        (first, "flux", 28, "a"),
        (second, "flux", 28, "b"),
        (other, "nano-banana", 49, None),
    ]
    assert ledger[0].request_sha256 == ledger[1].request_sha256 != ledger[2].request_sha256
    assert all(e.email == "user@example.com" and e.time_ms > 0 for e in ledger)
    assert emulator.charges_by_reply_ref() == {"a": 1, "b": 1, None: 1}


def test_credits_are_charged_at_acceptance_and_402_below_the_price(emulator, client):
    """E40: a balance equal to the price pays; one credit less is a 402."""
    emulator.set_balance("user@example.com", 49)
    accepted = client.post("/images/create", json={"prompt": "p", "model": "nano-banana"})
    refused = client.post("/images/create", json={"prompt": "p"})
    account = client.get("/accounts/user@example.com").json()
    assert accepted.status_code == 200
    assert refused.status_code == 402
    assert refused.json()["error"] == (
        "Insufficient credits: model flux costs 28, account user@example.com has 0"
    )
    assert account["balance"] == {"LTXStudio_token": 0}
    assert account["latestCreatedAtMs"]["LTXStudio_token"] == emulator.ledger()[-1].time_ms


def test_prices_are_configurable():
    """E40: prices come from the configuration."""
    with (
        running_emulator(prices={"flux": 1, "flux-premium": 2, "nano-banana": 3}) as emulator,
        api_client(emulator) as client,
    ):
        _create(client, model="flux-premium")
    assert [e.amount for e in emulator.ledger()] == [2]


def test_the_same_seeded_request_draws_the_same_bytes(client):
    """E44: the picture is a function of the inputs and seed."""
    downloads = []
    for _ in range(2):
        body = wait_for_status(client, _create(client, seed=99, style="anime"))
        downloads.append(fetch(body["status"]["artifact"]["assetUrl"]).content)
    assert downloads[0] == downloads[1]


def test_unseeded_requests_draw_different_pictures_unless_derived():
    """E45: no seed means a random seed per job; `unseeded=derive` makes it reproducible."""
    for unseeded, expect_equal in (("random", False), ("derive", True)):
        with running_emulator(unseeded=unseeded) as emulator, api_client(emulator) as client:
            images = [
                fetch(
                    wait_for_status(client, _create(client))["status"]["artifact"]["assetUrl"]
                ).content
                for _ in range(2)
            ]
        assert (images[0] == images[1]) is expect_equal


def test_nondeterministic_output_changes_bytes_for_the_same_request():
    """E44: the noise option makes identical seeded requests differ."""
    with running_emulator(nondeterministic_output=True) as emulator, api_client(emulator) as client:
        images = [
            fetch(
                wait_for_status(client, _create(client, seed=1))["status"]["artifact"]["assetUrl"]
            ).content
            for _ in range(2)
        ]
    assert images[0] != images[1]
