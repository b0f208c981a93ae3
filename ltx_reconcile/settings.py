"""Run-time configuration as one frozen value object.

`Settings.from_env` is the only code in the package that reads environment variables, and
only the CLI hands it `os.environ`. The token is kept as a `pydantic.SecretStr`, so a repr,
a log line or a traceback shows `**********`, never the secret; nothing formats Settings
wholesale into output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final

from ltx_reconcile.errors import UsageError

if TYPE_CHECKING:
    from pydantic import SecretStr

__all__ = ["DEFAULT_API_URL", "Settings"]

DEFAULT_API_URL: Final = "https://api.useapi.net/v1/ltxstudio"
"""The real service's base URL, prefix included (contract section 1.2)."""

DEFAULT_REQUEST_TIMEOUT_S: Final = 30.0
DEFAULT_POLL_INTERVAL_S: Final = 3.0
"""The API's own pollForResult step (contract section 3); tests shrink it."""
DEFAULT_RECOVERY_MARGIN_S: Final = 5.0
"""Contract 4.5 step 4.1: wait send time + request timeout + this before looking for a job."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a command needs to reach the API, fixed for the whole run."""

    api_url: str = DEFAULT_API_URL
    token: SecretStr | None = field(default=None, repr=False)
    email: str | None = None
    """The LTX Studio account to generate with; asked of the API when not given."""
    parallelism: int | None = None
    """Upper bound on concurrent jobs; the account's job limit (maxJobs) when not given."""
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    recovery_margin_s: float = DEFAULT_RECOVERY_MARGIN_S
    store: str | None = None
    """The artifact store: `s3://bucket/prefix` or a directory; the workspace's objects
    directory when not given (which is then a remote store's local cache)."""
    store_endpoint: str | None = None
    """The URL of an S3-compatible server; boto3's own configuration when not given."""
    state_url: str | None = field(default=None, repr=False)
    """A PostgreSQL state (`postgresql://…`, libpq's syntax and PG* variables) instead of
    the state file. Not in the repr: the URL may hold a password."""
    state_schema: str | None = None
    """The PostgreSQL schema of the state; `ltx_reconcile` when not given."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read the environment: `USEAPI_TOKEN`, `LTX_API_URL`, `LTX_EMAIL`,
        `LTX_PARALLELISM`, `LTX_STORE`, `LTX_STORE_ENDPOINT`, `LTX_STATE_URL`,
        `LTX_STATE_SCHEMA`, `LTX_REQUEST_TIMEOUT_S`,
        `LTX_POLL_INTERVAL_S` and `LTX_RECOVERY_MARGIN_S` (the last three mostly for tests
        and benchmarks). An S3 store's credentials and region are boto3's to read (the
        `AWS_*` variables and ~/.aws), so no AWS secret ever passes through Settings.

        Raises `UsageError` for a value that does not parse; its message names the
        variable and never shows the token.
        """
        token = env.get("USEAPI_TOKEN") or None
        parallelism = _number(env, "LTX_PARALLELISM", int, minimum=1)
        timeout = _number(env, "LTX_REQUEST_TIMEOUT_S", float, minimum=0.001)
        interval = _number(env, "LTX_POLL_INTERVAL_S", float, minimum=0.001)
        margin = _number(env, "LTX_RECOVERY_MARGIN_S", float, minimum=0.0)
        return cls(
            api_url=env.get("LTX_API_URL") or DEFAULT_API_URL,
            token=_secret(token) if token else None,
            email=env.get("LTX_EMAIL") or None,
            parallelism=int(parallelism) if parallelism is not None else None,
            request_timeout_s=timeout if timeout is not None else DEFAULT_REQUEST_TIMEOUT_S,
            poll_interval_s=interval if interval is not None else DEFAULT_POLL_INTERVAL_S,
            recovery_margin_s=margin if margin is not None else DEFAULT_RECOVERY_MARGIN_S,
            store=env.get("LTX_STORE") or None,
            store_endpoint=env.get("LTX_STORE_ENDPOINT") or None,
            state_url=env.get("LTX_STATE_URL") or None,
            state_schema=env.get("LTX_STATE_SCHEMA") or None,
        )

    @property
    def has_token(self) -> bool:
        """True when a token is configured (its value is never exposed here)."""
        return self.token is not None

    def with_changes(self, **changes: object) -> Settings:
        """Return a copy with the given fields replaced (flags override the environment)."""
        return replace(self, **changes)  # type: ignore[arg-type]


def _number(
    env: Mapping[str, str], name: str, kind: type[float] | type[int], *, minimum: float
) -> float | None:
    text = env.get(name)
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise UsageError(f"{name} must be a number, not {text!r}") from None
    if value < minimum:
        raise UsageError(f"{name} must be at least {minimum}, not {text!r}")
    return value


def _secret(token: str) -> SecretStr:
    # Imported only when there is a token: pydantic costs a plan 50 to 100 ms of start-up.
    from pydantic import SecretStr

    return SecretStr(token)
