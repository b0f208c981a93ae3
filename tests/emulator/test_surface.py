"""The API surface as a whole: tokens (E2), the subscription switch (E48), endpoints that are
not emulated (E32, E25), and the test-mode control surface (E43)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import httpx
import pytest

from ltx_reconcile.emulator.config import FaultConfig, FaultKind, FaultRule
from ltx_reconcile.emulator.server import RunningEmulator, serve_emulator
from testing.emulator import (
    LOOPBACK_TLS,
    TEST_TOKEN,
    api_client,
    auth_headers,
    fast_config,
    running_emulator,
    tiny_image,
    wait_for_status,
)

JOB_ID = "email:user@example.com:7a34b821-9fd0-205e-d21b-4abc6f7839e7-type:image"
PNG = tiny_image()

Call = Callable[[httpx.Client], httpx.Response]
ENDPOINTS: dict[str, Call] = {
    "POST images/create": lambda c: c.post("/images/create", json={"prompt": "p"}),
    "POST images/flux-create": lambda c: c.post("/images/flux-create", json={"prompt": "p"}),
    "GET assets/{jobId}": lambda c: c.get(f"/assets/{JOB_ID}"),
    "GET assets/": lambda c: c.get("/assets/"),
    "POST assets/": lambda c: c.post(
        "/assets/", content=PNG, headers={"Content-Type": "image/png"}
    ),
    "GET scheduler": lambda c: c.get("/scheduler"),
    "GET scheduler/available": lambda c: c.get("/scheduler/available"),
    "DELETE scheduler/{jobId}": lambda c: c.delete(f"/scheduler/{JOB_ID}"),
    "POST accounts": lambda c: c.post(
        "/accounts", json={"cookie": "lt_id=a; lt_token=b; lt_refresh_token=c"}
    ),
    "GET accounts": lambda c: c.get("/accounts"),
    "GET accounts/{email}": lambda c: c.get("/accounts/user@example.com"),
    "DELETE accounts/{email}": lambda c: c.delete("/accounts/user@example.com"),
    "POST images/edit": lambda c: c.post("/images/edit", json={"prompt": "p"}),
}
NOT_EMULATED = [
    "/images/edit",
    "/images/flux-edit",
    "/images/upscale",
    "/videos/ltx-create",
    "/videos/veo-create",
]


@pytest.fixture(scope="module")
def unsubscribed() -> Iterator[RunningEmulator]:
    """An emulator whose useapi.net subscription is switched off (E48)."""
    with serve_emulator(fast_config(subscription_active=False)) as running:
        yield running


def _client(emulator: RunningEmulator, headers: dict[str, str]) -> httpx.Client:
    return httpx.Client(
        base_url=emulator.base_url, headers=headers, timeout=10, verify=LOOPBACK_TLS
    )


# -- tokens (E2) ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer user:wrong"},
        {"Authorization": "Bearer"},
        {"Authorization": f"Basic {TEST_TOKEN}"},
        {"Authorization": TEST_TOKEN},
    ],
    ids=["missing", "wrong token", "empty token", "basic scheme", "no scheme"],
)
@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_endpoint_answers_401_without_a_configured_token(shared_emulator, endpoint, headers):
    """1.3, E2: `{"error": "Unauthorized", "code": 401}` before anything else, and no job."""
    with _client(shared_emulator, headers) as client:
        response = ENDPOINTS[endpoint](client)
    assert (response.status_code, response.json()) == (401, {"error": "Unauthorized", "code": 401})


def test_without_configured_tokens_any_non_empty_bearer_token_is_accepted():
    """E2: an emulator with no tokens accepts any token, but still not an empty one."""
    with running_emulator(tokens=()) as emulator:
        with _client(emulator, auth_headers("anything at all")) as client:
            accepted = client.get("/scheduler")
        with _client(emulator, {"Authorization": "Bearer"}) as client:
            refused = client.get("/scheduler")
    assert accepted.status_code == 200
    assert refused.status_code == 401


def test_the_token_is_never_echoed_in_answers_or_logs(shared_emulator, caplog):
    """E2: neither a right nor a wrong token shows up in a body or a log line."""
    caplog.set_level(logging.DEBUG)
    wrong = "user:wrong-token-canary"
    texts = []
    for token in (TEST_TOKEN, wrong):
        with _client(shared_emulator, auth_headers(token)) as client:
            texts += [call(client).text for call in ENDPOINTS.values()]
    assert [t for t in texts if TEST_TOKEN in t or wrong in t] == []
    assert TEST_TOKEN not in caplog.text
    assert wrong not in caplog.text


# -- subscription (E48) -----------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_endpoint_answers_402_while_the_subscription_is_off(unsubscribed, endpoint):
    """E48: 402 `Subscription required` on the whole API, after the 401 check."""
    with _client(unsubscribed, auth_headers()) as client:
        subscribed = ENDPOINTS[endpoint](client)
    with _client(unsubscribed, {}) as client:
        anonymous = ENDPOINTS[endpoint](client)
    assert (subscribed.status_code, subscribed.json()) == (
        402,
        {"error": "Subscription required", "code": 402},
    )
    assert anonymous.status_code == 401
    assert unsubscribed.ledger() == []
    assert unsubscribed.jobs() == []


# -- not emulated (E32, E25) ------------------------------------------------------------------


@pytest.mark.parametrize("path", NOT_EMULATED)
def test_the_other_generation_endpoints_are_not_emulated(shared_client, path):
    """E32: edit, upscale and the video endpoints answer 404 naming the path."""
    response = shared_client.post(path, json={"prompt": "p"})
    assert (response.status_code, response.json()) == (
        404,
        {"error": f"Endpoint not emulated: {path}", "code": 404},
    )


def test_there_is_no_asset_deletion(client):
    """E25: no DELETE on assets; the asset stays listed."""
    upload = client.post("/assets/", content=PNG, headers={"Content-Type": "image/png"})
    file_id = upload.json()["asset"]["fileId"]
    response = client.delete(f"/assets/{file_id}")
    assert response.status_code == 404
    assert response.json()["error"] == f"Endpoint not emulated: /assets/{file_id}"
    assert len(client.get("/assets/").json()["items"]) == 1


# -- the control surface (E43) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/_emulator/ledger"),
        ("GET", "/_emulator/jobs"),
        ("GET", "/_emulator/faults"),
        ("POST", "/_emulator/faults"),
        ("POST", "/_emulator/reset"),
        ("POST", "/_emulator/accounts/user@example.com/balance"),
    ],
)
def test_the_control_surface_exists_only_in_test_mode(method, path):
    """E43: without --test-mode every /_emulator/ route is 404, and nothing changes."""
    with running_emulator(test_mode=False) as emulator, httpx.Client(verify=LOOPBACK_TLS) as http:
        response = http.request(method, emulator.origin + path, json={"balance": 0})
        account = emulator.account("user@example.com")
    assert response.status_code == 404
    assert account is not None
    assert account.balance == 10_000


def test_the_control_surface_is_never_under_the_api_prefix(shared_emulator):
    """E43: `/v1/ltxstudio/_emulator/…` is just an unknown API path."""
    with api_client(shared_emulator) as client:
        response = client.get("/_emulator/ledger")
    assert response.json() == {"error": "Endpoint not emulated: /_emulator/ledger", "code": 404}


def test_the_ledger_and_jobs_show_every_charge_and_refund(emulator, client):
    """E43: time, account, jobId, model, amount, replyRef and request digest per entry."""
    rule = FaultRule(FaultKind.FAIL_JOB, reply_ref_contains="fails")
    emulator.set_faults(FaultConfig(rules=(rule,)))
    kept = client.post(
        "/images/create", json={"prompt": "p", "replyRef": "ltxr:seen", "model": "nano-banana"}
    ).json()["jobId"]
    failed = client.post("/images/create", json={"prompt": "q", "replyRef": "ltxr:fails"})
    failed_id = failed.json()["jobId"]
    for job_id in (kept, failed_id):
        wait_for_status(client, job_id)
    with httpx.Client(base_url=emulator.origin, verify=LOOPBACK_TLS) as control:
        ledger = control.get("/_emulator/ledger").json()
        jobs = control.get("/_emulator/jobs").json()
    assert all(
        set(entry)
        == {"time", "kind", "email", "jobId", "model", "amount", "replyRef", "requestSha256"}
        for entry in ledger
    )
    assert [(e["kind"], e["jobId"], e["model"], e["amount"], e["replyRef"]) for e in ledger] == [
        ("charge", kept, "nano-banana", 49, "ltxr:seen"),
        ("charge", failed_id, "flux", 28, "ltxr:fails"),
        ("refund", failed_id, "flux", 28, "ltxr:fails"),
    ]
    assert {e["email"] for e in ledger} == {"user@example.com"}
    assert all(len(e["requestSha256"]) == 64 and e["time"] > 0 for e in ledger)
    assert [(j["jobId"], j["type"], j["price"]) for j in jobs] == [
        (kept, "completed", 49),
        (failed_id, "failed", 28),
    ]


def test_balances_are_set_through_the_control_surface(client, emulator):
    """E43: POST /_emulator/accounts/{email}/balance; unknown accounts and bad bodies refused."""
    with httpx.Client(base_url=emulator.origin, verify=LOOPBACK_TLS) as control:
        set_to_ten = control.post(
            "/_emulator/accounts/USER@example.com/balance", json={"balance": 10}
        )
        unknown = control.post(
            "/_emulator/accounts/nobody@example.com/balance", json={"balance": 1}
        )
        invalid = control.post(
            "/_emulator/accounts/user@example.com/balance", json={"balance": "x"}
        )
    refused = client.post("/images/create", json={"prompt": "p"})
    assert set_to_ten.json()["balance"] == {"LTXStudio_token": 10}
    assert unknown.status_code == 404
    assert invalid.status_code == 400
    assert refused.status_code == 402


def test_reset_forgets_jobs_assets_and_ledger_and_restores_the_accounts(client, emulator):
    """E43: POST /_emulator/reset starts again from the configuration."""
    wait_for_status(client, client.post("/images/create", json={"prompt": "p"}).json()["jobId"])
    client.post("/accounts", json={"cookie": "lt_id=x; lt_token=y; lt_refresh_token=z"})
    emulator.set_balance("user@example.com", 1)
    with httpx.Client(base_url=emulator.origin, verify=LOOPBACK_TLS) as control:
        reset = control.post("/_emulator/reset")
        ledger = control.get("/_emulator/ledger").json()
        jobs = control.get("/_emulator/jobs").json()
    assert reset.status_code == 204
    assert (ledger, jobs) == ([], [])
    assert client.get("/assets/").json()["items"] == []
    assert list(client.get("/accounts").json()) == ["user@example.com"]
    assert client.get("/accounts/user@example.com").json()["balance"] == {"LTXStudio_token": 10_000}


def test_reset_replays_the_seeded_job_durations(client, emulator):
    """E37, E43: after a reset, `latency_seed` draws the same durations as at start-up."""

    def durations() -> list[float]:
        for _ in range(3):
            client.post("/images/create", json={"prompt": "p"})
        return [job.duration_s for job in emulator.jobs()]

    first = durations()
    emulator.reset()
    assert durations() == first
