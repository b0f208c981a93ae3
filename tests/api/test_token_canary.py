"""The token never leaves the Authorization header of API requests.

A unique canary token is driven through every error path of the client; then every
captured stdout/stderr line, log record, the client's repr and attributes, and every
exception's str, repr, attributes and formatted traceback (with its chained causes, and
once more with each frame's locals, as `pytest -l` or an error tracker renders them) is
searched for it.
"""

from __future__ import annotations

import functools
import logging
import traceback
import uuid
from collections.abc import Awaitable, Callable

import pytest

from ltx_reconcile.api import ApiClient, Backoff, CreateImageRequest, JobCreated, RetryPolicy
from ltx_reconcile.emulator.config import FaultConfig, FaultKind, FaultRule
from ltx_reconcile.errors import ApiError

from .conftest import Canned

pytestmark = pytest.mark.anyio

CANARY = f"user:canary-{uuid.uuid4().hex}"
ONE_TRY = RetryPolicy(
    safe=Backoff(attempts=2, first_delay_s=0.001, max_delay_s=0.002),
    create_busy=Backoff(attempts=2, first_delay_s=0.001, max_delay_s=0.002),
)
REQUEST = CreateImageRequest(email="a@b.test", prompt="p", reply_ref="ltxr:canary")


def _error(status: int, text: str) -> Canned:
    return Canned(status=status, body=f'{{"error": "{text}", "code": {status}}}'.encode())


def _leaks(exc: BaseException) -> list[str]:
    """Every text an exception can turn into, its chained causes included, that has the canary.

    `capture_locals` renders each frame's locals with repr, as `pytest -l`, rich's
    `show_locals` or an error tracker would: an object holding the token in a field with a
    plain repr leaks through it.
    """
    texts = [
        str(exc),
        repr(exc),
        repr(vars(exc)),
        "".join(traceback.format_exception(exc)),
        "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format()),
    ]
    cause = exc.__cause__ or exc.__context__
    while cause is not None:
        texts += [str(cause), repr(cause), repr(vars(cause))]
        cause = cause.__cause__ or cause.__context__
    return [text for text in texts if CANARY in text]


async def _every_failure(origin: str, tmp_path) -> list[BaseException]:
    """Make one call per queued answer (see the test) and collect what was raised."""
    calls = [
        *(("get",) for _ in range(6)),
        ("get",),  # two 429s
        ("get",),  # two 503s
        ("create",),  # 502
        ("create",),  # reset after send
        ("create",),  # garbage 200
        ("create",),  # echoed token
        ("download",),
        ("download",),
    ]
    raised: list[BaseException] = []
    async with ApiClient(origin + "/v1/ltxstudio", CANARY, retry=ONE_TRY, timeout_s=2) as client:
        assert CANARY not in repr(client)
        assert CANARY not in repr(vars(client))
        for (call,) in calls:
            try:
                if call == "get":
                    await client.get_job("email:a@b.test:1-type:image", image="hero")
                elif call == "create":
                    await client.create_image(REQUEST, image="hero")
                else:
                    await client.download(f"{origin}/storage/x.png", tmp_path, image="hero")
            except ApiError as exc:
                raised.append(exc)
    return raised


async def test_the_token_appears_in_no_output_log_or_exception(scripted, tmp_path, caplog, capfd):
    """Every error path, every log record at DEBUG, stdout and stderr: no canary anywhere."""
    scripted.queue(
        _error(400, "seed must be an integer"),
        _error(401, "Unauthorized"),
        _error(402, "Subscription required"),
        _error(402, "Insufficient credits"),
        Canned(status=412),
        _error(404, "Job not found or has expired"),
        _error(429, "busy"),
        _error(429, "busy"),
        _error(503, "down"),
        _error(503, "down"),
        _error(502, "upstream"),
        Canned(close_before_answer=True),
        Canned(status=200, body=b"garbage"),
        _error(400, f"bad token {CANARY}"),
        Canned(status=403, body=b"Request has expired", headers=(("Content-Type", "text/plain"),)),
        Canned(
            body=b"\x89PNG\r\n\x1a\nxx",
            declared_length=100,
            headers=(("Content-Type", "image/png"),),
        ),
    )
    caplog.set_level(logging.DEBUG)
    raised = await _every_failure(scripted.origin, tmp_path)
    assert len(raised) == 14
    # The token did reach the API, in the header, so the test is not vacuous.
    assert scripted.received[0].headers["authorization"] == f"Bearer {CANARY}"
    assert [leak for exc in raised for leak in _leaks(exc)] == []
    assert [r for r in caplog.records if CANARY in r.getMessage()] == []
    assert CANARY not in caplog.text
    out, err = capfd.readouterr()
    assert CANARY not in out + err


async def test_the_token_is_absent_from_connection_failures(closed_port_origin):
    """A refused connection's error, with its httpx cause, never shows the token."""
    async with ApiClient(closed_port_origin, CANARY, retry=ONE_TRY, timeout_s=2) as client:
        with pytest.raises(ApiError) as caught:
            await client.scheduler()
    assert _leaks(caught.value) == []


async def test_the_token_leaks_nowhere_across_a_run_against_the_emulator(
    start_emulator, tmp_path, caplog, capfd
):
    """Lifecycle, refusals and faults against the emulator: the canary shows up nowhere.

    The emulator runs in this process, so its own logs are searched too (E2: it never
    echoes a token).
    """
    caplog.set_level(logging.DEBUG)
    emulator = start_emulator(tokens=(CANARY,), latency_median_s={"flux": 1.0})
    email = emulator.config.accounts[0].email
    request = CreateImageRequest(email=email, prompt="p", reply_ref="ltxr:canary")
    raised: list[BaseException] = []
    rules = [
        FaultRule(FaultKind.RESET_AFTER_ACCEPT, endpoint="images/create"),
        FaultRule(FaultKind.STATUS_AFTER_ACCEPT, endpoint="images/create", status=502),
        FaultRule(FaultKind.STATUS_BEFORE_ACCEPT, endpoint="images/create", status=429, times=9),
        FaultRule(FaultKind.STATUS_BEFORE_ACCEPT, endpoint="assets/status", status=503, times=9),
    ]
    async with ApiClient(emulator.base_url, CANARY, retry=ONE_TRY, timeout_s=2) as client:
        created = await client.create_image(request)
        assert isinstance(created, JobCreated)
        status = await client.wait_for_job(created.job_id, poll_interval_s=0.002, timeout_s=5)
        url = status.artifact.asset_url if status.artifact else None
        assert url is not None
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: client.create_image(request.model_copy(update={"seed": -1})),
            lambda: client.get_job("malformed"),
            lambda: client.get_account("nobody@example.com"),
            lambda: client.download(url + "tampered", tmp_path),
        ]
        for rule in rules:
            calls.append(functools.partial(_with_fault, emulator, rule, client, request, created))
        calls.append(lambda: _broke(emulator, email, client, request))
        for call in calls:
            try:
                await call()
            except ApiError as exc:
                raised.append(exc)
    assert len(raised) == len(calls)
    kinds = [type(exc).__name__ for exc in raised]
    assert kinds == [
        "RejectedError",
        "RejectedError",
        "NotFoundError",
        "ArtifactUrlExpiredError",
        "OutcomeUnknownError",
        "OutcomeUnknownError",
        "RateLimitedError",
        "ServerError",
        "InsufficientCreditsError",
    ]
    assert [leak for exc in raised for leak in _leaks(exc)] == []
    assert CANARY not in caplog.text
    out, err = capfd.readouterr()
    assert CANARY not in out + err


async def _broke(emulator, email, client, request):
    emulator.set_faults(FaultConfig())
    emulator.set_balance(email, 0)
    return await client.create_image(request)


async def _with_fault(emulator, rule, client, request, created):
    emulator.set_faults(FaultConfig(rules=(rule,)))
    if rule.endpoint == "assets/status":
        return await client.get_job(created.job_id)
    return await client.create_image(request)
