"""Accounts (2.9 to 2.12, E29 to E31), email matching (E42) and encoded emails (E7)."""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx
import pytest

from ltx_reconcile.emulator.config import AccountConfig, EmulatorConfig
from testing.emulator import api_client, running_emulator, tiny_image, wait_for_status

COOKIE = "lt_id=Alice01; lt_token=secret-access-value; lt_refresh_token=secret-refresh-value"
EMAIL = "alice01@ltx-emulator.test"
DAY_MS = 24 * 3600 * 1000
ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
SLOW_JOBS = {"flux": 500.0, "flux-premium": 500.0, "nano-banana": 500.0}
NOT_FOUND = {
    "error": "Account configuration not found for the specified email address",
    "code": 404,
}


def _post_account(client: httpx.Client, encoding: str = "json", **body: object) -> httpx.Response:
    if encoding == "json":
        return client.post("/accounts", json=body)
    return client.post("/accounts", files={k: (None, str(v)) for k, v in body.items()})


@pytest.mark.parametrize("encoding", ["json", "multipart"])
def test_post_accounts_creates_an_account_with_masked_cookie_and_expiries(client, encoding):
    """E29: email from lt_id, secrets masked, tokenExpire +30 d, refreshTokenExpire +90 d."""
    response = _post_account(client, encoding, cookie=COOKIE, maxJobs=7)
    body = response.json()
    assert response.status_code == 200
    assert "secret-" not in response.text
    assert body["email"] == EMAIL
    assert body["cookie"] == {
        "lt_id": "Alice01",
        "lt_token": "…secured…",
        "lt_refresh_token": "…secured…",
    }
    assert body["maxJobs"] == 7
    assert body["tokenExpire"] == body["updated"] + 30 * DAY_MS
    assert body["refreshTokenExpire"] == body["updated"] + 90 * DAY_MS
    for name in ("updatedUTC", "tokenExpireUTC", "refreshTokenExpireUTC"):
        assert ISO_MS.fullmatch(body[name])
    assert "balance" not in body


def test_a_new_account_starts_with_the_starting_balance_and_default_max_jobs(client):
    """E29, E40: 10000 tokens, maxJobs 20, latestCreatedAtMs at its creation (E30)."""
    created = _post_account(client, cookie=COOKIE).json()
    account = client.get(f"/accounts/{EMAIL}").json()
    assert created["maxJobs"] == 20
    assert account["balance"] == {"LTXStudio_token": 10_000}
    assert account["latestCreatedAtMs"] == {"LTXStudio_token": created["updated"]}
    assert {
        k: v for k, v in account.items() if k not in ("balance", "latestCreatedAtMs")
    } == created


def test_posting_the_same_lt_id_again_updates_and_keeps_the_balance(client):
    """E29: an upsert keyed by the derived email; credits and an unchanged maxJobs stay."""
    _post_account(client, cookie=COOKIE, maxJobs=3)
    client.post("/images/create", json={"prompt": "p", "email": EMAIL})
    renewed = _post_account(client, cookie=COOKIE.replace("secret", "fresh"))
    widened = _post_account(client, cookie=COOKIE, maxJobs="50")
    accounts = client.get("/accounts").json()
    account = client.get(f"/accounts/{EMAIL}").json()
    assert renewed.json()["maxJobs"] == 3
    assert widened.json()["maxJobs"] == 50
    assert sorted(accounts) == [EMAIL, "user@example.com"]
    assert account["balance"] == {"LTXStudio_token": 10_000 - 28}


def test_the_number_of_accounts_is_not_limited(client):
    """E6: no cap of three accounts per subscription."""
    for n in range(4):
        cookie = f"lt_id=extra{n}; lt_token=t; lt_refresh_token=r"
        assert _post_account(client, cookie=cookie).status_code == 200
    assert len(client.get("/accounts").json()) == 5


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "cookie is required"),
        ({"cookie": ""}, "cookie is required"),
        ({"cookie": "   "}, "cookie is required"),
        ({"cookie": 5}, "cookie must be a string"),
        ({"cookie": "lt_id=a"}, "Missing required cookie fields: lt_token | lt_refresh_token"),
        ({"cookie": "lt_id=a; lt_token=b"}, "Missing required cookie fields: lt_refresh_token"),
        ({"cookie": "lt_token=b; lt_refresh_token=c"}, "Missing required cookie fields: lt_id"),
        ({"cookie": "lt_id=; lt_token=b; lt_refresh_token=c"}, "Missing required cookie fields: lt_id"),
        ({"cookie": COOKIE, "maxJobs": 0}, "maxJobs must be an integer between 1 and 100"),
        ({"cookie": COOKIE, "maxJobs": 101}, "maxJobs must be an integer between 1 and 100"),
        ({"cookie": COOKIE, "maxJobs": "many"}, "maxJobs must be an integer between 1 and 100"),
        ({"cookie": COOKIE, "maxJobs": 2.5}, "maxJobs must be an integer between 1 and 100"),
        ({"cookie": COOKIE, "email": "a@b.c"}, "Unknown parameter: email"),
    ],
)  # fmt: skip
def test_each_invalid_account_body_gets_its_exact_400(shared_client, body, message):
    """2.9, E29: the cookie and maxJobs rules, with section 7's shared rows."""
    response = _post_account(shared_client, **body)
    assert (response.status_code, response.json()) == (400, {"error": message, "code": 400})


@pytest.mark.parametrize("max_jobs", [1, 100, "1", "100"])
def test_account_max_jobs_at_its_bounds_is_accepted(shared_client, max_jobs):
    """2.9: 1 to 100, as a number or a digit string."""
    response = _post_account(shared_client, cookie=COOKIE, maxJobs=max_jobs)
    assert response.json()["maxJobs"] == int(max_jobs)


@pytest.mark.parametrize(
    ("content_type", "content", "message"),
    [
        ("text/plain", b"cookie=x", "Content-Type must be application/json or multipart/form-data"),
        ("application/json", b"[1]", "Request body must be a JSON object"),
    ],
)
def test_an_account_body_that_is_not_json_or_a_form_is_400(
    shared_client, content_type, content, message
):
    """Rows 1 and 2 apply to POST /accounts (section 7's closing note)."""
    response = shared_client.post(
        "/accounts", content=content, headers={"Content-Type": content_type}
    )
    assert response.json() == {"error": message, "code": 400}


def test_get_accounts_is_an_object_keyed_by_email(shared_client):
    """2.10: each value is the account model, without the balance."""
    accounts = shared_client.get("/accounts").json()
    account = accounts["user@example.com"]
    assert account["email"] == "user@example.com"
    assert set(account) == {
        "email",
        "cookie",
        "maxJobs",
        "updated",
        "updatedUTC",
        "tokenExpire",
        "tokenExpireUTC",
        "refreshTokenExpire",
        "refreshTokenExpireUTC",
    }


def test_with_no_account_get_accounts_is_404_until_one_is_posted():
    """2.10: `Configuration not found…`; after POST /accounts, creates need no email (1.5)."""
    with running_emulator(accounts=()) as emulator, api_client(emulator) as client:
        missing = client.get("/accounts")
        _post_account(client, cookie=COOKIE)
        listed = client.get("/accounts").json()
        created = client.post("/images/create", json={"prompt": "p"}).json()
    assert (missing.status_code, missing.json()) == (
        404,
        {
            "error": "Configuration not found. To create configuration use POST /accounts.",
            "code": 404,
        },
    )
    assert list(listed) == [EMAIL]
    assert created["jobId"].startswith(f"email:{EMAIL}:")


def test_the_default_configuration_pre_creates_the_demo_account():
    """E29: one account, demo@ltx-emulator.test, unless configured otherwise."""
    with (
        running_emulator(accounts=EmulatorConfig().accounts) as emulator,
        api_client(emulator) as client,
    ):
        assert list(client.get("/accounts").json()) == ["demo@ltx-emulator.test"]


def test_an_unknown_account_is_404(shared_client):
    """2.11: the docs' prose as `error` (E3)."""
    response = shared_client.get("/accounts/nobody@example.com")
    assert (response.status_code, response.json()) == (404, NOT_FOUND)


def test_latest_created_at_ms_follows_the_last_balance_change(emulator, client):
    """E30: the time of the last charge, and of a set balance."""
    job_id = client.post("/images/create", json={"prompt": "p"}).json()["jobId"]
    after_charge = client.get("/accounts/user@example.com").json()
    wait_for_status(client, job_id)
    emulator.set_balance("user@example.com", 5)
    after_set = client.get("/accounts/user@example.com").json()
    (charge,) = emulator.ledger()
    assert after_charge["latestCreatedAtMs"] == {"LTXStudio_token": charge.time_ms}
    assert after_set["balance"] == {"LTXStudio_token": 5}
    assert after_set["latestCreatedAtMs"]["LTXStudio_token"] >= charge.time_ms


@pytest.mark.parametrize(
    "path_email",
    [
        "user@example.com",
        "USER@Example.COM",
        quote("user@example.com", safe=""),
        "user%40EXAMPLE.com",
    ],
    ids=["raw", "upper case", "percent-encoded", "encoded upper case"],
)
def test_account_paths_take_raw_encoded_and_any_case_emails(shared_client, path_email):
    """E7, E42: the email is found however it is written, and echoed in lower case."""
    assert shared_client.get(f"/accounts/{path_email}").json()["email"] == "user@example.com"


def test_emails_are_matched_in_any_case_and_stored_in_lower_case(client):
    """E42: POST /accounts lower-cases; create, upload and listing accept any case."""
    mixed = _post_account(client, cookie=COOKIE).json()["email"]
    job_id = client.post(
        "/images/create", json={"prompt": "p", "email": "Alice01@LTX-Emulator.test"}
    ).json()["jobId"]
    upload = client.post(
        "/assets/",
        params={"email": "ALICE01@ltx-emulator.test"},
        content=tiny_image(),
        headers={"Content-Type": "image/png"},
    )
    listing = client.get("/assets/", params={"email": "ALICE01@LTX-EMULATOR.TEST"})
    assert mixed == EMAIL
    assert job_id.startswith(f"email:{EMAIL}:")
    assert upload.status_code == 200
    assert listing.status_code == 200
    scheduler_emails = {e["email"] for e in client.get("/scheduler/available").json()["available"]}
    assert EMAIL in scheduler_emails


def test_deleting_an_account_is_204_and_then_it_is_unknown():
    """E31: 204, then 404 on repeat and on read, 400 on use; its running job finishes."""
    accounts = (AccountConfig("user@example.com"), AccountConfig("gone@example.com"))
    with (
        running_emulator(
            accounts=accounts, latency_median_s=SLOW_JOBS, latency_sigma=0.0
        ) as emulator,
        api_client(emulator) as client,
    ):
        job_id = client.post(
            "/images/create", json={"prompt": "p", "email": "gone@example.com"}
        ).json()["jobId"]
        deleted = client.delete(f"/accounts/{quote('GONE@example.com', safe='')}")
        was_running = [e["jobId"] for e in client.get("/scheduler").json()]
        again = client.delete("/accounts/gone@example.com")
        read = client.get("/accounts/gone@example.com")
        create = client.post("/images/create", json={"prompt": "p", "email": "gone@example.com"})
        listing = client.get("/assets/", params={"email": "gone@example.com"})
        finished = wait_for_status(client, job_id)
        remaining = list(client.get("/accounts").json())
    assert (deleted.status_code, deleted.content) == (204, b"")
    assert (again.status_code, again.json()) == (404, NOT_FOUND)
    assert read.json() == NOT_FOUND
    unknown = {"error": "Unable to locate account gone@example.com", "code": 400}
    assert create.json() == unknown
    assert listing.json() == unknown
    assert was_running == [job_id]
    assert finished["status"]["type"] == "completed"
    assert remaining == ["user@example.com"]
