"""How each record maps to a table row and back; the one place that knows column order.

Decoding trusts the row (the schema's CHECK constraints already validated it on the way in):
`plan` decodes 20,000 rows per run, so nothing here re-validates or parses JSON eagerly.
"""

from __future__ import annotations

from typing import Any, Final

from ltx_reconcile.state.records import (
    ArtifactRecord,
    ImageRecord,
    JournalEntry,
    JsonObject,
    Lease,
    OutputStat,
    dump_json,
)

__all__ = [
    "ARTIFACT_COLUMNS",
    "IMAGE_COLUMNS",
    "JOURNAL_COLUMNS",
    "LEASE_COLUMNS",
    "Row",
    "artifact_from_row",
    "artifact_to_row",
    "image_from_row",
    "image_to_row",
    "journal_entry_from_row",
    "lease_from_row",
    "lease_to_row",
]

Row = tuple[Any, ...]
"""A row as the sqlite3 module returns it."""

IMAGE_COLUMNS: Final = (
    "name, key, digest, output, status, inputs, "
    "output_size, output_mtime_ns, output_inode, updated_at, protect"
)
ARTIFACT_COLUMNS: Final = (
    "digest, key, size, mime, width, height, job_id, model, email, cost, created_at, "
    "source, request"
)
JOURNAL_COLUMNS: Final = (
    "id, key, image, attempt, email, reply_ref, request_digest, request, state, job_id, "
    "sent_at, updated_at, message, cost, digest, extra_of"
)
LEASE_COLUMNS: Final = (
    "lock_id, owner, pid, host, operation, acquired_at, heartbeat_at, expires_at, pid_start"
)


def image_from_row(row: Row) -> ImageRecord:
    """Decode a row selected with IMAGE_COLUMNS."""
    stat = None if row[6] is None else OutputStat(row[6], row[7], row[8])
    return ImageRecord(
        row[0], row[1], row[2], row[3], row[4], JsonObject(row[5]), stat, row[9], bool(row[10])
    )


def image_to_row(record: ImageRecord) -> dict[str, object]:
    """Encode for insertion; keys are the column names.

    `protect` is left out when false: rows are written with INSERT OR REPLACE, so the
    column's DEFAULT 0 applies, and a file still at schema 1 (no such column) stays writable.
    """
    stat = record.output_stat
    row: dict[str, object] = {
        "name": record.name,
        "key": record.key,
        "digest": record.digest,
        "output": record.output,
        "status": record.status,
        "inputs": dump_json(record.inputs),
        "output_size": None if stat is None else stat.size,
        "output_mtime_ns": None if stat is None else stat.mtime_ns,
        "output_inode": None if stat is None else stat.inode,
        "updated_at": record.updated_at,
    }
    if record.protect:
        row["protect"] = 1
    return row


def artifact_from_row(row: Row) -> ArtifactRecord:
    """Decode a row selected with ARTIFACT_COLUMNS."""
    request = None if row[12] is None else JsonObject(row[12])
    return ArtifactRecord(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        row[11],
        request,
    )


def artifact_to_row(record: ArtifactRecord) -> dict[str, object]:
    """Encode for insertion; keys are the column names."""
    return {
        "digest": record.digest,
        "key": record.key,
        "size": record.size,
        "mime": record.mime,
        "width": record.width,
        "height": record.height,
        "job_id": record.job_id,
        "model": record.model,
        "email": record.email,
        "cost": float(record.cost),
        "created_at": record.created_at,
        "source": record.source,
        "request": None if record.request is None else dump_json(record.request),
    }


def journal_entry_from_row(row: Row) -> JournalEntry:
    """Decode a row selected with JOURNAL_COLUMNS."""
    return JournalEntry(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        JsonObject(row[7]),
        row[8],
        row[9],
        row[10],
        row[11],
        row[12],
        row[13],
        row[14],
        row[15],
    )


def lease_from_row(row: Row) -> Lease:
    """Decode a row selected with LEASE_COLUMNS."""
    return Lease(*row)


def lease_to_row(lease: Lease) -> dict[str, object]:
    """Encode for insertion into the single-row lease table."""
    return {
        "id": 1,
        "lock_id": lease.lock_id,
        "owner": lease.owner,
        "pid": lease.pid,
        "host": lease.host,
        "operation": lease.operation,
        "acquired_at": lease.acquired_at,
        "heartbeat_at": lease.heartbeat_at,
        "expires_at": lease.expires_at,
        "pid_start": lease.pid_start,
    }
