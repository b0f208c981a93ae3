"""The test-mode control surface under `/_emulator/` (E43).

Only served when the emulator runs in test mode, and never under the API prefix, so a
client of the real service can never reach it. It shows the ledger and the jobs, replaces
the fault configuration at run time, resets the state and sets balances: the same powers
`server.RunningEmulator` gives an in-process test, for an emulator in another process.
Bodies are validated with pydantic here, at the boundary.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar

import pydantic
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ltx_reconcile.emulator.accounts import account_body
from ltx_reconcile.emulator.config import FaultConfig, FaultKind, FaultRule
from ltx_reconcile.emulator.errors import ApiError
from ltx_reconcile.emulator.jobs import Job, phase
from ltx_reconcile.emulator.state import EmulatorState
from ltx_reconcile.emulator.timefmt import now_ms

__all__ = ["CONTROL_PREFIX", "FaultConfigModel", "control_routes", "job_summary"]

CONTROL_PREFIX = "/_emulator"
_M = TypeVar("_M", bound=pydantic.BaseModel)


class FaultRuleModel(pydantic.BaseModel):
    """A scripted fault rule as JSON (`config.FaultRule`)."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    kind: FaultKind
    endpoint: str | None = None
    reply_ref_contains: str | None = None
    times: int = pydantic.Field(default=1, ge=1)
    status: int | None = None
    delay_s: float | None = pydantic.Field(default=None, ge=0)
    message: str | None = None


class FaultConfigModel(pydantic.BaseModel):
    """A whole fault configuration as JSON (`config.FaultConfig`); omitted fields are off."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    rules: tuple[FaultRuleModel, ...] = ()
    reset_before_read_rate: float = pydantic.Field(default=0.0, ge=0, le=1)
    status_before_accept_rate: float = pydantic.Field(default=0.0, ge=0, le=1)
    status_before_accept_codes: tuple[int, ...] = (429, 500, 502, 503, 596)
    status_after_accept_rate: float = pydantic.Field(default=0.0, ge=0, le=1)
    status_after_accept_codes: tuple[int, ...] = (500, 502, 503)
    reset_after_accept_rate: float = pydantic.Field(default=0.0, ge=0, le=1)
    slow_rate: float = pydantic.Field(default=0.0, ge=0, le=1)
    slow_delay_s: float = pydantic.Field(default=1.0, ge=0)
    hold_create_s: float = pydantic.Field(default=0.0, ge=0)
    job_failure_rate: float = pydantic.Field(default=0.0, ge=0, le=1)
    lag_window_rate: float = pydantic.Field(default=0.0, ge=0, le=1)
    lag_window_s: float = pydantic.Field(default=1.0, ge=0)
    truncate_download_rate: float = pydantic.Field(default=0.0, ge=0, le=1)
    corrupt_download_rate: float = pydantic.Field(default=0.0, ge=0, le=1)
    early_expiry_rate: float = pydantic.Field(default=0.0, ge=0, le=1)
    duplicate_webhook_rate: float = pydantic.Field(default=0.0, ge=0, le=1)

    def to_config(self) -> FaultConfig:
        """The frozen dataclass the emulator runs on."""
        fields = self.model_dump(exclude={"rules"})
        rules = tuple(FaultRule(**rule.model_dump()) for rule in self.rules)
        return FaultConfig(**fields, rules=rules)

    @classmethod
    def from_config(cls, config: FaultConfig) -> FaultConfigModel:
        """The JSON form of a running configuration."""
        return cls.model_validate(dataclasses.asdict(config))


class _BalanceModel(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    balance: int


def job_summary(job: Job, now_s: float) -> dict[str, object]:
    """What `GET /_emulator/jobs` shows of a job (more than the API ever does)."""
    current = phase(job, now_s)
    return {
        "jobId": job.job_id,
        "email": job.email,
        "model": job.params.model,
        "replyRef": job.params.reply_ref,
        "replyUrl": job.params.reply_url,
        "type": str(current.type),
        "progress": current.progress,
        "message": current.message,
        "acceptedMs": now_ms(job.accepted_s),
        "endsMs": now_ms(job.ends_s),
        "cancelled": job.cancelled,
        "price": job.price,
        "requestSha256": job.request_sha256,
        "fileId": f"asset:{job.file_uuid}-type:image/png",
    }


def control_routes(state: EmulatorState) -> list[BaseRoute]:
    """The `/_emulator/` routes over `state`."""

    async def ledger(_request: Request) -> Response:
        return JSONResponse([entry.to_json() for entry in state.ledger()])

    async def jobs(_request: Request) -> Response:
        now = state.now_s()
        return JSONResponse([job_summary(job, now) for job in state.jobs()])

    async def get_faults(_request: Request) -> Response:
        return JSONResponse(FaultConfigModel.from_config(state.faults.config).model_dump())

    async def set_faults(request: Request) -> Response:
        model = _parse(FaultConfigModel, await request.body())
        state.faults.replace(model.to_config())
        return JSONResponse(model.model_dump())

    async def reset(_request: Request) -> Response:
        state.reset()
        return Response(status_code=204)

    async def set_balance(request: Request) -> Response:
        body = _parse(_BalanceModel, await request.body())
        try:
            account = state.set_balance(request.path_params["email"], body.balance)
        except KeyError:
            raise ApiError(
                404, "Account configuration not found for the specified email address"
            ) from None
        return JSONResponse(account_body(account, with_balance=True))

    prefix = CONTROL_PREFIX
    return [
        Route(f"{prefix}/ledger", ledger, methods=["GET"]),
        Route(f"{prefix}/jobs", jobs, methods=["GET"]),
        Route(f"{prefix}/faults", get_faults, methods=["GET"]),
        Route(f"{prefix}/faults", set_faults, methods=["POST"]),
        Route(f"{prefix}/reset", reset, methods=["POST"]),
        Route(f"{prefix}/accounts/{{email}}/balance", set_balance, methods=["POST"]),
    ]


def _parse(model: type[_M], body: bytes) -> _M:
    try:
        return model.model_validate_json(body or b"{}")
    except pydantic.ValidationError as err:
        raise ApiError(400, _first_error(err)) from None


def _first_error(err: pydantic.ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else str(first["msg"])
