"""maxJobs admission (E18), the scheduler (E26, E27, E28) and capacity per account (2.7)."""

from __future__ import annotations

import datetime as dt
import re
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import httpx
import pytest

from ltx_reconcile.emulator.config import AccountConfig
from ltx_reconcile.emulator.wire import scheduler_entry
from testing.emulator import api_client, running_emulator, wait_for_status, wait_until

LONG_JOBS = {"flux": 20_000.0, "flux-premium": 20_000.0, "nano-banana": 20_000.0}


def _create(client: httpx.Client, **fields: object) -> httpx.Response:
    return client.post("/images/create", json={"prompt": "p", **fields})


def test_concurrent_creates_never_overshoot_max_jobs():
    """E18: admission is atomic; 40 simultaneous creates against maxJobs 5 admit exactly 5."""
    accounts = (AccountConfig("user@example.com", max_jobs=5),)
    with (
        running_emulator(accounts=accounts, latency_median_s=LONG_JOBS) as emulator,
        api_client(emulator) as client,
        ThreadPoolExecutor(max_workers=20) as pool,
    ):
        responses = list(pool.map(lambda _: _create(client), range(40)))
        available = client.get("/scheduler/available").json()
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 5 + [429] * 35
    assert len(emulator.charges()) == 5
    assert available["available"] == [
        {"email": "user@example.com", "maxJobs": 5, "executing": 5, "available": 0}
    ]


def test_a_full_account_gets_429_with_retry_after_and_no_charge():
    """E18: the 429 names the count and limit, carries Retry-After: 5 and charges nothing."""
    with running_emulator(latency_median_s=LONG_JOBS) as emulator, api_client(emulator) as client:
        assert _create(client, maxJobs=1).status_code == 200
        refused = _create(client, maxJobs=1)
        wider = _create(client, maxJobs=2)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "5"
    assert refused.json() == {
        "error": "Account user@example.com is executing 1 of 1 jobs, retry later",
        "code": 429,
    }
    assert wider.status_code == 200
    assert len(emulator.charges()) == 2


def test_insufficient_credits_beats_a_full_account():
    """E20: 402 (credits) is checked before 429 (capacity)."""
    with running_emulator(latency_median_s=LONG_JOBS) as emulator, api_client(emulator) as client:
        _create(client, maxJobs=1)
        emulator.set_balance("user@example.com", 0)
        response = _create(client, maxJobs=1)
    assert response.status_code == 402


def test_a_finished_job_frees_its_slot(client):
    """E26: a job leaves the scheduler when it completes."""
    first = _create(client, maxJobs=1).json()["jobId"]
    wait_for_status(client, first, want_artifact=False)
    assert _create(client, maxJobs=1).status_code == 200


def test_the_scheduler_lists_running_jobs_oldest_first():
    """E26: jobId, email, started, elapsed, replyUrl/replyRef only when given."""
    with running_emulator(latency_median_s=LONG_JOBS) as emulator, api_client(emulator) as client:
        first = _create(client, replyRef="one", replyUrl="http://127.0.0.1:9/cb").json()["jobId"]
        second = _create(client).json()["jobId"]
        entries = client.get("/scheduler", params={"ignored": "yes"}).json()
        available = client.get("/scheduler/available").json()
    assert [e["jobId"] for e in entries] == [first, second]
    assert entries[0]["replyRef"] == "one"
    assert entries[0]["replyUrl"] == "http://127.0.0.1:9/cb"
    assert set(entries[1]) == {"jobId", "email", "started", "elapsed"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entries[0]["started"])
    assert entries[0]["elapsed"] == "00:00"
    assert available["executing"] == entries


def test_cancel_frees_the_slot_keeps_the_charge_and_the_job_still_finishes():
    """E27, E28: 204, slot freed, charge stands, status stays truthful, asset listed."""
    slow = {"flux": 300.0, "flux-premium": 300.0, "nano-banana": 300.0}
    with running_emulator(latency_median_s=slow) as emulator, api_client(emulator) as client:
        job_id = _create(client, maxJobs=1).json()["jobId"]
        cancelled = client.delete(f"/scheduler/{quote(job_id, safe='')}")
        again = client.delete(f"/scheduler/{job_id}")
        scheduler = client.get("/scheduler").json()
        second = _create(client, maxJobs=1)
        status = client.get(f"/assets/{job_id}").json()
        finished = wait_for_status(client, job_id)
        listed = [i.get("jobId") for i in client.get("/assets/").json()["items"]]
    assert cancelled.status_code == 204
    assert cancelled.content == b""
    assert again.json() == {"error": f"Unable to locate running jobId {job_id}", "code": 404}
    assert scheduler == []
    assert second.status_code == 200
    assert status["status"]["type"] == "active"
    assert finished["status"]["type"] == "completed"
    assert job_id in listed
    assert [e.kind for e in emulator.ledger() if e.job_id == job_id] == ["charge"]


def test_cancel_of_a_malformed_job_id_is_a_400(client):
    """E21 applies to the cancel path too."""
    assert client.delete("/scheduler/nope").json()["error"] == "jobId nope is malformed"


def test_available_lists_every_account():
    """2.7: one entry per account with maxJobs, executing and available."""
    accounts = (AccountConfig("a@example.com", max_jobs=3), AccountConfig("b@example.com"))
    with (
        running_emulator(accounts=accounts, latency_median_s=LONG_JOBS) as emulator,
        api_client(emulator) as client,
    ):
        _create(client, email="a@example.com")
        available = client.get("/scheduler/available").json()["available"]
    assert available == [
        {"email": "a@example.com", "maxJobs": 3, "executing": 1, "available": 2},
        {"email": "b@example.com", "maxJobs": 20, "executing": 0, "available": 20},
    ]


def test_jobs_slow_down_past_ten_concurrent_per_account():
    """E37: the 11th and later concurrent jobs get longer durations."""
    steady = {"flux": 1000.0, "flux-premium": 1000.0, "nano-banana": 1000.0}
    with (
        running_emulator(latency_median_s=steady, latency_sigma=0.0) as emulator,
        api_client(emulator) as client,
    ):
        for _ in range(13):
            _create(client)
        durations = [round(job.duration_s, 6) for job in emulator.jobs()]
    assert durations[:11] == [1.0] * 11
    assert durations[11:] == [1.1, 1.2]


def test_wait_until_reports_a_timeout():
    """The polling helper fails loudly at its deadline."""
    with pytest.raises(AssertionError, match=r"within 0\.01 s"):
        wait_until(lambda: None, timeout_s=0.01)


@pytest.mark.parametrize(
    ("seconds", "elapsed"),
    [
        (0.0, "00:00"),
        (59.99, "00:59"),
        (61.0, "01:01"),
        (3599.0, "59:59"),
        (75 * 60 + 3.5, "75:03"),
    ],
)
def test_elapsed_is_zero_padded_minutes_and_seconds_past_59_minutes(emulator, seconds, elapsed):
    """E26: `MM:SS` since acceptance, minutes allowed past 59; `started` is UTC with ms."""
    with api_client(emulator) as client:
        _create(client, replyRef="ltxr:timed")
    (job,) = emulator.jobs()
    entry = scheduler_entry(job, job.accepted_s + seconds)
    accepted = dt.datetime.fromtimestamp(int(job.accepted_s * 1000) / 1000, tz=dt.UTC)
    assert entry["elapsed"] == elapsed
    assert entry["started"] == accepted.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_cancel_answers_404_for_unknown_and_finished_jobs(client):
    """2.8: only a job in the scheduler can be cancelled."""
    finished = _create(client).json()["jobId"]
    wait_for_status(client, finished, want_artifact=False)
    unknown = "email:user@example.com:00000000-0000-4000-8000-000000000000-type:image"
    for job_id in (finished, unknown):
        response = client.delete(f"/scheduler/{quote(job_id, safe='')}")
        assert (response.status_code, response.json()) == (
            404,
            {"error": f"Unable to locate running jobId {job_id}", "code": 404},
        )


def test_the_accounts_own_max_jobs_applies_when_the_request_names_none():
    """E18: the account's maxJobs is the limit by default; a request's maxJobs overrides it."""
    accounts = (AccountConfig("user@example.com", max_jobs=1),)
    with (
        running_emulator(accounts=accounts, latency_median_s=LONG_JOBS) as emulator,
        api_client(emulator) as client,
    ):
        first = _create(client)
        refused = _create(client)
        overridden = _create(client, maxJobs=3)
        available = client.get("/scheduler/available").json()["available"]
    assert (first.status_code, overridden.status_code) == (200, 200)
    assert (
        refused.json()["error"] == "Account user@example.com is executing 1 of 1 jobs, retry later"
    )
    # Two jobs run on an account whose own limit is 1: the free count never goes below 0.
    assert available == [
        {"email": "user@example.com", "maxJobs": 1, "executing": 2, "available": 0}
    ]
