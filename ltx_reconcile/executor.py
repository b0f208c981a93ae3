"""Runs a plan: submit, follow, download, store, record, per image, never paying twice.

The executor keeps the account's job slots full (one semaphore slot per running job,
released the moment the job stops executing, so the next create goes out while the last
artifact is still downloading), and streams every image through to its named file.

Never paying twice rests on the journal (state/journal.py, contract section 4.5):
- an intent row with a fresh `replyRef` is committed *before* every create is sent;
- the job id is committed the moment the create's answer arrives;
- a 429 proves no job exists, so that attempt is closed and a new one journaled;
- a lost answer (reset, timeout, 5xx after sending) is never resent: the job is looked
  for by `replyRef`, and if it cannot be found the image is reported `unknown`;
- every apply first settles what earlier runs left open, before planning anything new.
A kill at any instant therefore leaves either no intent (nothing sent), an intent (found
again by replyRef), or a job id (followed and fetched): never a second charge.

Journal and state calls run on the state thread (state/worker.py) and are awaited: a
commit waits for the disk, and on the event loop's thread that wait stalled every other
image. Awaiting keeps the order that matters: an intent is committed before its POST is
sent. Hashing, file writes and fsync of artifacts run in worker threads too.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal, NamedTuple

from ltx_reconcile.api.client import ApiClient
from ltx_reconcile.api.model import CreateImageRequest, JobState, JobStatus
from ltx_reconcile.apply_result import ApplyOptions, ApplySummary
from ltx_reconcile.artifacts import ImageInfo, StoredObject, image_info
from ltx_reconcile.errors import (
    ApiError,
    DownloadError,
    InsufficientCreditsError,
    IntegrityError,
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    UnauthorizedError,
)
from ltx_reconcile.events import (
    BudgetReached,
    ImageDone,
    ImageFailed,
    ImageRemoved,
    ImageUnknown,
    JobAdopted,
    JobDeferred,
    JobSubmitted,
    OutputKept,
    RecoveryStarted,
    Reporter,
    StopRequested,
)
from ltx_reconcile.keys import image_key
from ltx_reconcile.outputs import OutputAction, materialise, remove_output
from ltx_reconcile.plan.model import Action, Change, Plan
from ltx_reconcile.plan.planner import inputs_view
from ltx_reconcile.recovery import find_lost_jobs, wait_until_settled
from ltx_reconcile.settings import Settings
from ltx_reconcile.spec.image import PRICES, ImageSpec
from ltx_reconcile.state.journal import Journal, JournalMark
from ltx_reconcile.state.records import (
    OPEN_JOURNAL_STATES,
    ArtifactRecord,
    ImageRecord,
    JournalEntry,
    StateSnapshot,
    Upload,
)
from ltx_reconcile.state.store import BaseStateStore
from ltx_reconcile.state.worker import StateWorker
from ltx_reconcile.store_protocol import ArtifactStoreProtocol
from ltx_reconcile.watcher import JobWatcher

__all__ = ["Executor"]

_DOWNLOAD_ATTEMPTS: Final = 4
_DEFER_MAX_S: Final = 60.0
_NOT_ACCEPTED: Final = "not accepted (429)"
_CLAIM_FIRST_POLL_S: Final = 0.1
_CLAIM_MAX_POLL_S: Final = 5.0
_DONE_POLL_S: Final = 0.25

_Outcome = Literal["generated", "resumed", "by_others"]
"""How an image's key came to have its artifact in this run."""


class _KeyNow(NamedTuple):
    """A key of a shared state as one state-thread call found it (`Executor._look_at_key`)."""

    claimed: bool
    """True: the key is ours until released; we must finish or settle it."""
    digest: str | None = None
    """Another apply of this round fetched the key's artifact: use it, pay nothing."""
    open_entries: tuple[JournalEntry, ...] = ()
    failure: str | None = None
    """Another apply of this round tried the key and the API refused or failed it."""


_UNKNOWN_MESSAGE: Final = (
    "an earlier attempt may have been paid for but its job was not found; "
    "rerun with --resubmit-unknown to pay for it again"
)


class _Skipped(Exception):  # noqa: N818 - control flow inside the executor, never escapes
    """The image was not started (stop requested, budget, or an upstream failure)."""


class _Unknown(Exception):  # noqa: N818 - control flow inside the executor, never escapes
    """The attempt's outcome is unknown; it is journaled as such."""


class _Busy(Exception):  # noqa: N818 - control flow inside the executor, never escapes
    """The API answered 429: no job was made; send again after `retry_after_s`."""

    def __init__(self, retry_after_s: float | None) -> None:
        super().__init__("no free job slot")
        self.retry_after_s = retry_after_s


class _JobFailed(Exception):  # noqa: N818 - control flow inside the executor, never escapes
    """The API reported the job failed, or refused it."""


class _FailedEarlier(Exception):  # noqa: N818 - control flow inside the executor, never escapes
    """Following an earlier run's paid job failed; already reported while settling."""


def _digest_of_request(request: Mapping[str, object]) -> str:
    canonical = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Executor:
    """Applies one plan against one account; construct it per apply, then `await run()`."""

    def __init__(
        self,
        *,
        client: ApiClient,
        store: BaseStateStore,
        journal: Journal,
        worker: StateWorker,
        artifacts: ArtifactStoreProtocol,
        root: Path,
        specs: Mapping[str, ImageSpec],
        email: str,
        settings: Settings,
        options: ApplyOptions,
        reporter: Reporter,
    ) -> None:
        self._client = client
        self._store = store
        self._journal = journal
        self._db = worker.call
        self._artifacts = artifacts
        self._root = root
        self._specs = specs
        self._email = email
        self._settings = settings
        self._options = options
        self._report = reporter
        self._watcher = JobWatcher(client, interval_s=settings.poll_interval_s)
        self.summary = ApplySummary(max_cost=options.max_cost)
        self._stopping = asyncio.Event()
        self._reserved = 0
        self._slots = asyncio.Semaphore(1)
        self._images: dict[str, asyncio.Future[str | None]] = {}
        self._keys: dict[str, asyncio.Future[str | None]] = {}
        self._settled: dict[str, asyncio.Future[str | None]] = {}
        self._settle_failures: dict[str, str] = {}
        """Key -> why following an earlier run's paid job failed (already reported)."""
        self._uploads: dict[str, asyncio.Future[str]] = {}
        self._charged_here: set[str] = set()
        """Jobs this run paid for; a refund of an earlier run's job is not this run's."""
        self._snapshot: StateSnapshot | None = None
        self._mark = JournalMark(0, frozenset())
        """On a shared state: the journal when the plan was made; entries decided since
        are other applies' work of this round (see `_look_at_key`)."""
        self._claims = asyncio.Semaphore(1)
        self._done_waiters: dict[str, asyncio.Future[str]] = {}
        """Keys another apply holds, waiting for it to fetch them (`_watch_done_keys`)."""
        self._done_watch: asyncio.Task[None] | None = None

    def request_stop(self) -> None:
        """Stop submitting; jobs already paid for are still followed and fetched."""
        if not self._stopping.is_set():
            self._stopping.set()
            self.summary.interrupted = True
            self._report(StopRequested(None, grace_s=self._options.grace_s))

    async def run(
        self,
        plan: Plan,
        snapshot: StateSnapshot,
        *,
        parallelism: int,
        mark: JournalMark | None = None,
    ) -> ApplySummary:
        """Apply every pending change of `plan`; returns the summary (never raises for one
        image's failure: failures are in the summary).

        On a shared state (`store.shared`), `mark` is the journal's when `plan` was made:
        a key's entries decided since are other applies' work of this round.
        """
        self._snapshot = snapshot
        self._slots = asyncio.Semaphore(parallelism)
        # A runner claims only the keys it can start soon, so the others find work too;
        # a few beyond its slots keep one slot's next create from waiting on a claim.
        self._claims = asyncio.Semaphore(parallelism + max(2, parallelism // 4))
        if mark is not None:
            self._mark = mark
        loop = asyncio.get_running_loop()
        pending = plan.pending
        self._images = {c.image: loop.create_future() for c in pending}
        watcher = asyncio.create_task(self._watcher.run())
        try:
            if not self._store.shared:
                self._start_settling(snapshot)
            await asyncio.gather(*(self._apply_change(c) for c in pending))
            if self._store.shared:
                await self._settle_orphans(snapshot)
            # Open entries no change asked for (specs edited after a crash) were paid for
            # too: fetch them so the artifacts are kept.
            await asyncio.gather(*self._settled.values(), return_exceptions=True)
        finally:
            watcher.cancel()
            if self._done_watch is not None:
                self._done_watch.cancel()
        return self.summary

    # -- settling what earlier runs left open -------------------------------------------

    def _start_settling(self, snapshot: StateSnapshot) -> None:
        groups = {key: entries for key, entries in snapshot.open_jobs.items() if entries}
        if not groups:
            return
        self._report(RecoveryStarted(None, entries=sum(len(e) for e in groups.values())))
        lost = [e for entries in groups.values() for e in entries if e.job_id is None]
        search = asyncio.ensure_future(self._search(lost))
        for key, entries in groups.items():
            self._settled[key] = asyncio.ensure_future(self._settle_key(entries, search))

    async def _search(self, lost: list[JournalEntry]) -> dict[int, tuple[str, ...]]:
        if not lost:
            return {}
        await wait_until_settled(
            lost,
            request_timeout_s=self._settings.request_timeout_s,
            margin_s=self._settings.recovery_margin_s,
        )
        found = await find_lost_jobs(
            self._client,
            lost,
            email=self._email,
            known_job_ids=await self._db(self._journal.known_job_ids),
        )
        for entry_id, jobs in found.items():
            await self._adopt(entry_id, jobs.job_ids, jobs.found_by)
        return {entry_id: jobs.job_ids for entry_id, jobs in found.items()}

    async def _adopt(self, entry_id: int, job_ids: tuple[str, ...], found_by: str) -> None:
        entry = await self._db(self._journal.entry, entry_id)
        await self._db(self._journal.adopt, entry_id, job_ids, cost=self._price(entry.request))
        self._report(
            JobAdopted(
                entry.image, job_id=job_ids[0], found_by=found_by, extra_jobs=len(job_ids) - 1
            )
        )

    async def _settle_key(
        self, entries: tuple[JournalEntry, ...], search: asyncio.Future[dict[int, tuple[str, ...]]]
    ) -> str | None:
        """Follow an earlier run's entries for one key; the digest of the first that yields one."""
        digest = None
        for entry in entries:
            job_id = entry.job_id
            if job_id is None:
                found = (await search).get(entry.id)
                if not found:
                    if entry.state != "unknown":
                        await self._db(
                            self._journal.mark_unknown, entry.id, "no job found for its replyRef"
                        )
                    self._report(
                        ImageUnknown(
                            entry.image,
                            message="an earlier create's answer was lost and no job was found",
                            possible_cost=self._price(entry.request),
                        )
                    )
                    continue
                job_id = found[0]
            try:
                current = await self._db(self._journal.entry, entry.id)
                got = await self._follow(current, job_id, hold_slot=True)
            except (_JobFailed, ApiError) as err:
                self._settle_failures[entry.key] = str(err)
                self._report(ImageFailed(entry.image, message=str(err)))
                continue
            digest = digest or got
        return digest

    # -- one change -----------------------------------------------------------------------

    async def _apply_change(self, change: Change) -> None:
        future = self._images[change.image]
        digest: str | None = None
        try:
            digest = await self._dispatch(change)
        except _Skipped as skip:
            self.summary.not_started.append(f"{change.image}: {skip}")
        except _Unknown as unknown:
            self.summary.unknown[change.image] = str(unknown)
        except _FailedEarlier as err:
            self.summary.failed[change.image] = str(err)
        except (_JobFailed, ApiError, IntegrityError) as err:
            self.summary.failed[change.image] = str(err)
            self._report(ImageFailed(change.image, message=str(err)))
        finally:
            if not future.done():
                future.set_result(digest)

    async def _dispatch(self, change: Change) -> str | None:
        if change.action is Action.DELETE:
            await self._delete(change)
            return None
        spec = self._specs[change.image]
        if change.action is Action.BLOCKED:
            raise _Skipped(change.reason)
        if change.action in (Action.MOVE, Action.REUSE) and change.reuse_digest is not None:
            await self._finish(spec, change, change.key, change.reuse_digest)
            return change.reuse_digest
        if change.action is Action.REUSE and change.reuse_of is not None:
            digest = await self._images[change.reuse_of]
            if digest is None:
                raise _Skipped(f"{change.reuse_of}, which shares its inputs, was not generated")
            await self._finish(spec, change, change.key, digest)
            return digest
        if change.action is Action.RESUME:
            return await self._resume(spec, change)
        return await self._generate(spec, change)

    async def _resume(self, spec: ImageSpec, change: Change) -> str | None:
        assert change.key is not None  # noqa: S101 - the planner resumes known keys only
        if self._store.shared:
            # Settled under the key's claim, like any generation (`_claimed`).
            return await self._generate(spec, change)
        settled = self._settled.get(change.key)
        digest = await settled if settled is not None else None
        if digest is not None:
            await self._finish(spec, change, change.key, digest)
            return digest
        failure = self._settle_failures.get(change.key)
        if failure is not None and not await self._has_unknown(change.key):
            # The earlier job was found and failed (refunded), or is paid for but could not
            # be fetched yet: not an unknown outcome. Reported while settling.
            self.summary.failed[change.image] = failure
            return None
        if not self._options.resubmit_unknown:
            raise _Unknown(_UNKNOWN_MESSAGE)
        # The user chose to pay again: the unknown attempts stay on record, closed, so the
        # journal takes the new attempt's intent (a key has at most one open entry).
        await self._db(self._abandon_unknown, change.key)
        return await self._generate(spec, change)

    async def _generate(self, spec: ImageSpec, change: Change) -> str:
        reference_digest = await self._reference_digest(spec, change)
        key = change.key or image_key(spec.inputs, reference_digest)
        if change.key is None:
            # The key became known only now; an artifact for it may exist after all.
            stored = self._stored_artifact(key)
            if stored is not None:
                await self._finish(spec, change, key, stored, reference_digest)
                return stored
        outcome: _Outcome = "generated"
        shared = self._keys.get(key)
        if shared is not None and change.action is not Action.REPLACE:
            digest = await shared
            if digest is None:
                raise _Skipped("an image with the same inputs was not generated")
        else:
            own: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
            self._keys.setdefault(key, own)
            try:
                if self._store.shared:
                    digest, outcome = await self._claimed(spec, key, reference_digest)
                else:
                    digest = await self._paid_generation(spec, key, reference_digest)
            except BaseException:
                own.set_result(None)
                raise
            own.set_result(digest)
        # Counted by what happened, not by what the plan expected: a resume whose job another
        # apply fetched is that apply's image, a resubmitted unknown is a generation.
        await self._finish(spec, change, key, digest, reference_digest, outcome=outcome)
        return digest

    # -- a shared state: one apply per key at a time (issue 8) ----------------------------

    async def _claimed(
        self, spec: ImageSpec, key: str, reference_digest: str | None
    ) -> tuple[str, _Outcome]:
        """Generate `key`, or settle what another apply left of it, holding its claim; or
        take the artifact another apply of this round fetched. Waits while another apply
        holds the claim: if that apply dies, its claim goes with its connection, and this
        one resumes its paid job through the journal (contract 4.5), never paying twice.
        """
        try:
            return await self._claim_or_wait(spec, key, reference_digest)
        finally:
            self._done_waiters.pop(key, None)

    async def _claim_or_wait(
        self, spec: ImageSpec, key: str, reference_digest: str | None
    ) -> tuple[str, _Outcome]:
        delay_s = _CLAIM_FIRST_POLL_S
        while True:
            async with self._claims:
                now = await self._db(self._look_at_key, key)
                if now.digest is not None:
                    return now.digest, "by_others"
                if now.claimed:
                    try:
                        return await self._with_claim(spec, key, reference_digest, now)
                    finally:
                        await self._db(self._store.release_claim, key)
            # Not while holding a permit: the permits are for keys this apply can start.
            digest = await self._done_elsewhere(key, delay_s)
            if digest is not None:
                return digest, "by_others"
            delay_s = min(delay_s * 2, _CLAIM_MAX_POLL_S)

    async def _done_elsewhere(self, key: str, timeout_s: float) -> str | None:
        """The digest, as soon as the apply holding `key` has fetched it; None after
        `timeout_s` (time to try the claim again: its holder may have died)."""
        waiter = self._done_waiters.get(key)
        if waiter is None:
            waiter = self._done_waiters[key] = asyncio.get_running_loop().create_future()
        if self._done_watch is None or self._done_watch.done():
            self._done_watch = asyncio.ensure_future(self._watch_done_keys())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait(
                (waiter, stopping), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            stopping.cancel()
        if waiter.done():
            del self._done_waiters[key]
            return waiter.result()
        if self._stopping.is_set():
            raise _Skipped("apply was stopped before it was sent")
        return None

    async def _watch_done_keys(self) -> None:
        """While keys wait, read which of them other applies fetched: one query for all of
        them a few times a second, not one per key (750 keys wait at once on 4 runners)."""
        while self._done_waiters:
            done = await self._db(self._journal.fetched_since, self._mark)
            for key, digest in done.items():
                waiter = self._done_waiters.get(key)
                if waiter is not None and not waiter.done():
                    waiter.set_result(digest)
            await asyncio.sleep(_DONE_POLL_S)

    def _look_at_key(self, key: str) -> _KeyNow:
        """Try to claim `key`, reading what the journal holds of it, in one call on the
        state thread. Another apply's fetched entry of this round (decided since the plan's
        journal mark) is the answer, claimed or not: it was paid for once already."""
        done = self._fetched_this_round(self._journal.entries_for(key))
        if done is not None:
            return _KeyNow(claimed=False, digest=done)
        if not self._store.try_claim(key):
            return _KeyNow(claimed=False)
        # Its holder may have finished and let go between the read and the claim.
        entries = self._journal.entries_for(key)
        done = self._fetched_this_round(entries)
        if done is not None:
            self._store.release_claim(key)
            return _KeyNow(claimed=False, digest=done)
        failure = next(
            (
                e.message or "no reason given"
                for e in entries
                if e.state == "failed"
                and self._mark.decided_since(e)
                and not (e.message or "").startswith(_NOT_ACCEPTED)
            ),
            None,
        )
        open_entries = tuple(e for e in entries if e.state in OPEN_JOURNAL_STATES)
        return _KeyNow(claimed=True, open_entries=open_entries, failure=failure)

    def _fetched_this_round(self, entries: list[JournalEntry]) -> str | None:
        for entry in entries:
            if entry.state == "fetched" and entry.digest and self._mark.decided_since(entry):
                return entry.digest
        return None

    async def _with_claim(
        self, spec: ImageSpec, key: str, reference_digest: str | None, now: _KeyNow
    ) -> tuple[str, _Outcome]:
        if now.failure is not None:
            # Not again in the same round: N runners would each pay for a refusal.
            raise _JobFailed(f"another apply of this state tried it and it failed: {now.failure}")
        if now.open_entries:
            lost = [e for e in now.open_entries if e.job_id is None]
            search = asyncio.ensure_future(self._search(lost))
            digest = await self._settle_key(now.open_entries, search)
            if digest is not None:
                return digest, "resumed"
            failure = self._settle_failures.get(key)
            if not await self._has_unknown(key):
                if failure is not None:
                    raise _FailedEarlier(failure)
            elif not self._options.resubmit_unknown:
                raise _Unknown(_UNKNOWN_MESSAGE)
            else:
                await self._db(self._abandon_unknown, key)
        return await self._paid_generation(spec, key, reference_digest), "generated"

    async def _settle_orphans(self, snapshot: StateSnapshot) -> None:
        """Fetch paid jobs of keys no change of this plan named (specs edited after a
        crash), those whose claim is free: a held one is its holder's to finish."""
        for key in snapshot.open_jobs.keys() - self._keys.keys():
            now = await self._db(self._look_at_key, key)
            if not now.claimed:
                continue
            try:
                if now.open_entries:
                    lost = [e for e in now.open_entries if e.job_id is None]
                    search = asyncio.ensure_future(self._search(lost))
                    await self._settle_key(now.open_entries, search)
            finally:
                await self._db(self._store.release_claim, key)

    def _abandon_unknown(self, key: str) -> None:
        """Close `key`'s unknown entries, reading and writing in one call on the state
        thread: two images of one key resume side by side, and a read before an await and a
        write after it would let both close the same entry."""
        with self._store.transaction():
            for entry in self._journal.entries_for(key):
                if entry.state == "unknown":
                    self._journal.mark_abandoned(entry.id, "sent again under --resubmit-unknown")

    async def _has_unknown(self, key: str) -> bool:
        entries = await self._db(self._journal.entries_for, key)
        return any(entry.state == "unknown" for entry in entries)

    def _stored_artifact(self, key: str) -> str | None:
        assert self._snapshot is not None  # noqa: S101 - set by run()
        artifact = self._snapshot.artifacts_by_key.get(key)
        if artifact is not None and self._artifacts.contains(artifact.digest):
            return artifact.digest
        return None

    async def _reference_digest(self, spec: ImageSpec, change: Change) -> str | None:
        reference = spec.inputs.reference
        if reference is None:
            return None
        if reference.image is not None and change.depends_on is not None:
            digest = await self._images[change.depends_on]
            if digest is None:
                raise _Skipped(f"its reference {change.depends_on} was not generated")
            return digest
        known = (change.inputs or {}).get("reference_digest")
        return str(known) if known is not None else None

    # -- paying for one image, exactly once -----------------------------------------------

    async def _paid_generation(
        self, spec: ImageSpec, key: str, reference_digest: str | None
    ) -> str:
        body: dict[str, object] = {**spec.inputs.api_fields(), "email": self._email}
        if reference_digest is not None:
            body["referenceAssetId"] = await self._reference_asset(spec, reference_digest)
        delay_s = self._options.defer_start_s
        while True:
            outcome = await self._submit(spec, key, body)
            if isinstance(outcome, tuple):
                entry, job_id = outcome
                return await self._follow(entry, job_id, hold_slot=False)
            # The API's own Retry-After when it gave one (E18), else our backoff (4.4).
            wait_s = delay_s if outcome is None else outcome
            self._report(JobDeferred(spec.name, delay_s=wait_s))
            await self._sleep_unless_stopping(wait_s)
            delay_s = min(delay_s * 2, _DEFER_MAX_S)

    async def _submit(
        self, spec: ImageSpec, key: str, body: dict[str, object]
    ) -> tuple[JournalEntry, str] | float | None:
        """Send one create under a fresh journal entry: (entry, job id), or after a 429 the
        wait the API asked for (None: it named none). The slot is held until the job stops
        executing."""
        await self._slots.acquire()
        released = False
        try:
            self._check_may_submit(spec)
            # Reserved before the first await: every other submit checks the limit against
            # it while this intent is being committed.
            self._reserved += spec.price
            try:
                entry = await self._db(
                    self._journal.record_intent,
                    key=key,
                    image=spec.name,
                    email=self._email,
                    request=body,
                    request_digest=_digest_of_request(body),
                )
            except BaseException:
                self._reserved -= spec.price  # nothing was sent
                raise
            try:
                job_id = await self._create(spec, entry, body)
            except _Busy as busy:
                self._reserved -= spec.price
                self._slots.release()
                released = True
                return busy.retry_after_s
            self._charge(spec, entry, job_id)
            watch = self._watcher.watch(job_id)
            await watch.left.wait()
            return entry, job_id
        finally:
            if not released:
                self._slots.release()

    def _check_may_submit(self, spec: ImageSpec) -> None:
        if self._stopping.is_set():
            raise _Skipped("apply was stopped before it was sent")
        limit = self._options.max_cost
        if limit is not None and self._reserved + spec.price > limit:
            self.summary.over_budget.append(spec.name)
            self._report(BudgetReached(spec.name, spent=self._reserved, limit=limit))
            raise _Skipped(f"--max-cost {limit} reached ({self._reserved} credits committed)")

    async def _create(self, spec: ImageSpec, entry: JournalEntry, body: dict[str, object]) -> str:
        """POST the create; the job id. Raises `_Busy` after a 429 (no job exists)."""
        request = CreateImageRequest.model_validate({**body, "replyRef": entry.reply_ref})
        try:
            created = await self._client.create_image(request, image=spec.name)
        except RateLimitedError as err:
            message = f"{_NOT_ACCEPTED}: {err.api_message or err}"
            await self._db(self._journal.mark_failed, entry.id, message)
            raise _Busy(err.retry_after_s) from None
        except OutcomeUnknownError:
            return await self._recover_one(spec, entry)
        except (InsufficientCreditsError, UnauthorizedError) as err:
            await self._db(
                self._journal.mark_failed, entry.id, f"refused: {err.api_message or err}"
            )
            self.summary.fatal = err
            self._stopping.set()  # every further create would be refused the same way
            raise
        except ApiError as err:
            await self._db(
                self._journal.mark_failed, entry.id, f"refused: {err.api_message or err}"
            )
            raise
        job_id = created.job_id  # a JobStatus only for pollForResult, which we never send
        if not job_id:
            return await self._recover_one(spec, entry)
        await self._db(self._journal.mark_submitted, entry.id, job_id, cost=spec.price)
        return job_id

    async def _recover_one(self, spec: ImageSpec, entry: JournalEntry) -> str:
        await wait_until_settled(
            [entry],
            request_timeout_s=self._settings.request_timeout_s,
            margin_s=self._settings.recovery_margin_s,
        )
        found = await find_lost_jobs(
            self._client,
            [entry],
            email=self._email,
            known_job_ids=await self._db(self._journal.known_job_ids),
        )
        jobs = found.get(entry.id)
        if jobs is None:
            message = "the create's answer was lost and no job was found for it"
            await self._db(self._journal.mark_unknown, entry.id, message)
            self._report(ImageUnknown(spec.name, message=message, possible_cost=spec.price))
            raise _Unknown(message + "; rerun with --resubmit-unknown to pay for it again")
        await self._adopt(entry.id, jobs.job_ids, jobs.found_by)
        return jobs.job_ids[0]

    def _charge(self, spec: ImageSpec, entry: JournalEntry, job_id: str) -> None:
        # The spend line was committed with the job id (Journal.mark_submitted).
        self._charged_here.add(job_id)
        self.summary.spent += spec.price
        self._report(JobSubmitted(spec.name, job_id=job_id, attempt=entry.attempt, cost=spec.price))

    # -- following a paid job to its artifact ---------------------------------------------

    async def _follow(self, entry: JournalEntry, job_id: str, *, hold_slot: bool) -> str:
        """Wait for a paid job and store its artifact; the digest."""
        watch = self._watcher.watch(job_id)
        if hold_slot:
            async with self._slots:
                await watch.left.wait()
        try:
            status = await watch.done
        except NotFoundError:
            status = await self._status_from_library(entry, job_id)
        if status.is_failed:
            message = status.status.message if status.status else None
            price = self._price(entry.request)
            await self._db(self._record_refund, entry, job_id, message, price)
            if job_id in self._charged_here:
                self.summary.spent -= price
            raise _JobFailed(f"the API reports the job failed: {message or 'no reason given'}")
        # Straight from submitted to fetched: a `completed` commit in between would cost a
        # disk wait per image and tell a later run nothing (it follows the job either way).
        return await self._fetch(entry, job_id, status)

    def _record_refund(
        self, entry: JournalEntry, job_id: str, message: str | None, price: int
    ) -> None:
        """One commit: the entry is closed and its refund recorded together (E40)."""
        with self._store.transaction():
            self._journal.mark_failed(entry.id, message or "the job failed")
            self._store.record_spend(
                job_id=job_id,
                key=entry.key,
                image=entry.image,
                model=str(entry.request.get("model", "flux")),
                amount=-price,
                kind="refund",
            )

    async def _fetch(self, entry: JournalEntry, job_id: str, status: JobStatus) -> str:
        last_error: Exception | None = None
        for _ in range(_DOWNLOAD_ATTEMPTS):
            artifact = status.artifact
            if (
                artifact is not None
                and artifact.asset_url
                and not artifact.is_expired(int(time.time() * 1000))
            ):
                try:
                    return await self._store_download(entry, job_id, artifact.asset_url)
                except (DownloadError, IntegrityError) as err:
                    last_error = err
            # Expired, refused, truncated or corrupt: a fresh status read signs a new URL.
            status = await self._fresh_status(job_id)
        raise DownloadError(
            f"could not download the artifact of job {job_id}: {last_error}",
            image=entry.image,
            hint="run `ltx-reconcile apply` again; the job is paid for and will be fetched",
        )

    async def _fresh_status(self, job_id: str) -> JobStatus:
        try:
            return await self._client.get_job(job_id)
        except NotFoundError:
            return await self._library_status(job_id)

    async def _status_from_library(self, entry: JournalEntry, job_id: str) -> JobStatus:
        """The status of a paid job whose record the API no longer keeps (E35)."""
        try:
            return await self._library_status(job_id)
        except NotFoundError:
            # Not in the library either: a failed job leaves no asset (contract 4.5, 4).
            await self._db(
                self._journal.mark_failed, entry.id, "its record expired and it left no image"
            )
            raise _JobFailed(
                f"job {job_id}'s record expired and the account's library has no image "
                "of it: the job failed, or its image was deleted in LTX Studio"
            ) from None

    async def _library_status(self, job_id: str) -> JobStatus:
        """A completed status signed afresh from the asset listing, which outlives job
        records (contract 6: refresh through the listing once the record is gone).

        Raises `NotFoundError` when no listed image has this job id.
        """
        async for item in self._client.iter_assets(self._email, filter="images"):
            if item.job_id == job_id and item.signed_asset is not None:
                return JobStatus(
                    status=JobState(type="completed", progress=100, artifact=item.signed_asset),
                    job_id=job_id,
                )
        raise NotFoundError(f"no image of job {job_id} in the library of {self._email}")

    async def _store_download(self, entry: JournalEntry, job_id: str, url: str) -> str:
        download = await self._client.download(url, self._artifacts.temp_dir())
        stored = await asyncio.to_thread(
            self._artifacts.put_file, download.path, expected_digest=download.sha256, move=True
        )
        info = await asyncio.to_thread(image_info, stored.path)
        await self._db(self._record_fetched, entry, job_id, stored, info)
        return stored.digest

    def _record_fetched(
        self, entry: JournalEntry, job_id: str, stored: StoredObject, info: ImageInfo
    ) -> None:
        """One commit: the artifact's row and its entry's close."""
        now = time.time()
        with self._store.transaction():
            self._store.put_artifact(
                ArtifactRecord(
                    digest=stored.digest,
                    key=entry.key,
                    size=stored.size,
                    mime=info.mime,
                    width=info.width,
                    height=info.height,
                    job_id=job_id,
                    model=str(entry.request.get("model", "flux")),
                    email=entry.email,
                    cost=self._price(entry.request),
                    created_at=now,
                    source="generated",
                    request=entry.request,
                )
            )
            self._journal.mark_fetched(entry.id, stored.digest, cost=self._price(entry.request))

    async def _reference_asset(self, spec: ImageSpec, digest: str) -> str:
        """The API fileId of the reference bytes, uploaded once per digest and account."""
        assert self._snapshot is not None  # noqa: S101 - set by run()
        cached = self._snapshot.uploads.get((digest, self._email))
        if cached is not None:
            return cached
        pending = self._uploads.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._upload(spec, digest))
            self._uploads[digest] = pending
        return await pending

    async def _upload(self, spec: ImageSpec, digest: str) -> str:
        reference = spec.inputs.reference
        assert reference is not None  # noqa: S101 - only called for images with a reference
        source = self._artifacts.path_for(digest) if reference.image is not None else reference.file
        assert source is not None  # noqa: S101 - a Reference holds exactly one
        data = await asyncio.to_thread(source.read_bytes)
        if hashlib.sha256(data).hexdigest() != digest:
            raise IntegrityError(f"reference file {source} changed since it was planned")
        info = await asyncio.to_thread(image_info, source)
        uploaded = await self._client.upload_reference(
            data, mime=info.mime, email=self._email, image=spec.name
        )
        file_id = uploaded.file_id
        if not file_id:
            raise DownloadError("the API accepted the reference upload but returned no fileId")
        upload = Upload(digest=digest, email=self._email, file_id=file_id, uploaded_at=time.time())
        await self._db(self._store.put_upload, upload)
        return file_id

    # -- recording the result -------------------------------------------------------------

    async def _finish(
        self,
        spec: ImageSpec,
        change: Change,
        key: str | None,
        digest: str,
        reference_digest: str | None = None,
        *,
        outcome: _Outcome | None = None,
    ) -> None:
        """Write the output file and the image's record; count the image by `outcome`, or
        without one by its change's action."""
        assert self._snapshot is not None  # noqa: S101 - set by run()
        previous = self._snapshot.images.get(change.moved_from or spec.name)
        destination = self._root / spec.output
        same_file = previous is not None and previous.output == spec.output
        result = await asyncio.to_thread(
            materialise,
            self._artifacts,
            digest,
            destination,
            recorded=previous.output_stat if previous and same_file else None,
            recorded_digest=previous.digest if previous and same_file else None,
        )
        if result.action is OutputAction.USER_MODIFIED:
            self.summary.outputs_kept.append(spec.output)
            self._report(OutputKept(spec.name, path=spec.output))
        inputs = change.inputs
        if change.key is None or reference_digest is not None:
            inputs = inputs_view(spec, reference_digest)
        record = ImageRecord(
            name=spec.name,
            key=key or "",
            digest=digest,
            output=spec.output,
            status="present",
            inputs=dict(inputs or {}),
            output_stat=result.stat,
            updated_at=time.time(),
            protect=spec.protect,
        )
        await self._db(
            self._record_image, record, change.moved_from, unless_recorded=outcome == "by_others"
        )
        if previous is not None and not same_file:
            # Renamed, or its `output` moved: the old file is no image's any more (and is
            # removed only if it is still as we wrote it).
            await asyncio.to_thread(
                remove_output,
                self._root / previous.output,
                recorded=previous.output_stat,
                recorded_digest=previous.digest,
            )
        if outcome is None:
            self._count(change)
        else:
            done = {
                "generated": self.summary.generated,
                "resumed": self.summary.resumed,
                "by_others": self.summary.by_others,
            }
            done[outcome].append(spec.name)
        self._report(
            ImageDone(spec.name, action=change.action.value, digest=digest, output=spec.output)
        )

    def _record_image(
        self, record: ImageRecord, moved_from: str | None, *, unless_recorded: bool = False
    ) -> None:
        """One commit: the image's row, and for a move the old name's removal.

        `unless_recorded`: nothing to do if the row already names this key, digest, output
        and protect. Another runner that made the image records it too; every runner
        writing every image again cost a commit under the state's write lock, 750 per
        runner of four (only the output file's stat would differ, and it is per machine).
        """
        if unless_recorded and moved_from is None:
            current = self._store.image(record.name)
            if current is not None and (
                current.key,
                current.digest,
                current.output,
                current.protect,
                current.status,
            ) == (record.key, record.digest, record.output, record.protect, record.status):
                return
        with self._store.transaction():
            if moved_from is not None:
                self._store.remove_image(moved_from)
            self._store.put_image(record)

    def _count(self, change: Change) -> None:
        if change.action is Action.MOVE:
            self.summary.moved.append(change.image)
        elif change.action is Action.REUSE:
            self.summary.reused.append(change.image)
        elif change.action is Action.RESUME:
            self.summary.resumed.append(change.image)

    async def _delete(self, change: Change) -> None:
        assert self._snapshot is not None  # noqa: S101 - set by run()
        previous = self._snapshot.images.get(change.image)
        await self._db(self._store.remove_image, change.image)
        removed = False
        if previous is not None:
            removed = await asyncio.to_thread(
                remove_output,
                self._root / previous.output,
                recorded=previous.output_stat,
                recorded_digest=previous.digest,
            )
            if not removed and (self._root / previous.output).exists():
                self.summary.outputs_kept.append(previous.output)
                self._report(OutputKept(change.image, path=previous.output))
        self.summary.deleted.append(change.image)
        self._report(ImageRemoved(change.image, output_removed=removed))

    # -- helpers --------------------------------------------------------------------------

    @staticmethod
    def _price(request: Mapping[str, object]) -> int:
        return PRICES.get(str(request.get("model", "flux")), 0)

    async def _sleep_unless_stopping(self, delay_s: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), timeout=delay_s)
        except TimeoutError:
            return
        raise _Skipped("apply was stopped before it was sent")
