"""The emulator as an ASGI app: `create_app(config)` assembles routes over one state.

Every request to the API surface passes the same gate, in the contract's order (E20):
an injected reset before the body is read, 401, 402 (subscription), then the endpoint's
own body reading, an injected delay or pre-acceptance error, validation and the work.
Routes raise `ApiError`; `errors.render_api_error` is the only place error bodies are
made. The state lives in the factory's closure, so two apps never share anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
import math
from collections.abc import AsyncIterator
from typing import Final

import httpx
from PIL import Image, UnidentifiedImageError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from ltx_reconcile.emulator.accounts import account_body
from ltx_reconcile.emulator.config import EmulatorConfig, FaultKind
from ltx_reconcile.emulator.connection import (
    AbortConnection,
    ResetResponse,
    TruncatedResponse,
    attach_aborter,
)
from ltx_reconcile.emulator.control import control_routes
from ltx_reconcile.emulator.errors import (
    ApiError,
    StorageError,
    render_api_error,
    render_storage_error,
)
from ltx_reconcile.emulator.faults import CREATE_ENDPOINT
from ltx_reconcile.emulator.jobs import Job, JobType
from ltx_reconcile.emulator.persistence import StateStore
from ltx_reconcile.emulator.state import EmulatorState
from ltx_reconcile.emulator.storage import STORAGE_PREFIX, expired_error
from ltx_reconcile.emulator.validation import (
    bad_request,
    check_names,
    parse_account_body,
    parse_create,
    parse_job_id,
    parse_list_query,
    read_body_items,
    resolve_email,
)
from ltx_reconcile.emulator.webhooks import WebhookSender
from ltx_reconcile.emulator.wire import (
    asset_item,
    created_body,
    scheduler_entry,
    status_body,
    upload_body,
)

__all__ = ["create_app", "open_state"]

_MAX_UPLOAD_BYTES: Final = 20 * 1024 * 1024
_REFERENCE_MIME_FORMATS: Final = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
_FAULT_MESSAGES: Final = {
    429: "Too many requests, retry later",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    596: "Account requires manual attention",
}
_NOT_EMULATED_PREFIX: Final = "Endpoint not emulated: "


def open_state(config: EmulatorConfig) -> EmulatorState:
    """A fresh state for `config`, backed by `config.state_path` when one is set (E46)."""
    store = StateStore(config.state_path) if config.state_path is not None else None
    return EmulatorState(config, store=store)


class _EmulatorApp(Starlette):
    """Starlette, plus the hook that lets a route reset its own connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # Before any middleware wraps `send`: only the server's own `send` leads to
            # the transport (see connection.py).
            attach_aborter(scope, receive, send)
        await super().__call__(scope, receive, send)


def create_app(config: EmulatorConfig, *, state: EmulatorState | None = None) -> Starlette:
    """The emulator app for `config`; pass `state` to share it with in-process helpers."""
    owns_state = state is None
    emulator_state = open_state(config) if state is None else state
    api = _Api(emulator_state)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        sender = WebhookSender(emulator_state, httpx.AsyncClient())
        api.webhooks = sender
        for job in emulator_state.pending_webhooks():
            sender.schedule(job)
        try:
            yield
        finally:
            api.webhooks = None
            await sender.aclose()
            if owns_state:
                emulator_state.close()

    routes: list[BaseRoute] = [*api.routes(config.base_path)]
    if config.test_mode:
        routes += control_routes(emulator_state)
    routes.append(Route(STORAGE_PREFIX + "{path:path}", api.storage, methods=["GET"]))
    return _EmulatorApp(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ApiError: _api_error_handler,
            StorageError: _storage_error_handler,
            AbortConnection: _abort_handler,
            HTTPException: _http_error_handler,
        },
    )


async def _api_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)  # noqa: S101  # registered for ApiError only
    return render_api_error(exc)


async def _storage_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StorageError)  # noqa: S101  # registered for StorageError only
    return render_storage_error(exc)


async def _abort_handler(_request: Request, _exc: Exception) -> Response:
    return ResetResponse()


async def _http_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # noqa: S101  # registered for HTTPException only
    return render_api_error(ApiError(exc.status_code, exc.detail))


class _Api:
    """The `/v1/ltxstudio` endpoints and the storage bucket, over one state."""

    def __init__(self, state: EmulatorState) -> None:
        self.state = state
        self.config = state.config
        self.webhooks: WebhookSender | None = None

    def routes(self, base: str) -> list[BaseRoute]:
        """The API surface under `base`; order matters where paths overlap."""
        base = base.rstrip("/")
        return [
            Route(f"{base}/images/create", self.create, methods=["POST"]),
            Route(f"{base}/images/flux-create", self.create, methods=["POST"]),
            Route(f"{base}/assets", self.list_assets, methods=["GET"]),
            Route(f"{base}/assets/", self.list_assets, methods=["GET"]),
            Route(f"{base}/assets", self.upload, methods=["POST"]),
            Route(f"{base}/assets/", self.upload, methods=["POST"]),
            Route(f"{base}/assets/{{job_id:path}}", self.status, methods=["GET"]),
            Route(f"{base}/scheduler", self.scheduler, methods=["GET"]),
            Route(f"{base}/scheduler/", self.scheduler, methods=["GET"]),
            Route(f"{base}/scheduler/available", self.available, methods=["GET"]),
            Route(f"{base}/scheduler/{{job_id:path}}", self.cancel, methods=["DELETE"]),
            Route(f"{base}/accounts", self.upsert_account, methods=["POST"]),
            Route(f"{base}/accounts/", self.upsert_account, methods=["POST"]),
            Route(f"{base}/accounts", self.list_accounts, methods=["GET"]),
            Route(f"{base}/accounts/", self.list_accounts, methods=["GET"]),
            Route(f"{base}/accounts/{{email:path}}", self.get_account, methods=["GET"]),
            Route(f"{base}/accounts/{{email:path}}", self.delete_account, methods=["DELETE"]),
            Route(f"{base}/{{rest:path}}", self.not_emulated, methods=_ALL_METHODS),
        ]

    # -- the gate ---------------------------------------------------------------------------

    async def _enter(self, request: Request, endpoint: str) -> None:
        """Reset-before-read fault, 401, 402 subscription (E19, E2, E48)."""
        if self.state.faults.before_read(endpoint) is not None:
            raise AbortConnection
        if not self._is_authorized(request.headers.get("authorization", "")):
            raise ApiError(401, "Unauthorized")
        if not self.config.subscription_active:
            raise ApiError(402, "Subscription required")

    def _is_authorized(self, header: str) -> bool:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        if not self.config.tokens:
            return True
        presented = token.encode()
        # Compare with every token, in constant time, so timing reveals nothing.
        matches = [hmac.compare_digest(presented, t.encode()) for t in self.config.tokens]
        return any(matches)

    async def _before_work(self, endpoint: str, reply_ref: str | None = None) -> None:
        """Injected delay, then an injected error that leaves no trace (E19)."""
        delay_s = self.state.faults.slow(endpoint, reply_ref)
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        hit = self.state.faults.before_accept(endpoint, reply_ref)
        if hit is not None and hit.status is not None:
            raise _fault_error(hit.status, self.config.retry_after_s)

    # -- images/create ------------------------------------------------------------------------

    async def create(self, request: Request) -> Response:
        """POST images/create (and the flux-create alias): validate, charge, answer (2.1)."""
        await self._enter(request, CREATE_ENDPOINT)
        items = await read_body_items(request)
        raw_ref = dict(items).get("replyRef")
        await self._before_work(CREATE_ENDPOINT, raw_ref if isinstance(raw_ref, str) else None)
        params = parse_create(items)
        faults = self.state.faults
        job = self.state.accept(
            params, _origin(request), lambda: faults.job_faults(params.reply_ref)
        )
        if self.webhooks is not None:
            self.webhooks.schedule(job)
        await self._after_accept(job)
        if params.poll_for_result is not None:
            return await self._poll_for_result(job, params.poll_for_result, _origin(request))
        return JSONResponse(created_body(job))

    async def _after_accept(self, job: Job) -> None:
        hit = self.state.faults.after_accept(job.params.reply_ref)
        if hit is None:
            return
        if hit.kind is FaultKind.HOLD:
            await asyncio.sleep(hit.delay_s)
        elif hit.kind is FaultKind.RESET_AFTER_ACCEPT:
            raise AbortConnection
        elif hit.status is not None:
            raise _fault_error(hit.status, self.config.retry_after_s)

    async def _poll_for_result(self, job: Job, attempts: int, origin: str) -> Response:
        """Wait up to `attempts` poll steps for the job to end (E16, E47)."""
        step_s = self.config.scaled(self.config.poll_step_s)
        for _ in range(attempts):
            await asyncio.sleep(step_s)
            read = self.state.final_status(job.job_id)
            if read is not None and read.phase.type is not JobType.ACTIVE:
                body = status_body(read, self.state.signer, origin, self.state.now_ms())
                return JSONResponse(body)
        return JSONResponse(created_body(job))

    # -- assets -------------------------------------------------------------------------------

    async def status(self, request: Request) -> Response:
        """GET assets/{jobId} (2.2)."""
        await self._enter(request, "assets/status")
        await self._before_work("assets/status")
        job_id = request.path_params["job_id"]
        parse_job_id(job_id)
        read = self.state.read_status(job_id)
        if read is None:
            raise ApiError(404, "Job not found or has expired")
        body = status_body(read, self.state.signer, _origin(request), self.state.now_ms())
        return JSONResponse(body)

    async def list_assets(self, request: Request) -> Response:
        """GET assets/ (2.3, E23)."""
        await self._enter(request, "assets/list")
        await self._before_work("assets/list")
        query = parse_list_query(list(request.query_params.multi_items()))
        email = resolve_email(query.email, self.state.account_emails())
        page = self.state.list_assets(email, query.filter, query.page, query.limit)
        origin, now = _origin(request), self.state.now_ms()
        items = [asset_item(a, self.state.signer, origin, now) for a in page.items]
        meta = {
            "totalItems": page.total,
            "itemCount": len(items),
            "itemsPerPage": query.limit,
            "totalPages": math.ceil(page.total / query.limit),
            "currentPage": query.page,
        }
        return JSONResponse({"items": items, "meta": meta})

    async def upload(self, request: Request) -> Response:
        """POST assets/: raw bytes, parameters in the query (2.4, E24)."""
        await self._enter(request, "assets/upload")
        await self._before_work("assets/upload")
        query = list(request.query_params.multi_items())
        check_names(query, ("email", "type"))
        values = dict(query)
        upload_type = values.get("type") or "image"
        if upload_type not in ("image", "reference-image"):
            raise bad_request("type must be one of: image, reference-image")
        mime = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not mime:
            raise bad_request("Content-Type header is required")
        if upload_type == "reference-image" and mime not in _REFERENCE_MIME_FORMATS:
            raise bad_request(f"Unsupported Content-Type {mime} for type=reference-image")
        content = await _read_limited(request, _MAX_UPLOAD_BYTES)
        if upload_type == "reference-image" and not _decodes_as(content, mime):
            raise bad_request(f"File is not a valid {mime} image")
        email = resolve_email(values.get("email"), self.state.account_emails())
        asset = self.state.upload(email, mime, upload_type, content)
        body = upload_body(asset, self.state.signer, _origin(request), self.state.now_ms())
        return JSONResponse(body)

    # -- scheduler ----------------------------------------------------------------------------

    async def scheduler(self, request: Request) -> Response:
        """GET scheduler (2.6, E26)."""
        await self._enter(request, "scheduler")
        await self._before_work("scheduler")
        now = self.state.now_s()
        body = [scheduler_entry(j, now) for j in self.state.executing()]
        held_s = self.state.faults.held("scheduler")
        if held_s > 0:
            await asyncio.sleep(held_s)
        return JSONResponse(body)

    async def available(self, request: Request) -> Response:
        """GET scheduler/available (2.7)."""
        await self._enter(request, "scheduler/available")
        await self._before_work("scheduler/available")
        now = self.state.now_s()
        executing = [scheduler_entry(j, now) for j in self.state.executing()]
        available = [
            {
                "email": account.email,
                "maxJobs": account.max_jobs,
                "executing": count,
                # A request's own maxJobs can push an account past its limit; never below 0.
                "available": max(0, account.max_jobs - count),
            }
            for account, count in self.state.capacity()
        ]
        return JSONResponse({"executing": executing, "available": available})

    async def cancel(self, request: Request) -> Response:
        """DELETE scheduler/{jobId} (2.8, E27, E28)."""
        await self._enter(request, "scheduler/cancel")
        await self._before_work("scheduler/cancel")
        job_id = request.path_params["job_id"]
        parse_job_id(job_id)
        if not self.state.cancel(job_id):
            raise ApiError(404, f"Unable to locate running jobId {job_id}")
        return Response(status_code=204)

    # -- accounts -----------------------------------------------------------------------------

    async def upsert_account(self, request: Request) -> Response:
        """POST accounts (2.9, E29)."""
        await self._enter(request, "accounts")
        items = await read_body_items(request)
        await self._before_work("accounts")
        account = self.state.upsert_account(parse_account_body(items))
        return JSONResponse(account_body(account, with_balance=False))

    async def list_accounts(self, request: Request) -> Response:
        """GET accounts (2.10)."""
        await self._enter(request, "accounts")
        await self._before_work("accounts")
        accounts = self.state.accounts()
        if not accounts:
            raise ApiError(
                404, "Configuration not found. To create configuration use POST /accounts."
            )
        return JSONResponse({a.email: account_body(a, with_balance=False) for a in accounts})

    async def get_account(self, request: Request) -> Response:
        """GET accounts/{email} (2.11)."""
        await self._enter(request, "accounts")
        await self._before_work("accounts")
        account = self.state.account(request.path_params["email"])
        if account is None:
            raise _unknown_account()
        return JSONResponse(account_body(account, with_balance=True))

    async def delete_account(self, request: Request) -> Response:
        """DELETE accounts/{email} (2.12, E31)."""
        await self._enter(request, "accounts")
        await self._before_work("accounts")
        if not self.state.delete_account(request.path_params["email"]):
            raise _unknown_account()
        return Response(status_code=204)

    async def not_emulated(self, request: Request) -> Response:
        """Every other path under the base: edit, upscale, videos (E32)."""
        await self._enter(request, "other")
        rest = request.path_params["rest"]
        raise ApiError(404, f"{_NOT_EMULATED_PREFIX}/{rest}")

    # -- storage ------------------------------------------------------------------------------

    async def storage(self, request: Request) -> Response:
        """GET /storage/lt-infinity-prd/…: signed artifact, upload and thumbnail bytes (E41)."""
        if "authorization" in request.headers:
            raise StorageError(400, "Authorization header must not be sent to storage URLs")
        path = request.path_params["path"]
        self.state.signer.verify(path, request.query_params, self.state.now_ms())
        asset_uuid, is_thumbnail = _asset_key(path)
        asset = self.state.asset(asset_uuid) if asset_uuid else None
        if asset is None or (not is_thumbnail and asset.storage_path != path):
            raise StorageError(404, "No such object")
        if is_thumbnail:
            thumbnail = await asyncio.to_thread(self.state.thumbnail_bytes, asset)
            return Response(thumbnail, media_type="image/webp")
        fault = self.state.take_download_fault(asset)
        if fault is None:
            hit = self.state.faults.download()
            fault = str(hit.kind) if hit is not None else None
        if fault == FaultKind.EXPIRE_EARLY:
            raise expired_error()
        content = await asyncio.to_thread(self.state.asset_bytes, asset)
        if fault == FaultKind.TRUNCATE_DOWNLOAD:
            return TruncatedResponse(content, asset.mime_type)
        if fault == FaultKind.CORRUPT_DOWNLOAD:
            content = _corrupt(content)
        return Response(content, media_type=asset.mime_type)


_ALL_METHODS: Final = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def _origin(request: Request) -> str:
    """The origin the client used, so URLs it receives point back at this emulator."""
    return f"{request.url.scheme}://{request.url.netloc}"


def _fault_error(status: int, retry_after_s: int) -> ApiError:
    headers = {"Retry-After": str(retry_after_s)} if status == 429 else None
    return ApiError(status, _FAULT_MESSAGES.get(status, "Injected fault"), headers=headers)


def _unknown_account() -> ApiError:
    return ApiError(404, "Account configuration not found for the specified email address")


async def _read_limited(request: Request, limit: int) -> bytes:
    """The body, refusing more than `limit` bytes without reading them all (E24)."""
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > limit:
            raise bad_request("File exceeds 20 MiB")
    if not chunks:
        raise bad_request("Request body is empty")
    return bytes(chunks)


def _decodes_as(content: bytes, mime: str) -> bool:
    try:
        with Image.open(io.BytesIO(content)) as image:
            image.verify()
            return image.format == _REFERENCE_MIME_FORMATS[mime]
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        # Pillow reports broken files with any of these, depending on the format.
        return False


def _asset_key(path: str) -> tuple[str | None, bool]:
    """The asset UUID a bucket path names, and whether it names the thumbnail."""
    if path.startswith("images/") and path.endswith("-thumbnail-large.webp"):
        return path.removeprefix("images/").removesuffix("-thumbnail-large.webp"), True
    name = path.rsplit("/", 1)[-1]
    return (name.removesuffix(".png") or None), False


def _corrupt(content: bytes) -> bytes:
    """Same length, some bytes flipped: only a digest or a decoder can tell."""
    damaged = bytearray(content)
    for index in range(len(damaged) // 3, len(damaged), max(1, len(damaged) // 16)):
        damaged[index] ^= 0xFF
    return bytes(damaged)
