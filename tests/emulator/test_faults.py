"""Fault injection (E19) as seen on the wire, and what each fault leaves in the ledger.

Faults before acceptance leave no job and no charge; faults after acceptance leave a
charged job whose answer is lost. The client's side of each is in tests/api.
"""

from __future__ import annotations

import io
import time

import httpx
import pytest
from PIL import Image

from ltx_reconcile.emulator.config import FAULT_ENDPOINTS, FaultConfig, FaultKind, FaultRule
from ltx_reconcile.emulator.server import RunningEmulator
from testing.emulator import LOOPBACK_TLS, auth_headers, fetch, tiny_image, wait_for_status


def _faults(*rules: FaultRule, **rates: object) -> FaultConfig:
    return FaultConfig(rules=rules, **rates)  # type: ignore[arg-type]


def _create(client: httpx.Client, **fields: object) -> httpx.Response:
    return client.post("/images/create", json={"prompt": "a lighthouse", **fields})


def _artifact_url(client: httpx.Client, job_id: str) -> str:
    return str(wait_for_status(client, job_id)["status"]["artifact"]["assetUrl"])


@pytest.mark.parametrize("status", [429, 500, 502, 503, 596])
def test_an_error_before_acceptance_makes_no_job_and_charges_nothing(emulator, client, status):
    """E19: the status and the JSON error shape, no job, no charge; the next request is fine."""
    rule = FaultRule(FaultKind.STATUS_BEFORE_ACCEPT, endpoint="images/create", status=status)
    emulator.set_faults(_faults(rule))
    refused = _create(client, replyRef="ltxr:refused")
    assert refused.status_code == status
    assert refused.json()["code"] == status
    assert isinstance(refused.json()["error"], str)
    assert refused.headers.get("Retry-After") == ("5" if status == 429 else None)
    assert emulator.jobs() == []
    assert emulator.ledger() == []
    assert _create(client, replyRef="ltxr:next").status_code == 200
    assert emulator.charges_by_reply_ref() == {"ltxr:next": 1}


@pytest.mark.parametrize("status", [500, 502, 503])
def test_an_error_after_acceptance_leaves_a_charged_job_behind(emulator, client, status):
    """E19: the job exists, is paid for and runs to completion although the answer was lost."""
    rule = FaultRule(FaultKind.STATUS_AFTER_ACCEPT, status=status)
    emulator.set_faults(_faults(rule))
    response = _create(client, replyRef="ltxr:lost")
    (job,) = emulator.jobs()
    finished = wait_for_status(client, job.job_id)
    assert response.status_code == status
    assert response.json()["code"] == status
    assert "jobId" not in response.json()
    assert emulator.charges_by_reply_ref() == {"ltxr:lost": 1}
    assert (finished["replyRef"], finished["status"]["type"]) == ("ltxr:lost", "completed")


def test_a_reset_after_acceptance_loses_the_answer_of_a_charged_job(emulator, client):
    """E19: the connection is reset once the job is charged; no byte of answer arrives."""
    emulator.set_faults(_faults(FaultRule(FaultKind.RESET_AFTER_ACCEPT)))
    with pytest.raises(httpx.TransportError):
        _create(client, replyRef="ltxr:reset")
    assert emulator.charges_by_reply_ref() == {"ltxr:reset": 1}


@pytest.mark.parametrize("endpoint", ["images/create", "assets/list", "scheduler"])
def test_a_reset_before_the_request_is_read_leaves_no_trace(emulator, client, endpoint):
    """E19: the connection drops before the request is read; nothing happens."""
    emulator.set_faults(_faults(FaultRule(FaultKind.RESET_BEFORE_READ, endpoint=endpoint)))
    calls = {
        "images/create": lambda: _create(client),
        "assets/list": lambda: client.get("/assets/"),
        "scheduler": lambda: client.get("/scheduler"),
    }
    with pytest.raises(httpx.TransportError):
        calls[endpoint]()
    assert calls[endpoint]().status_code == 200
    assert len(emulator.jobs()) == (1 if endpoint == "images/create" else 0)


def test_a_slow_answer_arrives_late_but_whole(emulator, client):
    """E19: an added delay before the request is handled; the answer itself is normal."""
    emulator.set_faults(_faults(FaultRule(FaultKind.SLOW, endpoint="scheduler", delay_s=0.2)))
    started = time.monotonic()
    response = client.get("/scheduler")
    assert time.monotonic() - started >= 0.2
    assert response.json() == []


def test_a_held_create_is_charged_before_its_answer_times_out(emulator):
    """E19 hold: the job is accepted and charged while its answer is held open."""
    emulator.set_faults(_faults(FaultRule(FaultKind.HOLD, delay_s=0.5)))
    with (
        httpx.Client(
            base_url=emulator.base_url,
            headers=auth_headers(),
            timeout=0.1,
            verify=LOOPBACK_TLS,
        ) as c,
        pytest.raises(httpx.ReadTimeout),
    ):
        _create(c, replyRef="ltxr:held")
    assert emulator.charges_by_reply_ref() == {"ltxr:held": 1}


def test_a_rule_matched_by_reply_ref_hits_only_that_request(emulator, client):
    """E19: scripted per request by replyRef substring; others pass untouched."""
    rule = FaultRule(FaultKind.STATUS_BEFORE_ACCEPT, reply_ref_contains="victim", status=503)
    emulator.set_faults(_faults(rule))
    bystander = _create(client, replyRef="ltxr:bystander")
    victim = _create(client, replyRef="ltxr:victim-1")
    assert (bystander.status_code, victim.status_code) == (200, 503)


def test_a_rule_applies_to_its_next_times_requests_only(emulator, client):
    """E19: `times` outcomes are scripted, then requests go through again."""
    rule = FaultRule(FaultKind.STATUS_BEFORE_ACCEPT, endpoint="scheduler", status=502, times=2)
    emulator.set_faults(_faults(rule))
    codes = [client.get("/scheduler").status_code for _ in range(3)]
    assert codes == [502, 502, 200]


@pytest.mark.parametrize("endpoint", FAULT_ENDPOINTS)
def test_every_endpoint_name_scopes_a_rule_to_that_endpoint(emulator, client, endpoint):
    """E19: a rule naming an endpoint fires there and nowhere else."""
    png = tiny_image()
    job_id = _create(client).json()["jobId"]
    url = _artifact_url(client, job_id)
    calls = {
        "images/create": lambda: _create(client),
        "assets/status": lambda: client.get(f"/assets/{job_id}"),
        "assets/list": lambda: client.get("/assets/"),
        "assets/upload": lambda: client.post(
            "/assets/", content=png, headers={"Content-Type": "image/png"}
        ),
        "scheduler": lambda: client.get("/scheduler"),
        "scheduler/available": lambda: client.get("/scheduler/available"),
        "scheduler/cancel": lambda: client.delete(f"/scheduler/{job_id}"),
        "accounts": lambda: client.get("/accounts/user@example.com"),
        "storage": lambda: fetch(url),
    }
    kind = FaultKind.EXPIRE_EARLY if endpoint == "storage" else FaultKind.STATUS_BEFORE_ACCEPT
    emulator.set_faults(_faults(FaultRule(kind, endpoint=endpoint, status=503, times=99)))
    codes = {name: call().status_code for name, call in calls.items()}
    hit = 403 if endpoint == "storage" else 503
    assert {name for name, code in codes.items() if code == hit} == {endpoint}


def test_fault_rates_are_drawn_from_the_seeded_rng(emulator, client):
    """E19 fault_seed: the same seed replays the same faults; another seed differs."""

    def run(seed: int) -> list[int]:
        emulator.set_faults(
            FaultConfig(seed=seed, status_before_accept_rate=0.5, status_before_accept_codes=(503,))
        )
        return [client.get("/scheduler").status_code for _ in range(24)]

    first, again, other = run(3), run(3), run(4)
    assert first == again
    assert first != other
    assert set(first) == {200, 503}


def test_a_truncated_download_declares_the_full_length_and_breaks_off(emulator, client):
    """E19: Content-Length of the whole file, half the bytes, then a reset."""
    job_id = _create(client).json()["jobId"]
    url = _artifact_url(client, job_id)
    whole = fetch(url).content
    emulator.set_faults(_faults(FaultRule(FaultKind.TRUNCATE_DOWNLOAD, endpoint="storage")))
    received = bytearray()

    def read_all(response: httpx.Response) -> None:
        for chunk in response.iter_raw():
            received.extend(chunk)

    with httpx.stream("GET", url, verify=LOOPBACK_TLS) as response:
        declared = response.headers["Content-Length"]
        with pytest.raises(httpx.TransportError):
            read_all(response)
    assert declared == str(len(whole))
    assert 0 < len(received) < len(whole)
    assert bytes(received) == whole[: len(received)]


def test_a_corrupted_download_has_the_right_length_and_wrong_bytes(emulator, client):
    """E19: only a digest or a decoder can tell; the next download is intact again."""
    job_id = _create(client).json()["jobId"]
    url = _artifact_url(client, job_id)
    emulator.set_faults(_faults(FaultRule(FaultKind.CORRUPT_DOWNLOAD, endpoint="storage")))
    corrupted = fetch(url)
    intact = fetch(url)
    assert corrupted.status_code == 200
    assert len(corrupted.content) == len(intact.content)
    assert corrupted.content != intact.content
    with Image.open(io.BytesIO(intact.content)) as picture:
        picture.verify()


def test_an_early_expiry_answers_403_before_the_url_expires(emulator, client):
    """E19: a valid URL is refused as expired once; the same URL then works."""
    job_id = _create(client).json()["jobId"]
    url = _artifact_url(client, job_id)
    emulator.set_faults(_faults(FaultRule(FaultKind.EXPIRE_EARLY, endpoint="storage")))
    refused = fetch(url)
    assert (refused.status_code, refused.text) == (403, "Request has expired")
    assert refused.headers["content-type"].startswith("text/plain")
    assert fetch(url).status_code == 200


def test_a_download_fault_scripted_by_reply_ref_hits_that_jobs_first_download(emulator, client):
    """E19: matched at create time by replyRef, the fault waits for that artifact."""
    rule = FaultRule(FaultKind.EXPIRE_EARLY, reply_ref_contains="fragile")
    emulator.set_faults(_faults(rule))
    sturdy = _create(client, replyRef="ltxr:sturdy").json()["jobId"]
    fragile = _create(client, replyRef="ltxr:fragile").json()["jobId"]
    sturdy_url = _artifact_url(client, sturdy)
    fragile_url = _artifact_url(client, fragile)
    codes = [fetch(u).status_code for u in (sturdy_url, fragile_url, fragile_url)]
    assert codes == [200, 403, 200]


def test_faults_can_be_scripted_at_run_time_through_the_control_surface(
    emulator: RunningEmulator,
):
    """E43: POST /_emulator/faults replaces the configuration and scripts the next outcomes."""
    script = {
        "rules": [
            {"kind": "status_before_accept", "endpoint": "scheduler", "status": 596, "times": 2}
        ]
    }
    with httpx.Client(base_url=emulator.origin, verify=LOOPBACK_TLS) as control:
        assert control.post("/_emulator/faults", json=script).status_code == 200
        shown = control.get("/_emulator/faults").json()
        refused = control.post("/_emulator/faults", json={"rules": [{"kind": "meteor"}]})
    with httpx.Client(
        base_url=emulator.base_url, headers=auth_headers(), verify=LOOPBACK_TLS
    ) as client:
        codes = [client.get("/scheduler").status_code for _ in range(3)]
    assert codes == [596, 596, 200]
    assert shown["rules"][0]["status"] == 596
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("rules.0.kind:")
