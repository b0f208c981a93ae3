"""The front door of the library: one directory's specs, state, store and outputs.

A `Workspace` wires paths and settings into the loader, the state, the artifact store, the
planner and the executor. The CLI calls one method per command and renders the result; a
program can do the same without the CLI. Nothing here prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence, Set
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ltx_reconcile.apply_result import (
    ApplyOptions,
    ApplySummary,
    BudgetStatus,
    tightest_limit,
    utc_day,
)
from ltx_reconcile.artifacts import is_digest
from ltx_reconcile.errors import ApplyInterruptedError, StateError, UsageError
from ltx_reconcile.plan.model import Action, Change, Plan
from ltx_reconcile.plan.planner import PlanOptions, make_plan
from ltx_reconcile.settings import Settings
from ltx_reconcile.spec.image import ImageSpec
from ltx_reconcile.spec.loader import Budget, LoadedSpecs, load_specs
from ltx_reconcile.state.records import Lease, StateSnapshot
from ltx_reconcile.state.snapshot import open_snapshot, read_spend_since
from ltx_reconcile.state.store import BaseStateStore, StateStore
from ltx_reconcile.store_protocol import S3_SCHEME, ArtifactStoreProtocol, open_store

# Imported where they are used, not here: `plan` must not pay for what only apply and
# saved plans need (asyncio, pydantic through the plan file, the lease, the journal, events).
if TYPE_CHECKING:
    import asyncio

    from ltx_reconcile.api.client import ApiClient
    from ltx_reconcile.events import Reporter
    from ltx_reconcile.gallery import GalleryPage
    from ltx_reconcile.gc import GcReport
    from ltx_reconcile.importer import ImportResult
    from ltx_reconcile.inventory import (
        ImageDetails,
        ImageSummary,
        Removal,
        RenamedImage,
        StateSummary,
    )
    from ltx_reconcile.state.journal import JournalMark
    from ltx_reconcile.state.postgres import PostgresStateStore
    from ltx_reconcile.state.records import JournalEntry
    from ltx_reconcile.state.transfer import PushResult, StateDocument
    from ltx_reconcile.state.worker import StateWorker
    from ltx_reconcile.verify import VerifyOutcome

__all__ = ["SHARED_LOCK_TIMEOUT_S", "Workspace", "WorkspacePaths"]

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


SHARED_LOCK_TIMEOUT_S: Final = 120.0
"""How long an apply waits by default for the lease of a shared (PostgreSQL) state: other
applies hold it only while they plan, and runners started together queue for it."""


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

    @functools.cached_property
    def artifacts(self) -> ArtifactStoreProtocol:
        """The artifact store: `--store` (an S3 bucket or a directory), else `paths.objects`.

        A remote store keeps its local cache in `paths.objects`. One instance per workspace,
        so a remote store's client and what it has seen in the bucket last the whole command.
        """
        named = self.settings.store
        spec: str | Path = self.paths.objects
        if named is not None:
            # A directory named by --store is read from the workspace root, as --objects is.
            spec = named if named.startswith(S3_SCHEME) else self.paths.root / named
        return open_store(spec, self.paths.objects, endpoint=self.settings.store_endpoint)

    def validate(self) -> LoadedSpecs:
        """Load and check every spec file. Raises `SpecError` with every problem at once."""
        return load_specs(self.paths.specs, root=self.paths.root, cache_dir=self.paths.cache)

    def snapshot(self) -> StateSnapshot:
        """The state as it is now, read-only (an empty snapshot when there is no state)."""
        if self.settings.state_url is None:
            return StateStore.read_snapshot(self.paths.state)
        with self._reading_postgres() as store:
            return self._empty_snapshot() if store is None else store.snapshot()

    # -- the state, on the backend the settings name: the file, or a PostgreSQL schema ----

    def open_state(self) -> BaseStateStore:
        """The state open for writing: `paths.state`, or the PostgreSQL state of
        `settings.state_url` (in `settings.state_schema`). Every command that writes the
        state opens it here. Created when missing; raises `StateError` and
        `SchemaTooNewError` like the stores.
        """
        url = self.settings.state_url
        if url is None:
            return StateStore.open(self.paths.state)
        return _postgres_store().open(url, schema=self._state_schema())

    def has_state(self) -> bool:
        """Whether the state exists yet (read-only: nothing is created)."""
        if self.settings.state_url is None:
            return self.paths.state.exists()
        with self._reading_postgres() as store:
            return store is not None

    def state_display(self) -> str:
        """The state's location for messages: the file relative to the root, or the
        PostgreSQL server, database and schema (never a password)."""
        if self.settings.state_url is None:
            return str(self.paths.display(self.paths.state))
        # Asked of the server, not cut from the URL: libpq may fill in the user, host and
        # database from PG* variables, and the URL may hold a password.
        return _postgres_store().location_of(self.settings.state_url, schema=self._state_schema())

    def _state_schema(self) -> str:
        from ltx_reconcile.state.postgres import DEFAULT_SCHEMA

        return self.settings.state_schema or DEFAULT_SCHEMA

    @contextlib.contextmanager
    def _reading_postgres(self) -> Iterator[PostgresStateStore | None]:
        """The PostgreSQL state open read-only, or None when it does not exist yet."""
        url = self.settings.state_url
        assert url is not None  # noqa: S101 - callers check
        with _postgres_store().reading(url, schema=self._state_schema()) as store:
            yield store

    def _empty_snapshot(self) -> StateSnapshot:
        return StateSnapshot(path=self.paths.state, lineage=None, serial=0)

    def _latest_attempts(self) -> dict[str, JournalEntry]:
        """Each image's newest journal entry (the gallery's `failed` status)."""
        if self.settings.state_url is None:
            from ltx_reconcile.state.snapshot import read_latest_attempts

            return read_latest_attempts(self.paths.state)
        with self._reading_postgres() as store:
            return {} if store is None else store.latest_attempts()

    def plan(self, options: PlanOptions | None = None) -> Plan:
        """Diff the specs against the state. Writes nothing (a parse cache aside)."""
        with _cycle_collector_paused():
            specs = self.validate()
            file_digests = {p: _file_sha256(p) for p in sorted(_reference_files(specs.images))}
            with self._state_for_planning() as (snapshot, spend_since):
                plan = make_plan(
                    specs.images,
                    snapshot,
                    specs_digest=self._inputs_digest(specs, file_digests),
                    file_digests=file_digests,
                    missing_objects=self._missing_objects(snapshot),
                    options=options,
                    budget=_budget_status(specs.budget, spend_since),
                )
                return self._with_restorable(plan, snapshot)

    @contextlib.contextmanager
    def _state_for_planning(self) -> Iterator[tuple[StateSnapshot, Callable[[float], float]]]:
        """The state to plan against, and its spend ledger: the file, or PostgreSQL's.

        Not self.snapshot() for the file: open_snapshot reads an artifact's row only if the
        planner looks it up, which it does for few. Raises `StateError` like the stores.
        """
        if self.settings.state_url is None:
            with open_snapshot(self.paths.state) as snapshot:
                yield snapshot, lambda since: read_spend_since(self.paths.state, since)
            return
        with self._reading_postgres() as store:
            if store is None:
                yield self._empty_snapshot(), lambda _: 0.0
            else:
                yield store.snapshot(), store.spend_since

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
        return self.artifacts.absent_among(snapshot.artifacts)

    def _with_restorable(self, plan: Plan, snapshot: StateSnapshot) -> Plan:
        """`plan`, counting the refetches' objects that an output file still holds.

        A fresh GitOps runner has `out/` but no store (issue 7): those refetches cost
        nothing after `verify --repair`. Only refetched images' outputs are read, so a plan
        with no missing object reads no file.
        """
        refetched = [
            snapshot.images[c.image]
            for c in plan.changes
            if c.action is Action.REFETCH and c.image in snapshot.images
        ]
        if not refetched:
            return plan
        from ltx_reconcile.verify import good_copies

        wanted = {record.digest for record in refetched if record.digest is not None}
        copies = good_copies(refetched, self.paths.root, wanted)
        return dataclasses.replace(plan, restorable=len(copies))

    def verify(self, *, repair: bool = False, lock_timeout_s: float = 0.0) -> VerifyOutcome:
        """Check the store, the output files and the state; with `repair`, do the free fixes.

        Without `repair` nothing is written. With it, the lease is held while objects and
        output files are restored, and the rewritten outputs are recorded in one
        transaction. Raises `StateLockedError` when another process holds the lease, and
        `StateError` when the state or the store cannot be read.
        """
        from ltx_reconcile.verify import VerifyOutcome, find_drift, repair_drift

        store = self.artifacts
        root = self.paths.root
        if not repair or not self.has_state():
            snapshot = self.snapshot()
            report = find_drift(snapshot, store, root)
            # Without a state there is no row to record: only corrupt objects to move aside.
            repaired = repair_drift(report, snapshot, store, root) if repair else None
            return VerifyOutcome(report, repaired)
        with self.session(lock_timeout_s=lock_timeout_s, operation="verify --repair") as session:
            snapshot = session.store.snapshot()
            report = find_drift(snapshot, store, root)
            result = repair_drift(report, snapshot, store, root)
            with session.store.transaction():
                for record in result.records:
                    session.store.put_image(record)
        return VerifyOutcome(report, result)

    def gc(self, *, force: bool = False, lock_timeout_s: float = 0.0) -> GcReport:
        """The stored objects nothing keeps; with `force`, delete them (rows are kept).

        The dry run only reads. `force` holds the lease, so no apply can give an object a
        new use while it is deleted. Raises `StateError` when there is no state (every
        object would look unused), `StateLockedError` when the lease is held elsewhere.
        """
        from ltx_reconcile.gc import collect, find_garbage

        self._require_state("gc")
        store = self.artifacts
        if not force:
            return find_garbage(self.snapshot(), store)
        with self.session(lock_timeout_s=lock_timeout_s, operation="gc --force") as session:
            return collect(find_garbage(session.store.snapshot(), store), store)

    def pin(self, digest: str, note: str = "", *, lock_timeout_s: float = 0.0) -> bool:
        """Keep the object `digest` through gc; False when it was pinned already.

        Raises `UsageError` for a string that is not a digest or names no object the store
        or the state knows, `StateError` when there is no state, `StateLockedError`.
        """
        _require_digest(digest)
        self._require_state("gc --pin")
        with self.session(lock_timeout_s=lock_timeout_s, operation="gc --pin") as session:
            is_known = digest in session.store.snapshot().artifacts
            if not is_known and not self.artifacts.contains(digest):
                raise UsageError(
                    f"no object {digest} is in the store or the state",
                    hint="copy the digest from `ltx-reconcile gc` or `ltx-reconcile verify`",
                )
            return session.store.pin(digest, note)

    def unpin(self, digest: str, *, lock_timeout_s: float = 0.0) -> None:
        """Let gc collect the object `digest` again once no image uses it.

        Raises `UsageError` when it is not pinned, `StateError`, `StateLockedError`.
        """
        _require_digest(digest)
        self._require_state("gc --unpin")
        with self.session(lock_timeout_s=lock_timeout_s, operation="gc --unpin") as session:
            if not session.store.unpin(digest):
                raise UsageError(f"{digest} is not pinned")

    def _require_state(self, command: str) -> None:
        if not self.has_state():
            raise StateError(
                f"there is no state at {self.state_display()}",
                hint=f"`{command}` needs the state that records which objects are in use; "
                "check -C, --state and --objects",
            )

    def force_unlock(self, lock_id: str) -> Lease:
        """Remove the state's lease `lock_id`, whoever holds it; the lease removed.

        For a holder that is gone without releasing it (another host, say). Raises
        `StateError` when there is no state, no lease, or `lock_id` is not the one held.
        """
        if not self.has_state():
            raise StateError(f"there is no state at {self.state_display()}")
        from ltx_reconcile.state.lease import force_unlock

        with self.open_state() as store:
            return force_unlock(store, lock_id)

    def gallery(self, out_dir: Path, plan_path: Path | None = None) -> GalleryPage:
        """Write `out_dir/index.html`: every image of the specs, or what a saved plan changes.

        Reads the specs, one state snapshot and the store; writes only the page and the
        thumbnail cache (`state/cache/thumbs/`), never the state. Raises `UsageError` for an
        `out_dir` inside the store, `SpecError` for invalid specs and, with `plan_path`,
        what `load_plan` raises (a stale plan is refused, as apply refuses it).
        """
        from ltx_reconcile.gallery import (
            GalleryPage,
            ThumbnailCache,
            build_gallery,
            picture_sources,
            render_page,
            write_page,
        )

        if out_dir.resolve().is_relative_to(self.paths.objects.resolve()):
            raise UsageError(
                f"the gallery cannot be written inside the store "
                f"({self.paths.display(self.paths.objects)})",
                hint="pass --out with a directory outside it, such as gallery",
            )
        plan = None if plan_path is None else self.load_plan(plan_path)
        snapshot = self.snapshot()
        store = self.artifacts
        missing = store.absent_among(snapshot.artifacts)
        gallery = build_gallery(
            self.validate().images,
            snapshot,
            attempts=self._latest_attempts(),
            missing=missing,
            root=self.paths.root,
            plan=plan,
        )
        outputs = {i.digest: self.paths.root / i.output for i in gallery.images if i.digest}
        sources = picture_sources(gallery.pictures, store, missing, outputs)
        thumbnails = ThumbnailCache(self.paths.cache / "thumbs").thumbnails(sources)
        page = out_dir / "index.html"
        html = render_page(gallery, thumbnails=thumbnails, root=self.paths.root, page_dir=out_dir)
        write_page(page, html)
        shown = sum(1 for image in gallery.images if image.digest in thumbnails)
        return GalleryPage(page, gallery, thumbnails=shown)

    def import_image(
        self, name: str, source: str, *, force: bool = False, lock_timeout_s: float = 0.0
    ) -> ImportResult:
        """Adopt a local image file, or a job done at the API, as image `name`'s picture.

        Free: nothing is sent that costs money. `source` is a jobId (contract 1.6) or a
        path below the root. The specs and a file source are checked before the state is
        opened; the rest runs under the lease, in one transaction. Raises `SpecError`,
        `UsageError` (unknown image, not an image, unfinished or journaled job, or a
        conflict, see docs/operations.md), `ApiError` and `StateLockedError`.
        """
        from ltx_reconcile import importer

        spec = importer.find_image(self.validate().images, name)
        offered = importer.offer(source, root=self.paths.root, settings=self.settings)
        with self.session(lock_timeout_s=lock_timeout_s, operation="import") as session:
            return importer.import_image(
                session.store,
                self.artifacts,
                root=self.paths.root,
                spec=spec,
                plan=session.plan(),
                offered=offered,
                settings=self.settings,
                force=force,
            )

    # -- inspecting and editing the state (`state ...`, `show`) -------------------------

    def list_images(self, pattern: str | None = None) -> list[ImageSummary]:
        """The images the state tracks whose name matches the glob `pattern`, by name."""
        from ltx_reconcile.inventory import list_images

        return list_images(self.snapshot(), pattern)

    def image_details(self, name: str) -> ImageDetails:
        """Everything the state knows about image `name`; `UsageError` if it is not tracked."""
        from ltx_reconcile.inventory import image_details

        return image_details(self.snapshot(), name, self.artifacts)

    def remove_images(self, names: Sequence[str], *, lock_timeout_s: float = 0.0) -> Removal:
        """Forget `names` under the lease, in one transaction; objects and files stay.

        Raises `UsageError` (an untracked name; nothing removed) and `StateLockedError`.
        Without a state file, every name is untracked, and no file is created.
        """
        from ltx_reconcile.inventory import remove_images, require_tracked

        if not self.has_state():
            require_tracked(self.snapshot(), names)
        with self.session(lock_timeout_s=lock_timeout_s, operation="state rm") as session:
            return remove_images(session.store, names)

    def rename_image(self, old: str, new: str, *, lock_timeout_s: float = 0.0) -> RenamedImage:
        """Rename image `old` to `new` in the state, under the lease; its file stays put.

        Raises `UsageError` (`old` not tracked, or `new` already is) and `StateLockedError`.
        """
        from ltx_reconcile.inventory import rename_image, require_tracked

        if not self.has_state():
            require_tracked(self.snapshot(), [old])
        with self.session(lock_timeout_s=lock_timeout_s, operation="state mv") as session:
            return rename_image(session.store, old, new)

    def pull_state(self) -> StateDocument:
        """The whole state (but the lease) as a versioned document, read-only.

        Raises `StateError` when there is no state yet.
        """
        from ltx_reconcile.state.transfer import read_document, read_postgres_document

        if self.settings.state_url is None:
            document = read_document(self.paths.state)
        else:
            _postgres_store()  # a clear error when psycopg is missing
            document = read_postgres_document(self.settings.state_url, schema=self._state_schema())
        if document is None:
            raise StateError(
                f"there is no state at {self.state_display()}; nothing to pull",
                hint="`ltx-reconcile apply` creates it",
            )
        return document

    def push_state(
        self,
        document: StateDocument,
        *,
        source: str,
        force: bool = False,
        lock_timeout_s: float = 0.0,
    ) -> PushResult:
        """Replace the state by `document` under the lease, in one transaction.

        Raises `StateError` (another lineage, an older serial, dropped journal rows; unless
        `force`), `UsageError` (a document the schema refuses) and `StateLockedError`.
        """
        from ltx_reconcile.state.transfer import push_document

        with self.session(lock_timeout_s=lock_timeout_s, operation="state push") as session:
            return push_document(session.store, document, source=source, force=force)

    def state_summary(self) -> StateSummary:
        """The state at a glance (images by status, spend, lineage, serial), read-only."""
        from ltx_reconcile.inventory import StateSummary, summarise

        if self.settings.state_url is None:
            from ltx_reconcile.state.transfer import read_document

            return summarise(read_document(self.paths.state), self.paths.state)
        from collections import Counter

        from ltx_reconcile.state.schema import SCHEMA_VERSION

        with self._reading_postgres() as store:
            if store is None:
                return StateSummary(Path(self.state_display()), None, 0, None, {}, 0.0)
            # One REPEATABLE READ transaction, so the counts and the spend agree.
            with store.read_transaction():
                snapshot = store.snapshot()
                spent = store.total_spend()
        statuses = Counter(record.status for record in snapshot.images.values())
        return StateSummary(
            path=Path(store.location),
            lineage=snapshot.lineage,
            serial=snapshot.serial,
            # `reading` refuses any other version.
            schema_version=SCHEMA_VERSION,
            images_by_status=dict(sorted(statuses.items())),
            spent=spent,
        )

    def read_saved_plan(self, path: Path) -> tuple[Plan, str | None]:
        """A saved plan, to show, and why it is stale (None while `apply` would take it).

        A stale plan is still returned: showing it is harmless. Raises `UsageError` for a
        file that is not a saved plan.
        """
        from ltx_reconcile.errors import SpecError, StalePlanError
        from ltx_reconcile.plan.planfile import read_plan

        plan = read_plan(path)
        try:
            self.load_plan(path)
        except StalePlanError as err:
            return plan, str(err)
        except SpecError:
            return plan, "the specs no longer load, so it cannot be applied"
        return plan, None

    @contextlib.contextmanager
    def session(
        self, *, lock_timeout_s: float | None, operation: str, lease_ttl_s: float | None = None
    ) -> Iterator[ApplySession]:
        """Open the state under its lease for a plan-then-apply; releases and checkpoints.

        The lease lasts `lease_ttl_s` (default: the lease module's) and an apply renews it
        as it goes. `lock_timeout_s` None waits 0 s on a state file and
        `SHARED_LOCK_TIMEOUT_S` on a shared one, whose applies plan one after the other
        under the lease (a short wait) and then run together. Raises `StateLockedError` when
        another process holds the lease past the timeout.
        """
        from ltx_reconcile.state.lease import DEFAULT_TTL_S, acquire, exclude_applies, release

        ttl_s = DEFAULT_TTL_S if lease_ttl_s is None else lease_ttl_s
        store = self.open_state()
        try:
            if lock_timeout_s is None:
                lock_timeout_s = SHARED_LOCK_TIMEOUT_S if store.shared else 0.0
            started = time.monotonic()
            lease = acquire(store, operation, timeout_s=lock_timeout_s, ttl_s=ttl_s)
            excluding = operation != "apply" and store.shared
            try:
                if excluding:
                    # On a shared state, applies run outside the lease (ApplySession.apply).
                    left_s = lock_timeout_s - (time.monotonic() - started)
                    exclude_applies(store, timeout_s=max(left_s, 0.0))
                yield ApplySession(self, store, lease, ttl_s)
            finally:
                if excluding:
                    store.end_exclusion()
                release(store, lease)
        finally:
            store.close()


class ApplySession:
    """A workspace whose state is open and leased: plan, then apply what was reviewed."""

    def __init__(
        self, workspace: Workspace, store: BaseStateStore, lease: Lease, lease_ttl_s: float
    ) -> None:
        self.workspace = workspace
        self.store = store
        self.lease = lease
        self._lease_ttl_s = lease_ttl_s
        self._journal_mark: JournalMark | None = None

    def plan(self, options: PlanOptions | None = None) -> Plan:
        """Plan under the lease, so nothing moves between review and apply.

        On a shared state other applies still write while this one plans and waits for
        approval; the journal's mark, taken before planning, tells the executor which of
        their entries were decided after what the plan saw.
        """
        self._journal_mark = self._mark_journal()
        return self.workspace.plan(options)

    def load_plan(self, path: Path) -> Plan:
        """A saved plan, checked for staleness under the lease."""
        self._journal_mark = self._mark_journal()
        return self.workspace.load_plan(path)

    def _mark_journal(self) -> JournalMark | None:
        """The journal's mark on a shared state; None on a file, which no one else writes."""
        from ltx_reconcile.state.journal import Journal

        return Journal(self.store).mark() if self.store.shared else None

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
            raise _refusal(plan.blocked)
        settings = self.workspace.settings
        if settings.token is None:
            raise UsageError(
                "USEAPI_TOKEN is not set",
                hint="export USEAPI_TOKEN=..., or try the embedded emulator with --emulator",
            )
        import asyncio

        from ltx_reconcile.events import NullReporter

        loaded = self.workspace.validate()
        specs = {image.name: image for image in loaded.images}
        budget = _budget_status(loaded.budget, self.store.spend_since)
        limit = tightest_limit(options.max_cost, budget)
        limited = dataclasses.replace(options, max_cost=None if limit is None else limit.credits)
        if self.store.shared:
            self._share_the_state()
        summary = asyncio.run(
            self._run(
                _without_protect_updates(plan),
                limited,
                specs,
                reporter or NullReporter(),
                handle_signals,
            )
        )
        summary.limit, summary.budget = limit, budget
        self._record_protect(plan)
        return summary

    def _share_the_state(self) -> None:
        """Planned under the lease; now let other applies in, as issue 8 asks of a shared
        state: several runners work through it at once, each image key claimed by one
        (executor.py), while gc and state edits still wait for every apply to end."""
        from ltx_reconcile.state.lease import release

        self.store.join_applies()
        release(self.store, self.lease)

    def _record_protect(self, plan: Plan) -> None:
        """Write the `protect` of each no-op image whose spec changed it: free, one commit."""
        updates = [c for c in plan.changes if c.protect_update is not None]
        if not updates:
            return
        images = self.store.snapshot().images
        with self.store.transaction():
            for change in updates:
                record = images.get(change.image)
                if record is not None:
                    protect = bool(change.protect_update)
                    self.store.put_image(record._replace(protect=protect))

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
                    artifacts=self.workspace.artifacts,
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
                # A plan this session did not make: its view is no older than now.
                mark = self._journal_mark or self._mark_journal()
                run = asyncio.ensure_future(
                    executor.run(plan, self.store.snapshot(), parallelism=parallelism, mark=mark)
                )
                # A shared state's apply holds no lease while it runs (_share_the_state).
                keeper = (
                    None
                    if self.store.shared
                    else asyncio.ensure_future(self._keep_lease(run, worker))
                )
                with _stop_on_signals(
                    run, executor.request_stop, options.grace_s, enabled=handle_signals
                ):
                    try:
                        return await run
                    except asyncio.CancelledError:
                        if keeper is not None and keeper.done() and not keeper.cancelled():
                            lost = keeper.exception()
                            if lost is not None:
                                raise lost from None
                        raise ApplyInterruptedError(
                            "apply stopped; every job already paid for is journaled",
                            hint="run `ltx-reconcile apply` again: it resumes and pays for nothing twice",
                        ) from None
                    finally:
                        if keeper is not None:
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


def _postgres_store() -> type[PostgresStateStore]:
    """The PostgreSQL store class; psycopg is an optional extra, imported only for it."""
    try:
        from ltx_reconcile.state.postgres import PostgresStateStore
    except ImportError as err:
        raise StateError(
            f"a PostgreSQL state needs psycopg, which is not installed ({err})",
            hint="pip install 'ltx-reconcile[postgres]'",
        ) from err
    return PostgresStateStore


def _budget_status(
    budget: Budget | None, spent_since: Callable[[float], float]
) -> BudgetStatus | None:
    """The specs' budget against what the spend ledger recorded so far this UTC day."""
    if budget is None:
        return None
    day, start = utc_day(time.time())
    spent = spent_since(start) if budget.per_day is not None else 0.0
    return BudgetStatus(budget.per_apply, budget.per_day, day, spent)


def _without_protect_updates(plan: Plan) -> Plan:
    """`plan` as the executor takes it: a protect update is a state write, not a job."""
    if not any(c.protect_update is not None for c in plan.changes):
        return plan
    changes = tuple(
        c if c.protect_update is None else c._replace(protect_update=None) for c in plan.changes
    )
    return dataclasses.replace(plan, changes=changes)


def _refusal(blocked: Sequence[Change]) -> UsageError:
    """Why apply refuses a plan: each blocked image, and how to lift what blocks it.

    A blocked change without inputs is a delete: the state still records `protect: true`
    for an image whose spec is gone, and only a spec can lift it.
    """
    names = ", ".join(
        f"{c.image} (protect: true, removed from the specs)" if c.inputs is None else c.image
        for c in blocked
    )
    if all(c.inputs is not None for c in blocked):
        hint = (
            "remove `protect: true` from the image, or revert the change that "
            "would replace or delete it"
        )
    else:
        hint = (
            "to delete a protected image, put its spec back with `protect: false`, apply, "
            "then remove it; to replace one, remove `protect: true` or revert the change"
        )
    return UsageError(f"apply refuses blocked changes: {names}", hint=hint)


def _require_digest(value: str) -> None:
    if not is_digest(value):
        raise UsageError(
            f"{value!r} is not a digest (64 lowercase hex digits)",
            hint="copy it from `ltx-reconcile gc` or `ltx-reconcile verify`",
        )


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
