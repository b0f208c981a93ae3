"""Garbage collection of the artifact store: which objects are still needed, and the rest.

The roots are every digest the state's images use, every pinned digest (`gc --pin`) and
every digest an open journal entry names (issue 6), with the stored artifact of that
entry's key: the same paid request, which a resumed apply may use. While an open entry has
no digest yet, objects no artifact row records are kept too: one of them may be the
download that entry paid for, stored by an apply that stopped before recording it.

`find_garbage` lists each unreachable object with its size and the credits its artifact
row says were paid for it; `collect` deletes those objects. Artifact rows are never
deleted: they are the ledger of what was paid and where each image came from, and a plan
treats an artifact whose object is gone as missing, never as present.

It must not print, write the state, or take the lease (the workspace holds it for
`collect`, so no apply can record a new use of an object while it is deleted).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from ltx_reconcile.errors import StateError
from ltx_reconcile.state.records import StateSnapshot
from ltx_reconcile.store_protocol import ArtifactStoreProtocol

__all__ = ["Garbage", "GcReport", "KeptBecause", "Roots", "collect", "find_garbage", "find_roots"]


class KeptBecause(StrEnum):
    """Why an object is kept, in order of precedence; the value is how reports spell it."""

    IMAGE = "used by an image"
    PIN = "pinned"
    JOURNAL = "named by an open journal entry"
    UNRECORDED = "unrecorded, kept while a journal entry is open"


@dataclass(frozen=True, slots=True)
class Roots:
    """The digests gc must keep, by reason."""

    images: frozenset[str]
    pins: frozenset[str]
    journal: frozenset[str]
    keep_unrecorded: bool
    """An open journal entry has no digest yet: keep every object no artifact row records."""

    @property
    def digests(self) -> frozenset[str]:
        """Every digest that is a root, whatever the reason."""
        return self.images | self.pins | self.journal

    def reason(self, digest: str, *, is_recorded: bool) -> KeptBecause | None:
        """Why `digest` is kept, or None when it is garbage."""
        if digest in self.images:
            return KeptBecause.IMAGE
        if digest in self.pins:
            return KeptBecause.PIN
        if digest in self.journal:
            return KeptBecause.JOURNAL
        if self.keep_unrecorded and not is_recorded:
            return KeptBecause.UNRECORDED
        return None


def find_roots(snapshot: StateSnapshot) -> Roots:
    """The roots of `snapshot`: images, pins and open journal entries."""
    entries = [entry for entries in snapshot.open_jobs.values() for entry in entries]
    named = {e.digest for e in entries if e.digest is not None}
    same_key = {
        snapshot.artifacts_by_key[key].digest
        for key in snapshot.open_jobs
        if key in snapshot.artifacts_by_key
    }
    return Roots(
        images=frozenset(r.digest for r in snapshot.images.values() if r.digest is not None),
        pins=frozenset(snapshot.pins),
        journal=frozenset(named | same_key),
        keep_unrecorded=any(e.digest is None for e in entries),
    )


@dataclass(frozen=True, slots=True)
class Garbage:
    """One unreachable object, and what was paid for it."""

    digest: str
    size_bytes: int
    credits: float | None
    """What its artifact row says was paid; None when no row records the object."""
    key: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class GcReport:
    """The unreachable objects, the kept ones by reason, and whether they were deleted."""

    garbage: tuple[Garbage, ...]
    kept: Mapping[KeptBecause, int] = field(default_factory=dict)
    """How many present objects are kept, for each reason (reasons with none left out)."""
    deleted: bool = False

    @property
    def size_bytes(self) -> int:
        """The bytes the garbage takes up."""
        return sum(g.size_bytes for g in self.garbage)

    @property
    def credits(self) -> float:
        """What was paid for the garbage, as far as artifact rows record it."""
        return sum(g.credits or 0 for g in self.garbage)


def find_garbage(snapshot: StateSnapshot, store: ArtifactStoreProtocol) -> GcReport:
    """Every object in `store` that no root of `snapshot` keeps, by digest; deletes nothing.

    Raises `StateError` when the store cannot be read.
    """
    roots = find_roots(snapshot)
    garbage: list[Garbage] = []
    kept: dict[KeptBecause, int] = {}
    try:
        for digest in store.iter_digests():
            artifact = snapshot.artifacts.get(digest)
            reason = roots.reason(digest, is_recorded=artifact is not None)
            if reason is not None:
                kept[reason] = kept.get(reason, 0) + 1
                continue
            garbage.append(
                Garbage(
                    digest,
                    store.size(digest),
                    None if artifact is None else artifact.cost,
                    None if artifact is None else artifact.key,
                    None if artifact is None else artifact.model,
                )
            )
    except OSError as err:
        raise StateError(f"cannot read the artifact store {store.root}: {err}") from err
    ordered = {reason: kept[reason] for reason in KeptBecause if reason in kept}
    return GcReport(tuple(garbage), ordered)


def collect(report: GcReport, store: ArtifactStoreProtocol) -> GcReport:
    """Delete the garbage of `report` from `store`; the report of what was deleted.

    Call it with a report made under the same lease: an apply in between could have given
    an object a new use. Objects already gone are left out of the result. Raises
    `StateError` when an object cannot be deleted (those deleted before it stay deleted).
    """
    deleted: list[Garbage] = []
    for item in report.garbage:
        try:
            if store.remove(item.digest):
                deleted.append(item)
        except OSError as err:
            raise StateError(
                f"cannot delete object {item.digest} from {store.root}: {err}",
                hint="check the store directory's permissions, then run `ltx-reconcile gc --force` again",
            ) from err
    return GcReport(tuple(deleted), report.kept, deleted=True)
