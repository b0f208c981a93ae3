"""Finding jobs whose create answer was lost: the procedure of contract section 4.5.

A journal entry still `submitting` means a create was (maybe) sent and no job id came
back: the process died, the connection reset, or the API answered 5xx after accepting.
The API has no idempotency key, so sending again could pay twice. Instead, after the
original request can no longer be in flight, the job is looked for by the entry's unique
`replyRef`: first in the scheduler (running jobs), then among the account's images, each
of which is asked for its `replyRef` while its record lasts. What is not found is
`unknown`, and only the user may decide to pay for it again.

This module only looks; the executor journals what it finds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Sequence, Set
from dataclasses import dataclass

from ltx_reconcile.api.client import ApiClient
from ltx_reconcile.errors import ApiError, NotFoundError
from ltx_reconcile.state.records import JournalEntry

__all__ = ["Found", "find_lost_jobs", "wait_until_settled"]


@dataclass(frozen=True, slots=True)
class Found:
    """The jobs the API holds for one replyRef: the first is adopted, the rest are extra."""

    job_ids: tuple[str, ...]
    found_by: str
    """`scheduler` or `assets`."""


async def wait_until_settled(
    entries: Collection[JournalEntry],
    *,
    request_timeout_s: float,
    margin_s: float,
    clock: Callable[[], float] = time.time,
) -> None:
    """Sleep until no original request of `entries` can still be in flight (4.5 step 4.1)."""
    if not entries:
        return
    deadline = max(e.sent_at for e in entries) + request_timeout_s + margin_s
    delay = deadline - clock()
    if delay > 0:
        await asyncio.sleep(delay)


async def find_lost_jobs(
    client: ApiClient,
    entries: Sequence[JournalEntry],
    *,
    email: str,
    known_job_ids: Set[str],
) -> dict[int, Found]:
    """Look for each entry's job by replyRef; the result maps entry id -> what was found.

    Entries absent from the result were found nowhere (4.5 step 4.4: unknown).
    """
    wanted = {entry.reply_ref: entry.id for entry in entries}
    found: dict[str, list[str]] = {}
    for job in await client.scheduler():
        if job.reply_ref in wanted and job.job_id:
            found.setdefault(job.reply_ref, []).append(job.job_id)
    result = {wanted[ref]: Found(tuple(ids), "scheduler") for ref, ids in found.items()}
    missing = set(wanted) - set(found)
    if missing:
        in_assets = await _search_assets(client, missing, email=email, skip=known_job_ids)
        result.update({wanted[ref]: Found(tuple(ids), "assets") for ref, ids in in_assets.items()})
    return result


async def _search_assets(
    client: ApiClient, reply_refs: set[str], *, email: str, skip: Set[str]
) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    async for item in client.iter_assets(email=email, filter="images", limit=100):
        job_id = item.job_id
        if not job_id or job_id in skip:
            continue
        try:
            status = await client.get_job(job_id)
        except NotFoundError:
            continue  # its record expired: nothing ties it to an attempt (4.5 residual risk)
        except ApiError:
            continue
        if status.reply_ref in reply_refs:
            found.setdefault(status.reply_ref, []).append(job_id)
    return found
