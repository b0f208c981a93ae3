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


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a command needs to reach the API, fixed for the whole run."""

    api_url: str = DEFAULT_API_URL
    token: SecretStr | None = field(default=None, repr=False)
    email: str | None = None
    """The LTX Studio account to generate with; asked of the API when not given."""
    parallelism: int | None = None
    """Upper bound on concurrent jobs; the account's free capacity when not given."""
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        """Read `USEAPI_TOKEN`, `LTX_API_URL`, `LTX_EMAIL` and `LTX_PARALLELISM`.

        Raises `UsageError` for a value that does not parse; its message names the
        variable, never its value when the variable holds a secret.
        """
        from pydantic import SecretStr

        token = env.get("USEAPI_TOKEN") or None
        parallelism_text = env.get("LTX_PARALLELISM")
        parallelism = None
        if parallelism_text:
            try:
                parallelism = int(parallelism_text)
            except ValueError:
                raise UsageError(
                    f"LTX_PARALLELISM must be a whole number, not {parallelism_text!r}"
                ) from None
        return cls(
            api_url=env.get("LTX_API_URL") or DEFAULT_API_URL,
            token=SecretStr(token) if token else None,
            email=env.get("LTX_EMAIL") or None,
            parallelism=parallelism,
        )

    def with_changes(self, **changes: object) -> Settings:
        """Return a copy with the given fields replaced (flags override the environment)."""
        return replace(self, **changes)  # type: ignore[arg-type]
