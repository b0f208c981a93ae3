"""Checking the store, the output files and the state against each other; free repairs.

`find_drift` re-hashes every stored object, looks at every image's named output file and
every image row, and says for each problem whether it can be put right at no cost or needs
a paid generation (issue 6). `repair_drift` does the free repairs only:

- a corrupt object is moved aside into the store's quarantine (never deleted), then rebuilt
  from an output file whose bytes hash to its digest, if there is one. This is also how a
  fresh GitOps runner, which has the committed `state/state.db` and `out/` but no
  `state/objects/`, gets its store back without paying (issue 7);
- a missing output file is written again from its object;
- an output file a user changed is reported, and never overwritten.

What counts as referenced (images, pins, open journal entries) is `gc`'s rule, shared: an
artifact row whose object `gc` collected is the ledger of what was paid, not drift.

It reads the state from a snapshot and returns the image rows whose output it rewrote; the
workspace records them under the lease. It must not print, call the API or take the lease.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final, Literal

from ltx_reconcile.artifacts import LinkFunction, digest_file
from ltx_reconcile.errors import ExitCode, IntegrityError, StateError
from ltx_reconcile.gc import find_roots
from ltx_reconcile.outputs import OutputAction, OutputCondition, inspect_output, materialise
from ltx_reconcile.spec.image import PRICES
from ltx_reconcile.state.records import ImageRecord, StateSnapshot
from ltx_reconcile.store_protocol import ArtifactStoreProtocol

__all__ = [
    "Done",
    "Finding",
    "Problem",
    "Remedy",
    "Repair",
    "RepairResult",
    "VerifyOutcome",
    "VerifyReport",
    "find_drift",
    "good_copies",
    "repair_drift",
]

FindingKind = Literal["object", "output", "image"]

_KIND_ORDER: Final[Mapping[str, int]] = {"object": 0, "output": 1, "image": 2}


class Problem(StrEnum):
    """What is wrong with one item; the value is how reports spell it."""

    MISSING = "missing"
    CORRUPT = "corrupt"
    """An object whose bytes no longer hash to its name, or an output sharing its inode."""
    MODIFIED = "modified"
    """An output file someone else changed: theirs now, left alone."""
    UNRECORDED = "unrecorded"
    """An image row whose digest has no artifact row: its provenance is lost."""


class Remedy(StrEnum):
    """What puts a problem right; RESTORE and QUARANTINE cost nothing (`verify --repair`)."""

    RESTORE = "restore"
    """An object from an output file with its bytes, or an output file from its object."""
    QUARANTINE = "quarantine"
    """A corrupt object no image, pin or open journal entry uses: moved aside."""
    REGENERATE = "regenerate"
    """No good copy anywhere: only a new, paid generation brings it back."""
    KEEP = "keep"
    """A user's edit: reported, never overwritten."""


FREE_REMEDIES: Final = frozenset({Remedy.RESTORE, Remedy.QUARANTINE})


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem with one object, output file or image row, and its remedy."""

    kind: FindingKind
    subject: str
    """The object's digest, the output's path (relative to the workspace) or the image."""
    problem: Problem
    remedy: Remedy
    images: tuple[str, ...]
    """The image addresses it concerns, sorted (none for an object no image uses)."""
    source: str | None = None
    """For RESTORE: the output file an object is copied from, or `store` for an output."""
    credits: float | None = None
    """For an object or image row: what generating it again costs (the artifact's recorded
    cost, else the model's price); None when nothing records the model."""

    @property
    def is_free(self) -> bool:
        """Whether `verify --repair` puts it right."""
        return self.remedy in FREE_REMEDIES


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """What `find_drift` checked and found; clean when `findings` is empty."""

    objects: int
    """Stored objects re-hashed."""
    outputs: int
    """Named output files looked at."""
    images: int
    """Image rows checked."""
    findings: tuple[Finding, ...]

    @property
    def is_clean(self) -> bool:
        """True when nothing drifted."""
        return not self.findings

    @property
    def regenerate_credits(self) -> float:
        """What the problems without a free remedy cost to generate again (known prices)."""
        return sum(f.credits or 0 for f in self.findings if f.remedy is Remedy.REGENERATE)


class Done(StrEnum):
    """What a free repair did; the value is how reports spell it."""

    RESTORED = "restored"
    MOVED_ASIDE = "moved aside"
    """A corrupt object, into the store's quarantine."""
    REMOVED = "removed"
    """A corrupt output of ours: a link to an object now in quarantine."""


@dataclass(frozen=True, slots=True)
class Repair:
    """One free repair done, and where a corrupt object went."""

    finding: Finding
    done: Done
    quarantined: str | None = None
    """Where a corrupt object's bytes were moved, relative to the workspace."""


@dataclass(frozen=True, slots=True)
class RepairResult:
    """What `repair_drift` did, what is left, and the image rows to record."""

    repaired: tuple[Repair, ...]
    remaining: tuple[Finding, ...]
    records: tuple[ImageRecord, ...]
    """Image rows whose output file was written again, with its new stat."""


@dataclass(frozen=True, slots=True)
class VerifyOutcome:
    """A verify, and the repairs made after it when asked."""

    report: VerifyReport
    repair: RepairResult | None = None

    @property
    def remaining(self) -> tuple[Finding, ...]:
        """The drift left: all of it without a repair."""
        return self.report.findings if self.repair is None else self.repair.remaining

    @property
    def exit_code(self) -> ExitCode:
        """0 when nothing drifts (any more), 2 when drift remains."""
        return ExitCode.CHANGES if self.remaining else ExitCode.OK


def good_copies(
    images: Iterable[ImageRecord], root: Path, wanted: Collection[str]
) -> dict[str, Path]:
    """For each digest of `wanted`, one output file of `images` whose bytes hash to it.

    Only outputs of images recorded with a wanted digest are read, each at most until a
    copy of its digest is found, so a plan with nothing missing reads no file at all.
    """
    found: dict[str, Path] = {}
    for record in images:
        digest = record.digest
        if digest is None or digest not in wanted or digest in found:
            continue
        path = root / record.output
        try:
            if path.is_file() and not path.is_symlink() and digest_file(path) == digest:
                found[digest] = path
        except OSError:
            continue  # unreadable: not a copy we can use
    return found


def find_drift(snapshot: StateSnapshot, store: ArtifactStoreProtocol, root: Path) -> VerifyReport:
    """Check every stored object, every image's output file and every image row.

    Re-hashes every object; an output is hashed only when its stat moved from the record
    or when it may be the good copy of a missing or corrupt object. Raises `StateError`
    when the store cannot be read.
    """
    images = sorted(
        (r for r in snapshot.images.values() if r.digest is not None), key=lambda r: r.name
    )
    try:
        present = list(store.iter_digests())
        corrupt = {d for d in present if not store.verify(d)}
    except OSError as err:
        raise StateError(f"cannot read the artifact store {store.root}: {err}") from err
    roots = find_roots(snapshot)
    missing = roots.digests - set(present)
    copies = good_copies(images, root, corrupt | missing)
    users = _users(images)
    object_findings = [
        _object_finding(digest, problem, snapshot, users, copies, root, roots.digests)
        for problem, digests in ((Problem.CORRUPT, corrupt), (Problem.MISSING, missing))
        for digest in digests
    ]
    unusable = {f.subject for f in object_findings if f.remedy is not Remedy.RESTORE}
    findings = [
        *object_findings,
        *(_output_finding(r, store, root, corrupt, unusable) for r in images),
        *(_row_finding(r) for r in images if r.digest not in snapshot.artifacts),
    ]
    kept = sorted(
        (f for f in findings if f is not None),
        key=lambda f: (_KIND_ORDER[f.kind], f.subject),
    )
    return VerifyReport(len(present), len(images), len(snapshot.images), tuple(kept))


def _users(images: Iterable[ImageRecord]) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    for record in images:
        if record.digest is not None:
            users.setdefault(record.digest, []).append(record.name)
    return users


def _object_finding(
    digest: str,
    problem: Problem,
    snapshot: StateSnapshot,
    users: Mapping[str, list[str]],
    copies: Mapping[str, Path],
    root: Path,
    referenced: Collection[str],
) -> Finding:
    names = tuple(sorted(users.get(digest, ())))
    credits = _credits(digest, snapshot, names)
    if digest in copies:
        source = copies[digest].relative_to(root).as_posix()
        return Finding("object", digest, problem, Remedy.RESTORE, names, source, credits)
    remedy = Remedy.REGENERATE if digest in referenced else Remedy.QUARANTINE
    return Finding("object", digest, problem, remedy, names, credits=credits)


def _credits(digest: str, snapshot: StateSnapshot, names: tuple[str, ...]) -> float | None:
    """What generating `digest` again costs: what was paid for it, else the model's price."""
    artifact = snapshot.artifacts.get(digest)
    if artifact is not None and artifact.cost:
        return artifact.cost
    model = artifact.model if artifact is not None else None
    if model is None and names:
        model = str(snapshot.images[names[0]].inputs.get("model", ""))
    return PRICES.get(model) if model is not None else None


def _output_finding(
    record: ImageRecord,
    store: ArtifactStoreProtocol,
    root: Path,
    corrupt: Collection[str],
    unusable: Collection[str],
) -> Finding | None:
    """The problem with `record`'s named output file, if any.

    `unusable` holds the digests that will have no good object even after the free
    repairs: an output of theirs can only come back with a paid generation.
    """
    assert record.digest is not None  # noqa: S101 - find_drift passes images with a digest
    path = root / record.output
    condition = inspect_output(path, record.digest, recorded=record.output_stat)
    if condition is OutputCondition.MODIFIED:
        return Finding("output", record.output, Problem.MODIFIED, Remedy.KEEP, (record.name,))
    if condition is OutputCondition.MISSING:
        problem = Problem.MISSING
    elif record.digest in corrupt and _is_same_file(path, store.path_for(record.digest)):
        # A hard link to the corrupt object, still as we recorded it: the same bad bytes.
        problem = Problem.CORRUPT
    else:
        return None
    if record.digest in unusable:
        return Finding("output", record.output, problem, Remedy.REGENERATE, (record.name,))
    return Finding("output", record.output, problem, Remedy.RESTORE, (record.name,), "store")


def _is_same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _row_finding(record: ImageRecord) -> Finding:
    model = str(record.inputs.get("model", ""))
    return Finding(
        "image",
        record.name,
        Problem.UNRECORDED,
        Remedy.REGENERATE,
        (record.name,),
        credits=PRICES.get(model),
    )


def repair_drift(
    report: VerifyReport,
    snapshot: StateSnapshot,
    store: ArtifactStoreProtocol,
    root: Path,
    *,
    link: LinkFunction = os.link,
) -> RepairResult:
    """Do the free repairs of `report`: objects first, then the outputs they feed.

    Never overwrites an output a user changed, and never deletes an object: a corrupt one
    goes to the store's quarantine, also when no good copy exists, so that the next plan
    sees it missing and prices its generation instead of trusting bad bytes. A repair that
    fails (a source file changed since the report) is left in `remaining`.
    """
    repaired: list[Repair] = []
    remaining: list[Finding] = []
    records: list[ImageRecord] = []
    for finding in report.findings:
        record = None
        if finding.kind == "object":
            done, left = _repair_object(finding, store, root)
        elif finding.kind == "output" and finding.problem is not Problem.MODIFIED:
            done, left, record = _repair_output(finding, snapshot, store, root, link)
        else:
            done, left = None, finding
        repaired += [done] if done is not None else []
        remaining += [left] if left is not None else []
        records += [record] if record is not None else []
    return RepairResult(tuple(repaired), tuple(remaining), tuple(records))


def _repair_object(
    finding: Finding, store: ArtifactStoreProtocol, root: Path
) -> tuple[Repair | None, Finding | None]:
    moved_aside = None
    if finding.problem is Problem.CORRUPT:
        moved = store.quarantine(finding.subject)
        if moved is not None:
            moved_aside = Repair(finding, Done.MOVED_ASIDE, _relative(moved, root))
    still_missing = dataclasses.replace(
        finding, problem=Problem.MISSING, remedy=Remedy.REGENERATE, source=None
    )
    if finding.remedy is Remedy.QUARANTINE:
        return moved_aside, None if moved_aside is not None else finding
    if finding.remedy is not Remedy.RESTORE or finding.source is None:
        # Nothing free brings it back; a corrupt one is at least out of the way now.
        return moved_aside, still_missing if moved_aside is not None else finding
    try:
        store.put_file(root / finding.source, expected_digest=finding.subject)
    except (IntegrityError, OSError):
        # The output changed or vanished since it was hashed: nothing good to copy.
        return moved_aside, still_missing
    quarantined = None if moved_aside is None else moved_aside.quarantined
    return Repair(finding, Done.RESTORED, quarantined), None


def _repair_output(
    finding: Finding,
    snapshot: StateSnapshot,
    store: ArtifactStoreProtocol,
    root: Path,
    link: LinkFunction,
) -> tuple[Repair | None, Finding | None, ImageRecord | None]:
    record = snapshot.images[finding.images[0]]
    assert record.digest is not None  # noqa: S101 - outputs are checked for images with one
    dest = root / record.output
    still_missing = dataclasses.replace(
        finding, problem=Problem.MISSING, remedy=Remedy.REGENERATE, source=None
    )
    removed = None
    if finding.problem is Problem.CORRUPT:
        # Ours (its stat is as recorded), and a link to the bad bytes now in quarantine:
        # removing it loses nothing, while materialise would keep it, its record matching.
        dest.unlink(missing_ok=True)
        removed = Repair(finding, Done.REMOVED)
    if finding.remedy is not Remedy.RESTORE:
        return removed, still_missing, None
    try:
        result = materialise(
            store,
            record.digest,
            dest,
            recorded=record.output_stat,
            recorded_digest=record.digest,
            link=link,
        )
    except StateError:
        return removed, still_missing, None
    if result.action is OutputAction.USER_MODIFIED:
        # A file appeared at the name since the report: the user's, kept.
        left = dataclasses.replace(finding, problem=Problem.MODIFIED, remedy=Remedy.KEEP)
        return removed, left, None
    updated = record._replace(output_stat=result.stat, updated_at=time.time())
    return Repair(finding, Done.RESTORED), None, updated


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)
