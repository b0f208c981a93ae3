"""The async client of the LTX Studio API: the library's only way to talk to it.

`ApiClient` owns two `httpx.AsyncClient`s. The API one carries the token, and only on
requests under the configured base URL; the storage one, used for artifact downloads, has
no token at all, so the token can never reach a storage origin (contract 6), even when
storage shares the API's origin as it does in the emulator.

What it repeats, and what it never repeats (contract 4.4, 4.5):

- GETs, uploads and downloads are repeated on 429, 5xx/596 and transport failures;
- a create is repeated on 429 (no job was made) and when the connection failed before
  anything was sent;
- a create that was sent and whose answer was lost (reset, timeout, 5xx/596) raises
  `OutcomeUnknownError` at once and is never resent: the job may exist and be paid for.

It must not import the emulator: the two are independent readings of the contract.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import TYPE_CHECKING, Final, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, SecretStr, TypeAdapter, ValidationError

from ltx_reconcile.api.download import ArtifactUrlExpiredError, Download, stream_to_file
from ltx_reconcile.api.model import (
    Account,
    AssetFilter,
    AssetList,
    AssetListItem,
    CreateImageRequest,
    JobCreated,
    JobStatus,
    SchedulerAvailable,
    SchedulerEntry,
    SignedAsset,
    UploadType,
)
from ltx_reconcile.api.retry import DEFAULT_RETRY_POLICY, Backoff, RetryPolicy
from ltx_reconcile.api.status import Failure, is_transient, retry_after_s
from ltx_reconcile.errors import DownloadError
from ltx_reconcile.settings import DEFAULT_REQUEST_TIMEOUT_S

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Generator, Mapping
    from pathlib import Path
    from types import TracebackType

__all__ = ["POLL_STEP_S", "ApiClient"]

POLL_STEP_S: Final = 3.0
"""The API's own pollForResult step (contract 2.1); the emulator scales it by `time_scale`."""

_POLL_MARGIN_S: Final = 10.0
"""Added to a pollForResult wait when sizing the create's timeout (contract E47)."""

_POLL_BACKOFF_FACTOR: Final = 1.5
_POLL_BACKOFF_CAP_FACTOR: Final = 4.0
"""wait_for_job slows from `poll_interval_s` to at most 4x it: jobs take seconds, not hours."""

# Failures that prove no byte of the request reached the server, so even a create may be
# repeated. Everything else (reset, read/write timeout, protocol error) may follow a send.
_NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

_SCHEDULER: Final = TypeAdapter(list[SchedulerEntry])
_FIXED_ENDPOINTS: Final = ("images/create", "scheduler", "scheduler/available", "assets/")

_Model = TypeVar("_Model", bound=BaseModel)

_log = logging.getLogger(__name__)


class _BearerAuth(httpx.Auth):
    """Sets the token only on requests under the API's base URL."""

    def __init__(self, token: SecretStr, base_url: httpx.URL) -> None:
        self._token = token
        self._base_url = base_url

    def __repr__(self) -> str:
        return f"_BearerAuth(base_url={str(self._base_url)!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if _is_under(request.url, self._base_url):
            request.headers["Authorization"] = "Bearer " + self._token.get_secret_value()
        yield request


def _is_under(url: httpx.URL, base: httpx.URL) -> bool:
    return (url.scheme, url.netloc) == (base.scheme, base.netloc) and url.raw_path.startswith(
        base.raw_path
    )


class ApiClient:
    """Typed async access to every endpoint of the contract that ltx-reconcile uses.

    Use it as an async context manager, or call `aclose()`. Every method raises an
    `ltx_reconcile.errors.ApiError` subclass on failure, naming `image` when given.
    """

    def __init__(
        self,
        base_url: str,
        token: SecretStr | str,
        *,
        timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        retry: RetryPolicy = DEFAULT_RETRY_POLICY,
        poll_step_s: float = POLL_STEP_S,
        rng: random.Random | None = None,
    ) -> None:
        """Prepare (but do not open) connections to `base_url`, e.g. `…/v1/ltxstudio`.

        `poll_step_s` is the server's pollForResult step, used only to size a create's
        timeout; `rng` drives the retry jitter (seed it for reproducible tests).
        """
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)
        base = httpx.URL(base_url.rstrip("/") + "/")
        self._timeout_s = timeout_s
        self._retry = retry
        self._poll_step_s = poll_step_s
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter, not crypto
        self._api = httpx.AsyncClient(
            base_url=base, auth=_BearerAuth(self._token, base), timeout=timeout_s
        )
        # The fixed endpoints as absolute URLs, joined once: httpx re-parses the whole URL
        # each time it merges a relative path with the base, a tenth of a request's CPU.
        self._endpoints = {path: base.join(path) for path in _FIXED_ENDPOINTS}
        # Identity encoding: the bytes we hash and count are exactly the stored object's.
        self._storage = httpx.AsyncClient(
            timeout=timeout_s, headers={"Accept-Encoding": "identity"}
        )

    def __repr__(self) -> str:
        return f"ApiClient({str(self._api.base_url)!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close both connection pools."""
        await self._api.aclose()
        await self._storage.aclose()

    def _failure(self, action: str, image: str | None) -> Failure:
        return Failure(action=action, image=image, secret=self._token.get_secret_value())

    # -- images/create -------------------------------------------------------------------

    async def create_image(
        self, request: CreateImageRequest, *, image: str | None = None
    ) -> JobCreated | JobStatus:
        """Send one paid create; return the jobId, or the job's status when pollForResult ended.

        Repeats the request on 429 (`RetryPolicy.create_busy`) and when the connection
        failed before sending; never otherwise. Raises `RejectedError` (400),
        `UnauthorizedError`, `InsufficientCreditsError`, `RateLimitedError` (429 after the
        retries), `TransportError` (never connected) and `OutcomeUnknownError` (sent, answer
        lost or 5xx: the job may exist and be paid for; do not resend without recovery).
        """
        failure = self._failure("creating the image", image)
        timeout = self._create_timeout(request.poll_for_result)
        busy, unsent = _Attempts(self._retry.create_busy), _Attempts(self._retry.safe)
        while True:
            try:
                response = await self._api.post(
                    self._endpoints["images/create"], json=request.to_wire(), timeout=timeout
                )
            except _NOT_SENT as exc:
                if unsent.exhausted:
                    raise failure.unreachable(exc, attempts=unsent.made) from exc
                await self._pause(unsent, "create (not sent)")
                continue
            except httpx.TransportError as exc:
                raise failure.answer_lost(exc) from exc
            if response.status_code == httpx.codes.TOO_MANY_REQUESTS and not busy.exhausted:
                await self._pause(busy, "create (429)", retry_after_s=retry_after_s(response))
                continue
            if not response.is_success:
                raise failure.for_create(response)
            return _created_or_status(response, failure)

    def _create_timeout(self, poll_for_result: int | None) -> httpx.Timeout:
        # The server holds the answer for up to pollForResult steps (contract E47).
        if poll_for_result is None:
            return httpx.Timeout(self._timeout_s)
        wait_s = poll_for_result * self._poll_step_s + _POLL_MARGIN_S
        return httpx.Timeout(self._timeout_s, read=max(self._timeout_s, wait_s))

    # -- jobs --------------------------------------------------------------------------

    async def get_job(self, job_id: str, *, image: str | None = None) -> JobStatus:
        """Read a job's status (`GET /assets/{jobId}`).

        Raises `NotFoundError` when the job is unknown or its record expired.
        """
        response = await self._get(
            f"assets/{quote(job_id, safe='')}", action=f"reading job {job_id}", image=image
        )
        return self._parse(JobStatus, response, self._failure(f"reading job {job_id}", image))

    async def wait_for_job(
        self,
        job_id: str,
        *,
        poll_interval_s: float,
        timeout_s: float,
        image: str | None = None,
    ) -> JobStatus:
        """Poll until the job is done (completed with a URL) or failed, or `timeout_s` passes.

        Returns the terminal status, or the last status read when time ran out: check
        `is_done` and `is_failed`. The interval grows 1.5x per read, up to 4x the first.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        interval_s = poll_interval_s
        while True:
            status = await self.get_job(job_id, image=image)
            remaining_s = deadline - loop.time()
            if status.is_done or status.is_failed or remaining_s <= 0:
                return status
            await asyncio.sleep(min(interval_s, remaining_s))
            interval_s = min(
                interval_s * _POLL_BACKOFF_FACTOR, poll_interval_s * _POLL_BACKOFF_CAP_FACTOR
            )

    # -- assets ------------------------------------------------------------------------

    async def list_assets(
        self,
        email: str,
        *,
        page: int = 1,
        limit: int = 20,
        filter: AssetFilter | None = None,
        image: str | None = None,
    ) -> AssetList:
        """Read one page of the account's library (`GET /assets/`); the order is unspecified."""
        params: dict[str, str | int] = {"email": email, "page": page, "limit": limit}
        if filter is not None:
            params["filter"] = filter
        action = f"listing assets of {email}"
        response = await self._get("assets/", action=action, image=image, params=params)
        return self._parse(AssetList, response, self._failure(action, image))

    async def iter_assets(
        self,
        email: str,
        *,
        limit: int = 100,
        filter: AssetFilter | None = None,
        image: str | None = None,
    ) -> AsyncIterator[AssetListItem]:
        """Yield every item of the library, page by page up to `meta.totalPages`."""
        page = 1
        while True:
            listing = await self.list_assets(
                email, page=page, limit=limit, filter=filter, image=image
            )
            for item in listing.items:
                yield item
            if not listing.items or page >= listing.meta.total_pages:
                return
            page += 1

    async def upload_reference(
        self,
        data: bytes,
        mime: str,
        email: str,
        *,
        asset_type: UploadType = "reference-image",
        image: str | None = None,
    ) -> SignedAsset:
        """Upload a file (`POST /assets/`); its `file_id` is the create's `referenceAssetId`.

        Repeated like a GET (uploads are free, contract 4.4), so a lost answer may leave a
        second copy in the library; nothing is paid for it.
        """
        action = f"uploading a {asset_type} to {email}"
        response = await self._send(
            "POST",
            "assets/",
            action=action,
            image=image,
            params={"email": email, "type": asset_type},
            content=data,
            headers={"Content-Type": mime},
        )
        return self._parse(SignedAsset, response, self._failure(action, image))

    # -- scheduler and accounts -----------------------------------------------------------

    async def scheduler(self) -> list[SchedulerEntry]:
        """The jobs the API is executing now, each with its `replyRef` (`GET /scheduler`)."""
        failure = self._failure("reading the scheduler", None)
        response = await self._get("scheduler", action=failure.action, image=None)
        try:
            return _SCHEDULER.validate_json(response.content)
        except ValidationError:
            raise failure.unreadable(response) from None

    async def scheduler_available(self) -> SchedulerAvailable:
        """Executing jobs and free slots per account (`GET /scheduler/available`)."""
        action = "reading free capacity"
        response = await self._get("scheduler/available", action=action, image=None)
        return self._parse(SchedulerAvailable, response, self._failure(action, None))

    async def get_account(self, email: str) -> Account:
        """One account with its credit balance (`GET /accounts/{email}`).

        Raises `NotFoundError` when no account has that email.
        """
        action = f"reading account {email}"
        response = await self._get(f"accounts/{quote(email, safe='')}", action=action, image=None)
        return self._parse(Account, response, self._failure(action, None))

    # -- storage -----------------------------------------------------------------------

    async def download(
        self,
        url: str,
        dest_dir: Path,
        *,
        expected_size: int | None = None,
        image: str | None = None,
    ) -> Download:
        """Stream an artifact URL into a checked temp file in `dest_dir`, without the token.

        Repeats on 429, 5xx and connection failures. Raises `ArtifactUrlExpiredError` on
        any 4xx (refresh the URL through `get_job` and call again), `PartialDownloadError`
        when the body stops early, and `DownloadError` when the size or PNG check fails or
        storage stays unreachable.
        """
        failure = self._failure("downloading the artifact", image)
        attempts = _Attempts(self._retry.safe)
        while True:
            try:
                async with self._storage.stream("GET", url) as response:
                    if response.status_code == httpx.codes.OK:
                        return await stream_to_file(
                            response, dest_dir, expected_size=expected_size, image=image
                        )
                    await response.aread()
            except httpx.TransportError as exc:
                # Reading is free and changes nothing, so any failure before the body is
                # worth another try; a break inside the body is PartialDownloadError.
                if attempts.exhausted:
                    raise _download_error(failure, f"storage unreachable ({exc!r})") from exc
            else:
                if not is_transient(response.status_code) or attempts.exhausted:
                    raise _storage_refusal(failure, response)
            await self._pause(attempts, "download", retry_after_s=None)

    # -- plumbing ----------------------------------------------------------------------

    async def _get(
        self,
        path: str,
        *,
        action: str,
        image: str | None,
        params: Mapping[str, str | int] | None = None,
    ) -> httpx.Response:
        return await self._send("GET", path, action=action, image=image, params=params)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        action: str,
        image: str | None,
        params: Mapping[str, str | int] | None = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send a request that is safe to repeat; return its 2xx answer or raise."""
        failure = self._failure(action, image)
        attempts = _Attempts(self._retry.safe)
        while True:
            retry_after: float | None = None
            try:
                response = await self._api.request(
                    method,
                    self._endpoints.get(path, path),
                    params=params,
                    content=content,
                    headers=headers,
                )
            except httpx.TransportError as exc:
                if attempts.exhausted:
                    raise failure.unreachable(exc, attempts=attempts.made) from exc
            else:
                if response.is_success:
                    return response
                if not is_transient(response.status_code) or attempts.exhausted:
                    raise failure.for_status(response, attempts=attempts.made)
                retry_after = retry_after_s(response)
            await self._pause(attempts, f"{method} {path}", retry_after_s=retry_after)

    async def _pause(
        self, attempts: _Attempts, what: str, *, retry_after_s: float | None = None
    ) -> None:
        delay_s = attempts.next_delay_s(self._rng, retry_after_s=retry_after_s)
        _log.info("retrying %s in %.3f s (attempt %d)", what, delay_s, attempts.made + 1)
        await asyncio.sleep(delay_s)

    @staticmethod
    def _parse(model: type[_Model], response: httpx.Response, failure: Failure) -> _Model:
        try:
            return model.model_validate_json(response.content)
        except ValidationError:
            raise failure.unreadable(response) from None


class _Attempts:
    """Counts the tries of one request against its `Backoff`."""

    def __init__(self, backoff: Backoff) -> None:
        self._backoff = backoff
        self.made = 1
        """Tries so far, the one in flight included."""

    @property
    def exhausted(self) -> bool:
        return self.made >= self._backoff.attempts

    def next_delay_s(self, rng: random.Random, *, retry_after_s: float | None) -> float:
        delay_s = self._backoff.delay_s(self.made - 1, rng, retry_after_s=retry_after_s)
        self.made += 1
        return delay_s


def _created_or_status(response: httpx.Response, failure: Failure) -> JobCreated | JobStatus:
    """Read a create's 2xx body; a `status` field marks a finished pollForResult (E16)."""
    try:
        body = json.loads(response.content)
        if isinstance(body, dict) and "status" in body:
            return JobStatus.model_validate(body)
        return JobCreated.model_validate(body)
    except (ValueError, ValidationError):
        # The job was accepted and charged, but without a jobId it cannot be followed.
        raise failure.unreadable_create(response) from None


def _download_error(failure: Failure, detail: str) -> DownloadError:
    return DownloadError(failure.text(detail), image=failure.image)


def _storage_refusal(failure: Failure, response: httpx.Response) -> DownloadError:
    status = response.status_code
    message = failure.api_message(response)
    detail = f"storage answered HTTP {status}" + (f": {message}" if message else "")
    text = failure.text(detail)
    if httpx.codes.BAD_REQUEST <= status < httpx.codes.INTERNAL_SERVER_ERROR:
        return ArtifactUrlExpiredError(
            text,
            status=status,
            api_message=message,
            image=failure.image,
            hint="the signed URL expired or was refused; read the job again for a fresh one",
        )
    return DownloadError(text, status=status, api_message=message, image=failure.image)
