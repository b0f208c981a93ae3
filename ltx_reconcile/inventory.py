"""The images the state tracks: list, show, forget and rename them (`ltx-reconcile state ...`).

Reading takes a snapshot and returns values; the two writes take an open, leased store and
change only the `images` table, in one transaction each. Neither write touches the
artifact store, the journal or an output file: forgetting an image keeps its stored
object (the next plan reuses it for free while a spec names the image), and renaming one
keeps its output file where it is (the state goes on recording that path).

A name the state does not track is bad input, answered with the nearest tracked name, as
spec errors are.
"""

from __future__ import annotations

import fnmatch
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ltx_reconcile.errors import UsageError
from ltx_reconcile.state.backend import StateBackend
from ltx_reconcile.state.records import (
    ArtifactRecord,
    ImageRecord,
    JournalEntry,
    StateSnapshot,
)
from ltx_reconcile.state.transfer import StateDocument
from ltx_reconcile.store_protocol import ArtifactStoreProtocol

__all__ = [
    "ImageDetails",
    "ImageSummary",
    "Removal",
    "RemovedImage",
    "RenamedImage",
    "StateSummary",
    "image_details",
    "list_images",
    "remove_images",
    "rename_image",
    "require_tracked",
    "summarise",
]

_DIGEST_PREFIX = 12


@dataclass(frozen=True, slots=True)
class ImageSummary:
    """One line of `state list`."""

    name: str
    status: str
    model: str | None
    cost: float | None
    """Credits paid for the image's artifact (None while it has none)."""
    digest: str | None
    output: str

    @property
    def digest_prefix(self) -> str | None:
        """The first 12 hex digits of the digest, enough to tell objects apart by eye."""
        return None if self.digest is None else self.digest[:_DIGEST_PREFIX]

    def as_dict(self) -> dict[str, object]:
        """For `--json`."""
        return {
            "name": self.name,
            "status": self.status,
            "model": self.model,
            "cost": self.cost,
            "digest": self.digest,
            "output": self.output,
        }


@dataclass(frozen=True, slots=True)
class ImageDetails:
    """Everything the state knows about one image (`state show`)."""

    record: ImageRecord
    artifact: ArtifactRecord | None
    object_path: Path | None
    """Where the artifact's object lives in the store (None: no artifact recorded)."""
    object_present: bool
    open_jobs: tuple[JournalEntry, ...]
    """Journal entries of the image's key that may still cost money or owe an image."""
    protect: bool | None
    """The image's `protect` flag as last recorded; None where the state does not keep it."""

    @property
    def model(self) -> str | None:
        """The model that made the artifact, else the one the inputs ask for."""
        return _model(self.record, self.artifact)

    def as_dict(self) -> dict[str, object]:
        """For `--json`: times are seconds since the epoch, as the state keeps them."""
        record, artifact = self.record, self.artifact
        stat = record.output_stat
        return {
            "name": record.name,
            "status": record.status,
            "key": record.key,
            "inputs": dict(record.inputs),
            "output": record.output,
            "output_stat": None
            if stat is None
            else {"size": stat.size, "mtime_ns": stat.mtime_ns, "inode": stat.inode},
            "updated_at": record.updated_at,
            "protect": self.protect,
            "digest": record.digest,
            "object_path": None if self.object_path is None else str(self.object_path),
            "object_present": self.object_present,
            "model": self.model,
            "artifact": None if artifact is None else _artifact_dict(artifact),
            "open_jobs": [
                {
                    "attempt": entry.attempt,
                    "state": entry.state,
                    "job_id": entry.job_id,
                    "reply_ref": entry.reply_ref,
                    "sent_at": entry.sent_at,
                }
                for entry in self.open_jobs
            ],
        }


@dataclass(frozen=True, slots=True)
class RemovedImage:
    """An image the state no longer tracks; its object and output file were kept."""

    name: str
    digest: str | None
    output: str


@dataclass(frozen=True, slots=True)
class Removal:
    """What `state rm` did."""

    removed: tuple[RemovedImage, ...]
    serial_before: int
    serial_after: int


@dataclass(frozen=True, slots=True)
class RenamedImage:
    """What `state mv` did: the record moved, the output file did not."""

    old: str
    new: str
    output: str
    """The output file the state still records for `new` (the one `old` had)."""
    serial_before: int
    serial_after: int


@dataclass(frozen=True, slots=True)
class StateSummary:
    """`show` without a plan file: the state at a glance."""

    path: Path
    lineage: str | None
    """None: there is no state yet."""
    serial: int
    schema_version: int | None
    images_by_status: Mapping[str, int]
    spent: float
    """Credits spent since the state was created, refunds deducted."""

    @property
    def images(self) -> int:
        """How many images the state tracks."""
        return sum(self.images_by_status.values())

    def as_dict(self) -> dict[str, object]:
        """For `--json`."""
        return {
            "state": str(self.path),
            "lineage": self.lineage,
            "serial": self.serial,
            "schema_version": self.schema_version,
            "images": {"total": self.images, **self.images_by_status},
            "spent": self.spent,
        }


def list_images(snapshot: StateSnapshot, pattern: str | None = None) -> list[ImageSummary]:
    """The images whose name matches the glob `pattern` (all without one), by name.

    A pattern also matches the one name it spells exactly, so a grid member's name
    (`ranger[seed=11,mood=calm]`, whose brackets are glob syntax) can be given as it is.
    """
    names = sorted(snapshot.images)
    if pattern is not None:
        names = [n for n in names if n == pattern or fnmatch.fnmatchcase(n, pattern)]
    summaries = []
    for name in names:
        record = snapshot.images[name]
        artifact = _artifact(snapshot, record)
        summaries.append(
            ImageSummary(
                name=name,
                status=record.status,
                model=_model(record, artifact),
                cost=None if artifact is None else artifact.cost,
                digest=record.digest,
                output=record.output,
            )
        )
    return summaries


def image_details(
    snapshot: StateSnapshot, name: str, objects: ArtifactStoreProtocol
) -> ImageDetails:
    """Everything about image `name`. Raises `UsageError` (with a suggestion) when the state
    does not track it."""
    require_tracked(snapshot, [name])
    record = snapshot.images[name]
    path = None if record.digest is None else objects.path_for(record.digest)
    return ImageDetails(
        record=record,
        artifact=_artifact(snapshot, record),
        object_path=path,
        object_present=path is not None and path.is_file(),
        open_jobs=snapshot.open_jobs.get(record.key, ()),
        # Not every state records it (schema 2 does; the record gains it separately).
        protect=getattr(record, "protect", None),
    )


def summarise(document: StateDocument | None, path: Path) -> StateSummary:
    """The state at `path` at a glance, from one consistent read of it (None: no state)."""
    if document is None:
        return StateSummary(path, None, 0, None, {}, 0.0)
    statuses = Counter(str(row["status"]) for row in document.tables.get("images", ()))
    spent = sum(float(row["amount"] or 0) for row in document.tables.get("spend", ()))
    return StateSummary(
        path=path,
        lineage=document.lineage,
        serial=document.serial,
        schema_version=document.schema_version,
        images_by_status=dict(sorted(statuses.items())),
        spent=spent,
    )


def remove_images(store: StateBackend, names: Sequence[str]) -> Removal:
    """Stop tracking `names`, all in one transaction; their objects and output files stay.

    Raises `UsageError`, removing nothing, when any name is not tracked.
    """
    serial_before = store.serial
    removed = []
    with store.transaction():
        snapshot = store.snapshot()
        unique = list(dict.fromkeys(names))
        require_tracked(snapshot, unique)
        for name in unique:
            record = snapshot.images[name]
            store.remove_image(name)
            removed.append(RemovedImage(name, record.digest, record.output))
    return Removal(tuple(removed), serial_before, store.serial)


def rename_image(store: StateBackend, old: str, new: str) -> RenamedImage:
    """Move the record of `old` to `new`, in one transaction; the output file stays put.

    Raises `UsageError` when `old` is not tracked or `new` already is.
    """
    serial_before = store.serial
    with store.transaction():
        snapshot = store.snapshot()
        require_tracked(snapshot, [old])
        if not new.strip():
            raise UsageError("the new name of an image must not be empty")
        if new in snapshot.images:
            raise UsageError(
                f"cannot rename {old} to {new}: the state already tracks an image {new}",
                hint=f"forget it first with `ltx-reconcile state rm {new}`, or pick another name",
            )
        output = snapshot.images[old].output
        store.rename_image(old, new)
    return RenamedImage(old, new, output, serial_before, store.serial)


def require_tracked(snapshot: StateSnapshot, names: Iterable[str]) -> None:
    """Raise `UsageError` naming the first of `names` the state does not track, with the
    nearest name it does track."""
    for name in names:
        if name not in snapshot.images:
            raise _unknown_image(name, snapshot.images)


def _unknown_image(name: str, known: Iterable[str]) -> UsageError:
    import difflib  # only on the error path

    matches = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    suggestion = f' (did you mean "{matches[0]}"?)' if matches else ""
    return UsageError(
        f'the state does not track an image "{name}"{suggestion}',
        hint="`ltx-reconcile state list` shows every image the state tracks",
    )


def _artifact(snapshot: StateSnapshot, record: ImageRecord) -> ArtifactRecord | None:
    if record.digest is None:
        return None
    return snapshot.artifacts.get(record.digest)


def _model(record: ImageRecord, artifact: ArtifactRecord | None) -> str | None:
    if artifact is not None:
        return artifact.model
    model = record.inputs.get("model")
    return model if isinstance(model, str) else None


def _artifact_dict(artifact: ArtifactRecord) -> dict[str, object]:
    return {
        "digest": artifact.digest,
        "key": artifact.key,
        "size": artifact.size,
        "mime": artifact.mime,
        "width": artifact.width,
        "height": artifact.height,
        "job_id": artifact.job_id,
        "model": artifact.model,
        "email": artifact.email,
        "cost": artifact.cost,
        "created_at": artifact.created_at,
        "source": artifact.source,
    }
