"""LTX Studio accounts as the emulator keeps them (2.9 to 2.12, E29, E30, E42).

An `Account` holds the cookie parts the caller registered; the tokens inside it are
secrets and are never rendered: the wire model masks them as the docs' examples do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from ltx_reconcile.emulator.timefmt import iso_utc_ms

__all__ = ["MASK", "Account", "account_body"]

MASK: Final = "…secured…"
_DAY_MS: Final = 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class Account:
    """One configured account; `email` is stored lower-cased (E42)."""

    email: str
    lt_id: str
    max_jobs: int
    balance: int
    updated_ms: int
    latest_change_ms: int
    """Time of the last balance change (E30)."""
    lt_token: str = field(default="", repr=False)
    lt_refresh_token: str = field(default="", repr=False)


def account_body(account: Account, *, with_balance: bool) -> dict[str, object]:
    """The account model of 2.9 (and 2.11 with the balance)."""
    token_expire = account.updated_ms + 30 * _DAY_MS
    refresh_expire = account.updated_ms + 90 * _DAY_MS
    body: dict[str, object] = {
        "email": account.email,
        "cookie": {"lt_id": account.lt_id, "lt_token": MASK, "lt_refresh_token": MASK},
        "maxJobs": account.max_jobs,
        "updated": account.updated_ms,
        "updatedUTC": iso_utc_ms(account.updated_ms),
        "tokenExpire": token_expire,
        "tokenExpireUTC": iso_utc_ms(token_expire),
        "refreshTokenExpire": refresh_expire,
        "refreshTokenExpireUTC": iso_utc_ms(refresh_expire),
    }
    if with_balance:
        body["balance"] = {"LTXStudio_token": account.balance}
        body["latestCreatedAtMs"] = {"LTXStudio_token": account.latest_change_ms}
    return body
