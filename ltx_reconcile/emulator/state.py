"""Everything one emulator remembers, and the only code that changes it.

`EmulatorState` owns the accounts, jobs, assets and ledger of one emulator, behind one
lock, because routes run on the server's event loop while tests call the same object from
their own thread. Admission is one step under that lock (check capacity, charge, register),
so concurrent creates can never overshoot `maxJobs` (E18). Terminal side effects, the
refund of a failed job and the asset of a completed one, are recorded lazily by `_settle`,
dated at the job's end, before any read; nothing here waits or does I/O except through the
optional `StateStore`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ltx_reconcile.emulator.accounts import Account
from ltx_reconcile.emulator.assets import Asset, AssetKind
from ltx_reconcile.emulator.config import EmulatorConfig, FaultKind
from ltx_reconcile.emulator.errors import ApiError
from ltx_reconcile.emulator.faults import DOWNLOAD_KINDS, FaultHit, FaultInjector
from ltx_reconcile.emulator.images import (
    ImageSpec,
    render_placeholder,
    render_png,
    render_thumbnail,
)
from ltx_reconcile.emulator.jobs import (
    FAILURE_MESSAGES,
    Job,
    JobPhase,
    JobType,
    draw_duration_s,
    phase,
)
from ltx_reconcile.emulator.ledger import LedgerEntry, LedgerKind
from ltx_reconcile.emulator.persistence import StateStore
from ltx_reconcile.emulator.storage import UrlSigner
from ltx_reconcile.emulator.timefmt import now_ms
from ltx_reconcile.emulator.validation import (
    AccountParams,
    CreateParams,
    bad_request,
    resolve_email,
)

__all__ = ["AssetPage", "EmulatorState", "StatusRead"]

_EMULATED_DOMAIN: Final = "ltx-emulator.test"


@dataclass(frozen=True, slots=True)
class StatusRead:
    """A job's state as one status read sees it."""

    job: Job
    phase: JobPhase
    has_artifact: bool


@dataclass(frozen=True, slots=True)
class AssetPage:
    """One page of an account's library, newest first."""

    items: tuple[Asset, ...]
    total: int


class EmulatorState:
    """Accounts, jobs, assets and ledger of one emulator; every method is thread-safe."""

    def __init__(
        self,
        config: EmulatorConfig,
        *,
        store: StateStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.faults = FaultInjector(config.faults)
        self._store = store
        self._clock = clock
        self._lock = threading.RLock()
        self._seed_rngs()
        self._image_cache: dict[str, bytes] = {}
        self._thumbnail_cache: dict[str, bytes] = {}
        self._lag_reads: dict[str, int] = {}
        self._download_faults: dict[str, str] = {}
        key = store.signing_key() if store is not None else secrets.token_bytes(32)
        self.signer = UrlSigner(key, config.scaled(config.url_ttl_s))
        self._load()

    # -- lifecycle of the whole state ---------------------------------------------------------

    def _seed_rngs(self) -> None:
        # Seeded when asked (latency_seed) so a benchmark replays the same durations, also
        # after a reset.
        self._latency_rng = random.Random(self.config.latency_seed)  # noqa: S311
        self._outcome_rng = random.Random(self.config.faults.seed)  # noqa: S311

    def _load(self) -> None:
        self._accounts: dict[str, Account] = {}
        self._jobs: dict[str, Job] = {}
        self._assets: dict[str, Asset] = {}
        self._ledger: list[LedgerEntry] = []
        self._seq = 0
        if self._store is not None and self._store.has_data():
            snapshot = self._store.load()
            self._accounts = {a.email: a for a in snapshot.accounts}
            self._jobs = {j.job_id: j for j in snapshot.jobs}
            self._assets = {a.uuid: a for a in snapshot.assets}
            self._ledger = list(snapshot.ledger)
            self._seq = max((a.seq for a in snapshot.assets), default=0)
            return
        now = self.now_ms()
        for configured in self.config.accounts:
            balance = configured.balance
            account = Account(
                email=configured.email.lower(),
                lt_id=configured.email.split("@")[0],
                max_jobs=configured.max_jobs,
                balance=self.config.starting_balance if balance is None else balance,
                updated_ms=now,
                latest_change_ms=now,
            )
            self._put_account(account)

    def reset(self) -> None:
        """Forget everything and start again from the configuration (E43 reset)."""
        with self._lock:
            if self._store is not None:
                self._store.clear()
            self._image_cache.clear()
            self._thumbnail_cache.clear()
            self._lag_reads.clear()
            self._download_faults.clear()
            self.faults.replace(self.config.faults)
            self._seed_rngs()
            self._load()

    def close(self) -> None:
        """Close the state file, if there is one."""
        if self._store is not None:
            self._store.close()

    def now_s(self) -> float:
        """The emulator's clock, in seconds since the epoch."""
        return self._clock()

    def now_ms(self) -> int:
        """The emulator's clock, in ms since the epoch."""
        return now_ms(self._clock())

    # -- accounts -----------------------------------------------------------------------------

    def account_emails(self) -> list[str]:
        """Configured emails, in creation order."""
        with self._lock:
            return list(self._accounts)

    def accounts(self) -> list[Account]:
        """Every configured account, settled."""
        with self._lock:
            self._settle()
            return list(self._accounts.values())

    def account(self, email: str) -> Account | None:
        """One account by email, compared case-insensitively (E42)."""
        with self._lock:
            self._settle()
            return self._accounts.get(email.lower())

    def upsert_account(self, params: AccountParams) -> Account:
        """POST /accounts: create or update by the email derived from `lt_id` (E29)."""
        email = f"{params.lt_id}@{_EMULATED_DOMAIN}".lower()
        now = self.now_ms()
        with self._lock:
            old = self._accounts.get(email)
            if old is None:
                balance, changed = self.config.starting_balance, now
                max_jobs = params.max_jobs or 20
            else:
                balance, changed = old.balance, old.latest_change_ms
                max_jobs = params.max_jobs or old.max_jobs
            account = Account(
                email=email,
                lt_id=params.lt_id,
                max_jobs=max_jobs,
                balance=balance,
                updated_ms=now,
                latest_change_ms=changed,
                lt_token=params.lt_token,
                lt_refresh_token=params.lt_refresh_token,
            )
            self._put_account(account)
            return account

    def delete_account(self, email: str) -> bool:
        """DELETE /accounts/{email}; its running jobs go on (E31). False if unknown."""
        with self._lock:
            removed = self._accounts.pop(email.lower(), None)
            if removed is not None and self._store is not None:
                self._store.delete_account(removed.email)
            return removed is not None

    def set_balance(self, email: str, balance: int) -> Account:
        """Set an account's credits (E43); raises KeyError for an unknown email."""
        with self._lock:
            account = self._accounts[email.lower()]
            updated = dataclasses.replace(account, balance=balance, latest_change_ms=self.now_ms())
            self._put_account(updated)
            return updated

    def _put_account(self, account: Account) -> None:
        self._accounts[account.email] = account
        if self._store is not None:
            self._store.save_account(account)

    # -- creating jobs ------------------------------------------------------------------------

    def accept(
        self,
        params: CreateParams,
        origin: str,
        draw_faults: Callable[[], tuple[FaultHit, ...]] = tuple,
    ) -> Job:
        """Rows 22 to 25, then credits (402), capacity (429), then charge and register.

        `draw_faults` is called only once the job is admitted, so a scripted fault is not
        used up by a request that is refused.
        """
        with self._lock:
            self._settle()
            email = resolve_email(params.email, list(self._accounts))
            reference_digest = self._reference_digest(params, email)
            account = self._accounts[email]
            price = self.config.prices[params.model]
            if account.balance < price:
                raise ApiError(
                    402,
                    f"Insufficient credits: model {params.model} costs {price}, "
                    f"account {email} has {account.balance}",
                )
            now = self.now_s()
            executing = sum(
                1 for j in self._jobs.values() if j.email == email and j.is_executing(now)
            )
            limit = params.max_jobs or account.max_jobs
            if executing >= limit:
                raise ApiError(
                    429,
                    f"Account {email} is executing {executing} of {limit} jobs, retry later",
                    headers={"Retry-After": str(self.config.retry_after_s)},
                )
            hits = draw_faults()
            job = self._new_job(params, email, origin, reference_digest, executing, price, hits)
            self._charge(account, job)
            self._put_job(job)
            return job

    def _reference_digest(self, params: CreateParams, email: str) -> str | None:
        """Row 25: the reference must be this account's image; its bytes decide the picture."""
        if params.reference_asset_id is None:
            return None
        reference = params.reference_asset_id
        asset = next(
            (a for a in self._assets.values() if a.file_id == reference and a.email == email),
            None,
        )
        if asset is None:
            raise bad_request(f"referenceAssetId {reference} not found for account {email}")
        if not asset.is_reference_image:
            raise bad_request(f"referenceAssetId {reference} is not an image usable as a reference")
        if asset.content is not None:
            return hashlib.sha256(asset.content).hexdigest()
        assert asset.image is not None  # noqa: S101  # an artifact always has its drawing.
        return asset.image.digest().hex()

    def _new_job(
        self,
        params: CreateParams,
        email: str,
        origin: str,
        reference_digest: str | None,
        executing: int,
        price: int,
        hits: tuple[FaultHit, ...],
    ) -> Job:
        config = self.config
        job_uuid = str(uuid.uuid4())
        request_sha256 = _request_digest(params, email)
        by_kind = {hit.kind: hit for hit in hits}
        failure = self._failure_message(by_kind.get(FaultKind.FAIL_JOB))
        lag = by_kind.get(FaultKind.LAG_WINDOW)
        download = next((h for h in hits if h.kind in DOWNLOAD_KINDS), None)
        return Job(
            job_id=f"email:{email}:{job_uuid}-type:image",
            uuid=job_uuid,
            generation_id=f"gen_{secrets.token_hex(6)}",
            email=email,
            params=params,
            price=price,
            request_sha256=request_sha256,
            effective_seed=self._effective_seed(params, request_sha256),
            reference_digest=reference_digest,
            file_uuid=str(uuid.uuid4()),
            origin=origin,
            accepted_s=self.now_s(),
            duration_s=draw_duration_s(
                self._latency_rng,
                config.latency_median_s[params.model],
                config.latency_sigma,
                executing,
                config.time_scale,
            ),
            failure_message=failure,
            fail_fraction=self._outcome_rng.uniform(0.2, 0.9) if failure else 1.0,
            lag_window_s=(lag.delay_s or config.faults.lag_window_s) if lag else 0.0,
            duplicate_webhook=FaultKind.DUPLICATE_WEBHOOK in by_kind,
            download_fault=str(download.kind) if download else None,
            noise_seed=self._outcome_rng.randrange(2**32)
            if config.nondeterministic_output
            else None,
        )

    def _failure_message(self, hit: FaultHit | None) -> str | None:
        if hit is None:
            return None
        return hit.message or self._outcome_rng.choice(FAILURE_MESSAGES)

    def _effective_seed(self, params: CreateParams, request_sha256: str) -> int:
        """The given seed, else a random one, or one derived from the request (E45)."""
        if params.seed is not None:
            return params.seed
        if self.config.unseeded == "derive":
            return int(request_sha256[:8], 16)
        return secrets.randbelow(2**32)

    def _charge(self, account: Account, job: Job) -> None:
        entry = self._ledger_entry(job, LedgerKind.CHARGE, now_ms(job.accepted_s))
        self._put_account(
            dataclasses.replace(
                account, balance=account.balance - job.price, latest_change_ms=entry.time_ms
            )
        )
        self._append_ledger(entry)

    def _ledger_entry(self, job: Job, kind: LedgerKind, time_ms: int) -> LedgerEntry:
        return LedgerEntry(
            time_ms=time_ms,
            kind=kind,
            email=job.email,
            job_id=job.job_id,
            model=job.params.model,
            amount=job.price,
            reply_ref=job.params.reply_ref,
            request_sha256=job.request_sha256,
        )

    def _append_ledger(self, entry: LedgerEntry) -> None:
        self._ledger.append(entry)
        if self._store is not None:
            self._store.add_ledger(entry)

    def _put_job(self, job: Job) -> None:
        self._jobs[job.job_id] = job
        if self._store is not None:
            self._store.save_job(job)

    # -- settling terminal jobs ---------------------------------------------------------------

    def _settle(self) -> None:
        """Record refunds and assets of jobs that ended, and forget expired records (E35)."""
        now = self.now_s()
        for job in list(self._jobs.values()):
            if not job.settled and now >= job.ends_s:
                self._settle_job(job)
            elif job.settled and now > job.ends_s + self.config.job_ttl_s:
                del self._jobs[job.job_id]
                self._lag_reads.pop(job.job_id, None)
                if self._store is not None:
                    self._store.delete_job(job.job_id)

    def _settle_job(self, job: Job) -> None:
        ended_ms = now_ms(job.ends_s)
        if job.fails:
            account = self._accounts.get(job.email)
            if self.config.refund_failed_jobs:
                self._append_ledger(self._ledger_entry(job, LedgerKind.REFUND, ended_ms))
                # A deleted account keeps no balance to refund into; the ledger still says so.
                if account is not None:
                    self._put_account(
                        dataclasses.replace(
                            account,
                            balance=account.balance + job.price,
                            latest_change_ms=ended_ms,
                        )
                    )
        else:
            self._seq += 1
            asset = Asset(
                uuid=job.file_uuid,
                item_id=job.uuid,
                email=job.email,
                mime_type="image/png",
                kind=AssetKind.ARTIFACT,
                created_ms=ended_ms,
                seq=self._seq,
                job_id=job.job_id,
                image=_image_spec(job),
            )
            self._put_asset(asset)
            if job.download_fault is not None:
                self._download_faults[asset.uuid] = job.download_fault
        self._put_job(dataclasses.replace(job, settled=True))

    def _put_asset(self, asset: Asset) -> None:
        self._assets[asset.uuid] = asset
        if self._store is not None:
            self._store.save_asset(asset)

    # -- reading jobs -------------------------------------------------------------------------

    def read_status(self, job_id: str) -> StatusRead | None:
        """One GET /assets/{jobId}: the first reads after completion omit the artifact (E34)."""
        with self._lock:
            self._settle()
            job = self._jobs.get(job_id)
            if job is None:
                return None
            now = self.now_s()
            current = phase(job, now)
            if current.type is not JobType.COMPLETED:
                return StatusRead(job, current, has_artifact=False)
            reads = self._lag_reads.get(job_id, 0)
            self._lag_reads[job_id] = reads + 1
            lagging = reads < self.config.artifact_lag_reads or now < job.ends_s + job.lag_window_s
            return StatusRead(job, current, has_artifact=not lagging)

    def final_status(self, job_id: str) -> StatusRead | None:
        """The job's state for a webhook or pollForResult: the artifact is always present."""
        with self._lock:
            self._settle()
            job = self._jobs.get(job_id)
            if job is None:
                return None
            current = phase(job, self.now_s())
            return StatusRead(job, current, has_artifact=current.type is JobType.COMPLETED)

    def job(self, job_id: str) -> Job | None:
        """A job record, without counting as a status read."""
        with self._lock:
            self._settle()
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        """Every retained job, oldest first."""
        with self._lock:
            self._settle()
            return sorted(self._jobs.values(), key=lambda j: j.accepted_s)

    def executing(self) -> list[Job]:
        """The scheduler (E26): jobs in flight and not cancelled, oldest first."""
        now = self.now_s()
        return [j for j in self.jobs() if j.is_executing(now)]

    def capacity(self) -> list[tuple[Account, int]]:
        """Each account with its executing count (2.7)."""
        with self._lock:
            running = self.executing()
            return [
                (account, sum(1 for j in running if j.email == account.email))
                for account in self._accounts.values()
            ]

    def cancel(self, job_id: str) -> bool:
        """DELETE /scheduler/{jobId}: stop tracking; charge stands, job finishes (E28)."""
        with self._lock:
            self._settle()
            job = self._jobs.get(job_id)
            if job is None or not job.is_executing(self.now_s()):
                return False
            self._put_job(dataclasses.replace(job, cancelled=True))
            return True

    def mark_webhook_done(self, job_id: str) -> None:
        """Record that a job's notification was delivered or given up."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                self._put_job(dataclasses.replace(job, webhook_done=True))

    def pending_webhooks(self) -> list[Job]:
        """Jobs whose notification is still owed (after a restart with `--state`)."""
        return [
            j for j in self.jobs() if j.params.reply_url and not j.webhook_done and not j.cancelled
        ]

    # -- assets -------------------------------------------------------------------------------

    def upload(self, email: str, mime_type: str, upload_type: str, content: bytes) -> Asset:
        """POST /assets/: store the bytes as a new asset, never de-duplicated (E24)."""
        with self._lock:
            self._seq += 1
            file_uuid = str(uuid.uuid4())
            asset = Asset(
                uuid=file_uuid,
                item_id=file_uuid,
                email=email,
                mime_type=mime_type,
                kind=AssetKind.UPLOAD,
                created_ms=self.now_ms(),
                seq=self._seq,
                upload_type=upload_type,
                content=content,
            )
            self._put_asset(asset)
            return asset

    def list_assets(self, email: str, category: str | None, page: int, limit: int) -> AssetPage:
        """A page of the account's completed images and uploads, newest first (E23)."""
        with self._lock:
            self._settle()
            matching = sorted(
                (
                    a
                    for a in self._assets.values()
                    if a.email == email and (category is None or a.category == category)
                ),
                key=lambda a: (a.created_ms, a.seq),
                reverse=True,
            )
        start = (page - 1) * limit
        return AssetPage(tuple(matching[start : start + limit]), len(matching))

    def asset(self, asset_uuid: str) -> Asset | None:
        """An asset by its storage key."""
        with self._lock:
            self._settle()
            return self._assets.get(asset_uuid)

    def take_download_fault(self, asset: Asset) -> str | None:
        """The fault scripted for this artifact's first download, used once."""
        with self._lock:
            return self._download_faults.pop(asset.uuid, None)

    def asset_bytes(self, asset: Asset) -> bytes:
        """The asset's bytes, drawn once and then kept (the bytes never change)."""
        if asset.content is not None:
            return asset.content
        cached = self._image_cache.get(asset.uuid)
        if cached is None:
            assert asset.image is not None  # noqa: S101  # an artifact always has its drawing.
            cached = self._image_cache.setdefault(asset.uuid, render_png(asset.image))
        return cached

    def thumbnail_bytes(self, asset: Asset) -> bytes:
        """The asset's large WebP thumbnail (E23)."""
        cached = self._thumbnail_cache.get(asset.uuid)
        if cached is None:
            try:
                thumbnail = render_thumbnail(self.asset_bytes(asset))
            except OSError:
                # Pillow raises OSError subclasses for bytes that are not a picture.
                thumbnail = render_placeholder(asset.mime_type)
            cached = self._thumbnail_cache.setdefault(asset.uuid, thumbnail)
        return cached

    # -- ledger -------------------------------------------------------------------------------

    def ledger(self) -> list[LedgerEntry]:
        """Every charge and refund so far, in order."""
        with self._lock:
            self._settle()
            return list(self._ledger)


def _request_digest(params: CreateParams, email: str) -> str:
    """SHA-256 of the normalised request: what it asks to draw, for whom, with which seed.

    Delivery options (replyRef, replyUrl, pollForResult, maxJobs) are left out, so two paid
    jobs for the same picture share a digest however they were sent.
    """
    normalised = {**params.generation_inputs(), "email": email, "seed": params.seed}
    text = json.dumps(normalised, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _image_spec(job: Job) -> ImageSpec:
    inputs = {k: v for k, v in job.params.generation_inputs().items() if k != "referenceAssetId"}
    inputs["referenceDigest"] = job.reference_digest
    pairs = tuple((k, str(v)) for k, v in inputs.items() if v is not None)
    return ImageSpec(pairs, job.effective_seed, job.params.aspect_ratio, job.noise_seed)
