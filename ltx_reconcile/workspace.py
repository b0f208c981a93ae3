"""The front door of the library: one directory's specs, state, store and outputs.

A `Workspace` wires paths and settings into the loader, the state, the artifact store, the
planner and the executor. The CLI calls one method per command and renders the result; a
program can do the same without the CLI. Nothing here prints.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
from collections.abc import Callable, Iterable, Iterator, Set
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ltx_reconcile.apply_result import ApplyOptions, ApplySummary
from ltx_reconcile.artifacts import ArtifactStore
from ltx_reconcile.errors import ApplyInterruptedError, StateError, UsageError
from ltx_reconcile.plan.model import Plan
from ltx_reconcile.plan.planner import PlanOptions, make_plan
from ltx_reconcile.settings import Settings
from ltx_reconcile.spec.image import ImageSpec
from ltx_reconcile.spec.loader import LoadedSpecs, load_specs
from ltx_reconcile.state.records import Lease, StateSnapshot
from ltx_reconcile.state.snapshot import open_snapshot
from ltx_reconcile.state.store import StateStore

# Imported where they are used, not here: `plan` must not pay for what only apply and
# saved plans need (asyncio, pydantic through the plan file, the lease, the journal, events).
if TYPE_CHECKING:
    import asyncio

    from ltx_reconcile.api.client import ApiClient
    from ltx_reconcile.events import Reporter
    from ltx_reconcile.state.worker import StateWorker

__all__ = ["Workspace", "WorkspacePaths"]

_HASH_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class WorkspacePaths:
    """Where a workspace keeps each thing; relative paths are taken from `root`."""

    root: Path
    specs: Path
    state: Path
    objects: Path
    cache: Path

    @classmethod
    def under(
        cls,
        root: Path,
        *,
        specs: Path | None = None,
        state: Path | None = None,
        objects: Path | None = None,
    ) -> WorkspacePaths:
        """The default layout (specs/, state/state.db, state/objects/), with overrides."""
        state_path = root / (state or Path("state/state.db"))
        return cls(
            root=root,
            specs=root / (specs or Path("specs")),
            state=state_path,
            objects=root / (objects or state_path.parent / "objects"),
            # A cache, not the state: parsed spec files keyed by content digest. Safe to
            # delete at any time; `plan` never writes the state itself.
            cache=state_path.parent / "cache",
        )

    def display(self, path: Path) -> Path:
        """`path` relative to the root when it lies below it, for messages."""
        try:
            return path.relative_to(self.root)
        except ValueError:
            return path


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one load-and-plan pass.

    A plan of 100,000 images builds millions of objects, keeps nearly all of them and makes
    no reference cycles; the collector's full passes over that growing heap were a fifth of
    a warm plan's time. Reference counting frees as usual meanwhile, and the collector
    resumes (if it was on) when the block ends, however it ends.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _reference_files(images: Iterable[ImageSpec]) -> set[Path]:
    return {
        image.inputs.reference.file
        for image in images
        if image.inputs.reference is not None and image.inputs.reference.file is not None
    }


class Workspace:
    """One directory's images: validate, plan, save and check plans (apply: see executor)."""

    def __init__(self, paths: WorkspacePaths, settings: Settings) -> None:
        self.paths = paths
        self.settings = settings

    def validate(self) -> LoadedSpecs:
        """Load and check every spec file. Raises `SpecError` with every problem at once."""
        return load_specs(self.paths.specs, root=self.paths.root, cache_dir=self.paths.cache)

    def snapshot(self) -> StateSnapshot:
        """The state as it is now, read-only (an empty snapshot when there is no state)."""
        return StateStore.read_snapshot(self.paths.state)

    def plan(self, options: PlanOptions | None = None) -> Plan:
        """Diff the specs against the state. Writes nothing (a parse cache aside)."""
        with _cycle_collector_paused():
            specs = self.validate()
            file_digests = {p: _file_sha256(p) for p in sorted(_reference_files(specs.images))}
            # Not self.snapshot(): this one reads an artifact's row only if the planner
            # looks it up, which it does for few (see open_snapshot).
            with open_snapshot(self.paths.state) as snapshot:
                return make_plan(
                    specs.images,
                    snapshot,
                    specs_digest=self._inputs_digest(specs, file_digests),
                    file_digests=file_digests,
                    missing_objects=self._missing_objects(snapshot),
                    options=options,
                )

    def save_plan(self, plan: Plan, path: Path) -> None:
        """Write `plan` for a later `apply PLANFILE`."""
        from ltx_reconcile.plan.planfile import write_plan

        write_plan(plan, path)

    def load_plan(self, path: Path) -> Plan:
        """Read a saved plan and check that it still matches the state and the specs.

        Raises `UsageError` (not a plan), `SpecError` (the specs no longer load) or
        `StalePlanError` (state or specs moved since the plan was made).
        """
        from ltx_reconcile.plan.planfile import check_fresh, read_plan

        plan = read_plan(path)
        specs = self.validate()
        file_digests = {path: _file_sha256(path) for path in sorted(_reference_files(specs.images))}
        snapshot = self.snapshot()
        check_fresh(
            plan,
            lineage=snapshot.lineage,
            serial=snapshot.serial,
            specs_digest=self._inputs_digest(specs, file_digests),
        )
        return plan

    @staticmethod
    def _inputs_digest(specs: LoadedSpecs, file_digests: dict[Path, str]) -> str:
        # A saved plan must go stale when a local reference file changes, even though no
        # spec file did: the file's bytes are part of the key.
        if not file_digests:
            return specs.digest
        combined = hashlib.sha256(specs.digest.encode())
        for path, digest in sorted(file_digests.items()):
            combined.update(f"\0{path}\0{digest}".encode())
        return combined.hexdigest()

    def _missing_objects(self, snapshot: StateSnapshot) -> Set[str]:
        # Every digest the planner asks about is an artifact's: an image's digest is a
        # foreign key into the artifacts table.
        return ArtifactStore(self.paths.objects).absent_among(snapshot.artifacts)

    def force_unlock(self, lock_id: str) -> Lease:
        """Remove the state's lease `lock_id`, whoever holds it; the lease removed.

        For a holder that is gone without releasing it (another host, say). Raises
        `StateError` when there is no state, no lease, or `lock_id` is not the one held.
        """
        if not self.paths.state.exists():
            raise StateError(f"there is no state at {self.paths.display(self.paths.state)}")
        from ltx_reconcile.state.lease import force_unlock

        with StateStore.open(self.paths.state) as store:
            return force_unlock(store, lock_id)

    @contextlib.contextmanager
    def session(
        self, *, lock_timeout_s: float, operation: str, lease_ttl_s: float | None = None
    ) -> Iterator[ApplySession]:
        """Open the state under its lease for a plan-then-apply; releases and checkpoints.

        The lease lasts `lease_ttl_s` (default: the lease module's) and an apply renews it
        as it goes. Raises `StateLockedError` when another process holds the lease past
        the timeout.
        """
        from ltx_reconcile.state.lease import DEFAULT_TTL_S, acquire, release

        ttl_s = DEFAULT_TTL_S if lease_ttl_s is None else lease_ttl_s
        store = StateStore.open(self.paths.state)
        try:
            lease = acquire(store, operation, timeout_s=lock_timeout_s, ttl_s=ttl_s)
            try:
                yield ApplySession(self, store, lease, ttl_s)
            finally:
                release(store, lease)
        finally:
            store.close()


class ApplySession:
    """A workspace whose state is open and leased: plan, then apply what was reviewed."""

    def __init__(
        self, workspace: Workspace, store: StateStore, lease: Lease, lease_ttl_s: float
    ) -> None:
        self.workspace = workspace
        self.store = store
        self.lease = lease
        self._lease_ttl_s = lease_ttl_s

    def plan(self, options: PlanOptions | None = None) -> Plan:
        """Plan under the lease, so nothing moves between review and apply."""
        return self.workspace.plan(options)

    def load_plan(self, path: Path) -> Plan:
        """A saved plan, checked for staleness under the lease."""
        return self.workspace.load_plan(path)

    def apply(
        self,
        plan: Plan,
        options: ApplyOptions,
        *,
        reporter: Reporter | None = None,
        handle_signals: bool = True,
    ) -> ApplySummary:
        """Run `plan` against the API. Raises `UsageError` for blocked changes or a missing
        token, `ApplyInterruptedError` when stopped hard; one image's failure is reported
        in the summary instead."""
        if plan.blocked:
            names = ", ".join(c.image for c in plan.blocked)
            raise UsageError(
                f"apply refuses blocked changes: {names}",
                hint="remove `protect: true` from the image, or revert the change that "
                "would replace or delete it",
            )
        settings = self.workspace.settings
        if settings.token is None:
            raise UsageError(
                "USEAPI_TOKEN is not set",
                hint="export USEAPI_TOKEN=..., or try the embedded emulator with --emulator",
            )
        import asyncio

        from ltx_reconcile.events import NullReporter

        specs = {image.name: image for image in self.workspace.validate().images}
        return asyncio.run(
            self._run(plan, options, specs, reporter or NullReporter(), handle_signals)
        )

    async def _run(
        self,
        plan: Plan,
        options: ApplyOptions,
        specs: dict[str, ImageSpec],
        reporter: Reporter,
        handle_signals: bool,
    ) -> ApplySummary:
        # Imported here: commands that only plan must not pay for the HTTP stack.
        import asyncio

        from ltx_reconcile.api.client import ApiClient
        from ltx_reconcile.api.retry import DEFAULT_RETRY_POLICY, Backoff, RetryPolicy
        from ltx_reconcile.events import ApplyStarted
        from ltx_reconcile.executor import Executor
        from ltx_reconcile.state.journal import Journal
        from ltx_reconcile.state.worker import StateWorker

        settings = self.workspace.settings
        assert settings.token is not None  # noqa: S101 - checked by apply()
        # A 429 proves no job was made, so the executor closes that journal entry and
        # sends again under a new one; the client must not resend under the old replyRef.
        retry = RetryPolicy(
            safe=DEFAULT_RETRY_POLICY.safe, create_busy=Backoff(1, first_delay_s=0, max_delay_s=0)
        )
        # Every state write of the apply goes through one thread (state/worker.py), the
        # lease's renewals included, so the connection is never used by two at once.
        worker = StateWorker()
        try:
            async with ApiClient(
                settings.api_url, settings.token, timeout_s=settings.request_timeout_s, retry=retry
            ) as client:
                requested = options.parallelism or settings.parallelism
                email, parallelism = await _account(client, settings.email, requested)
                executor = Executor(
                    client=client,
                    store=self.store,
                    journal=Journal(self.store),
                    worker=worker,
                    artifacts=ArtifactStore(self.workspace.paths.objects),
                    root=self.workspace.paths.root,
                    specs=specs,
                    email=email,
                    settings=settings,
                    options=options,
                    reporter=reporter,
                )
                reporter(
                    ApplyStarted(
                        None,
                        changes=len(plan.pending),
                        estimated_cost=plan.total_cost,
                        parallelism=parallelism,
                        email=email,
                    )
                )
                run = asyncio.ensure_future(
                    executor.run(plan, self.store.snapshot(), parallelism=parallelism)
                )
                keeper = asyncio.ensure_future(self._keep_lease(run, worker))
                with _stop_on_signals(
                    run, executor.request_stop, options.grace_s, enabled=handle_signals
                ):
                    try:
                        return await run
                    except asyncio.CancelledError:
                        lost = (
                            keeper.exception() if keeper.done() and not keeper.cancelled() else None
                        )
                        if lost is not None:
                            raise lost from None
                        raise ApplyInterruptedError(
                            "apply stopped; every job already paid for is journaled",
                            hint="run `ltx-reconcile apply` again: it resumes and pays for nothing twice",
                        ) from None
                    finally:
                        keeper.cancel()
        finally:
            worker.close()

    async def _keep_lease(self, run: asyncio.Future[ApplySummary], worker: StateWorker) -> None:
        """Renew the lease a few times per lifetime for as long as the apply runs.

        An apply outlives any fixed lease, and a lease left to expire may be taken over by
        another host. If it was lost anyway (force-unlocked), the apply is cancelled at
        once: it must not write a state someone else may now be writing.
        """
        import asyncio

        from ltx_reconcile.state.lease import heartbeat

        while True:
            try:
                self.lease = await worker.call(
                    heartbeat, self.store, self.lease, ttl_s=self._lease_ttl_s
                )
            except StateError:
                run.cancel()
                raise
            await asyncio.sleep(self._lease_ttl_s / 3)


async def _account(client: ApiClient, email: str | None, requested: int | None) -> tuple[str, int]:
    """The account to generate with, and how many jobs to run at once on it (contract 2.7)."""
    available = await client.scheduler_available()
    if email is None:
        emails = [c.email for c in available.available if c.email]
        if len(emails) != 1:
            listed = ", ".join(emails) or "none"
            raise UsageError(
                f"the API has {len(emails)} accounts ({listed}); say which one to use",
                hint="pass --email EMAIL or set LTX_EMAIL",
            )
        email = emails[0]
    capacity = available.capacity_for(email)
    if capacity is None:
        raise UsageError(f"the API has no account {email}", hint="check --email or LTX_EMAIL")
    # The account's limit, not its free slots now: jobs of an earlier, interrupted run
    # still hold slots, and this run follows them under the same semaphore.
    limit = capacity.max_jobs or 1
    if requested is not None:
        limit = min(requested, limit)
    return email, max(limit, 1)


@contextlib.contextmanager
def _stop_on_signals(
    run: asyncio.Future[ApplySummary],
    request_stop: Callable[[], None],
    grace_s: float,
    *,
    enabled: bool,
) -> Iterator[None]:
    """First SIGINT/SIGTERM: stop submitting, cancel after the grace. Second: cancel now."""
    if not enabled:
        yield
        return
    import asyncio
    import signal

    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    received = 0

    def on_signal() -> None:
        nonlocal received
        received += 1
        if received == 1:
            request_stop()
            loop.call_later(grace_s, run.cancel)
        else:
            run.cancel()

    for signum in signals:
        loop.add_signal_handler(signum, on_signal)
    try:
        yield
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
