"""The record of every charge and refund (E40, E43)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["LedgerEntry", "LedgerKind"]


class LedgerKind(StrEnum):
    """Which way the credits moved."""

    CHARGE = "charge"
    REFUND = "refund"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One balance change caused by a job; `amount` is always positive."""

    time_ms: int
    kind: LedgerKind
    email: str
    job_id: str
    model: str
    amount: int
    reply_ref: str | None
    request_sha256: str
    """SHA-256 of the normalised request: its generation inputs, account and given seed."""

    def to_json(self) -> dict[str, object]:
        """The entry as `GET /_emulator/ledger` shows it."""
        return {
            "time": self.time_ms,
            "kind": str(self.kind),
            "email": self.email,
            "jobId": self.job_id,
            "model": self.model,
            "amount": self.amount,
            "replyRef": self.reply_ref,
            "requestSha256": self.request_sha256,
        }
