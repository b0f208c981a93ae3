"""The gallery's model: every image of the specs with its picture, status and planned change.

Built from the loaded specs, one state snapshot, each image's latest journal entry, the set
of stored objects that are missing and, for a plan gallery, a saved plan. Pure: no I/O, no
clock, nothing printed. Thumbnails (`gallery/thumbs.py`) and the page (`gallery/html.py`)
are made from it elsewhere. Linear in the number of images: a gallery of 1,000 images
parses each recorded image's inputs once and nothing more.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from ltx_reconcile.plan.model import COSTED_ACTIONS, Action, Change, FieldChange, Plan
from ltx_reconcile.plan.planner import inputs_view
from ltx_reconcile.spec.image import ImageSpec
from ltx_reconcile.state.records import ImageRecord, JournalEntry, StateSnapshot

__all__ = [
    "STATUSES",
    "Gallery",
    "GalleryGroup",
    "GalleryImage",
    "GalleryPage",
    "GalleryStatus",
    "PlanSummary",
    "PlannedChange",
    "build_gallery",
    "grid_labels",
]

GalleryStatus = Literal["present", "pending", "failed", "unknown", "missing"]
STATUSES: Final[tuple[GalleryStatus, ...]] = ("present", "pending", "failed", "unknown", "missing")
"""Every status a gallery image can have, in the order the filter lists them."""

_JOURNAL_STATUS: Final[Mapping[str, GalleryStatus]] = {
    "submitting": "pending",
    "submitted": "pending",
    "completed": "pending",
    "fetched": "pending",
    "unknown": "unknown",
    "abandoned": "failed",
}
_DETAIL: Final[Mapping[str, str]] = {
    "submitting": "a job is being submitted",
    "submitted": "a job is running; apply fetches it",
    "completed": "a job completed; apply fetches it",
    "fetched": "generated; apply records it",
    "unknown": "the API could not tell whether the job exists (see apply --resubmit-unknown)",
    "abandoned": "the last attempt was abandoned",
}
_NOT_INPUTS: Final = frozenset({"prompt", "reference_digest"})
_FIRST_INPUTS: Final = ("model", "seed", "aspectRatio")
"""Shown first on a card: what tells two pictures of one prompt apart."""


@dataclass(frozen=True, slots=True)
class PlannedChange:
    """What a saved plan will do to one image."""

    action: Action
    reason: str
    cost: int
    changed: tuple[FieldChange, ...] = ()
    """The generation inputs that differ (old -> new), for a replace or a blocked change."""
    after_digest: str | None = None
    """For a move or a reuse: the stored picture the image will show, when already known."""
    related: str | None = None
    """The other image involved: moved from, reusing, or waiting for."""

    @property
    def is_regenerated(self) -> bool:
        """True when apply pays for a new picture (create, replace, refetch)."""
        return self.action in COSTED_ACTIONS


@dataclass(frozen=True, slots=True)
class GalleryImage:
    """One card of the gallery: an image address with its picture and everything about it."""

    name: str
    group: str
    """The grid the image was expanded from, or its own name."""
    labels: tuple[tuple[str, str], ...]
    """Its grid axes and values (`(("seed", "11"), ("mood", "calm"))`); empty off a grid."""
    prompt: str
    inputs: tuple[tuple[str, str], ...]
    """Every other generation input, as the plan names them, with its value as text."""
    model: str
    tags: tuple[str, ...]
    output: str
    """The named output file, relative to the workspace root."""
    status: GalleryStatus
    digest: str | None = None
    """The picture the state records for the image (shown when the store or output has it)."""
    job_id: str | None = None
    cost: float = 0
    cost_is_estimate: bool = True
    """True when `cost` is the model's price, not what the recorded job cost."""
    detail: str | None = None
    """One sentence on the status: why a job failed, why a picture is out of date."""
    description: str | None = None
    source: str | None = None
    """Where the spec declares it (file:line:column); None for an image only the state has."""
    change: PlannedChange | None = None


@dataclass(frozen=True, slots=True)
class GalleryGroup:
    """A grid's images, laid out by its axes, or one image on its own (no axes)."""

    name: str
    axes: tuple[str, ...]
    images: tuple[GalleryImage, ...]

    @property
    def is_grid(self) -> bool:
        """True for the members of one grid declaration."""
        return bool(self.axes)


@dataclass(frozen=True, slots=True)
class PlanSummary:
    """The headline of a plan gallery: how many of each action, and the estimated cost."""

    counts: Mapping[Action, int]
    total_cost: int


@dataclass(frozen=True, slots=True)
class Gallery:
    """Every image of the specs (and, for a plan, every image it deletes), grouped by grid."""

    groups: tuple[GalleryGroup, ...]
    serial: int
    """The state serial the gallery shows."""
    plan: PlanSummary | None = None
    status_counts: Mapping[GalleryStatus, int] = field(default_factory=dict)

    @property
    def images(self) -> tuple[GalleryImage, ...]:
        """Every card, in page order."""
        return tuple(image for group in self.groups for image in group.images)

    @property
    def pictures(self) -> frozenset[str]:
        """The digest of every stored picture a card shows (current, or after a free change)."""
        digests = set()
        for image in self.images:
            if image.digest is not None:
                digests.add(image.digest)
            if image.change is not None and image.change.after_digest is not None:
                digests.add(image.change.after_digest)
        return frozenset(digests)


def grid_labels(name: str, base: str) -> tuple[tuple[str, str], ...]:
    """The axes and values in a grid member's name: `hero[seed=3,mood=calm]` -> pairs.

    Safe to split: `[`, `]`, `=` and `,` are reserved in names and labels (spec/names.py).
    """
    if not (name.startswith(base + "[") and name.endswith("]")):
        return ()
    pairs = name[len(base) + 1 : -1].split(",")
    return tuple((axis, label) for axis, _, label in (pair.partition("=") for pair in pairs))


def build_gallery(
    images: Sequence[ImageSpec],
    snapshot: StateSnapshot,
    *,
    attempts: Mapping[str, JournalEntry],
    missing: Set[str],
    root: Path,
    plan: Plan | None = None,
) -> Gallery:
    """The gallery of `images` as `snapshot` records them, or as `plan` will change them.

    `attempts` is each image's newest journal entry, `missing` the recorded digests absent
    from the store; `root` makes source locations relative.
    """
    changes = {} if plan is None else {c.image: c for c in plan.changes}
    cards = [
        _spec_card(image, snapshot, attempts, missing, root, changes.get(image.name))
        for image in images
    ]
    cards += [
        _deleted_card(change, snapshot, missing)
        for change in changes.values()
        if change.action is Action.DELETE and change.image in snapshot.images
    ]
    summary = None if plan is None else PlanSummary(dict(plan.counts), plan.total_cost)
    counts = Counter(card.status for card in cards)
    return Gallery(
        groups=_grouped(cards),
        serial=snapshot.serial,
        plan=summary,
        status_counts={status: counts[status] for status in STATUSES if counts[status]},
    )


def _spec_card(
    image: ImageSpec,
    snapshot: StateSnapshot,
    attempts: Mapping[str, JournalEntry],
    missing: Set[str],
    root: Path,
    change: Change | None,
) -> GalleryImage:
    view = inputs_view(image, None)
    record = snapshot.images.get(image.name)
    attempt = attempts.get(image.name)
    status, detail = _status(record, attempt, missing)
    if status == "present" and record is not None and _is_outdated(record, view):
        detail = "the inputs changed since this picture was made"
    digest = record.digest if record is not None else None
    artifact = snapshot.artifacts.get(digest) if digest is not None else None
    job_id = artifact.job_id if artifact is not None else None
    if job_id is None and attempt is not None and status != "present":
        job_id = attempt.job_id
    group = image.grid or image.name
    return GalleryImage(
        name=image.name,
        group=group,
        labels=grid_labels(image.name, group) if image.grid else (),
        prompt=image.inputs.prompt,
        inputs=_display_inputs(_with_relative_reference(view, image, root)),
        model=image.inputs.model.value,
        tags=image.tags,
        output=image.output,
        status=status,
        digest=digest,
        job_id=job_id,
        cost=artifact.cost if artifact is not None else image.price,
        cost_is_estimate=artifact is None,
        detail=detail,
        description=image.description,
        source=_relative_source(str(image.source), root),
        change=None if change is None else _planned(change),
    )


def _deleted_card(change: Change, snapshot: StateSnapshot, missing: Set[str]) -> GalleryImage:
    record = snapshot.images[change.image]
    inputs = dict(record.inputs)
    group = change.image.partition("[")[0]
    artifact = snapshot.artifacts.get(record.digest) if record.digest is not None else None
    status, detail = _status(record, None, missing)
    return GalleryImage(
        name=change.image,
        group=group,
        labels=grid_labels(change.image, group),
        prompt=str(inputs.get("prompt", "")),
        inputs=_display_inputs(inputs),
        model=str(inputs.get("model", "")),
        tags=(),
        output=record.output,
        status=status,
        digest=record.digest,
        job_id=artifact.job_id if artifact is not None else None,
        cost=artifact.cost if artifact is not None else 0,
        cost_is_estimate=artifact is None,
        detail=detail,
        change=_planned(change),
    )


def _status(
    record: ImageRecord | None, attempt: JournalEntry | None, missing: Set[str]
) -> tuple[GalleryStatus, str | None]:
    """What the state and the store say about an image's picture, and why."""
    if record is not None and record.digest is not None:
        if record.digest in missing:
            return "missing", "the state records a picture that is missing from the store"
        return record.status, None
    if record is not None and record.status != "present":
        return record.status, None
    if attempt is None:
        return "pending", "not generated yet"
    if attempt.state == "failed":
        return "failed", attempt.message or "the job failed"
    return _JOURNAL_STATUS[attempt.state], _DETAIL[attempt.state]


def _is_outdated(record: ImageRecord, view: Mapping[str, object]) -> bool:
    # The reference's digest is left out: only apply knows it for an image referenced by
    # name, and a changed reference shows up in the plan, not here.
    recorded = {k: v for k, v in record.inputs.items() if k != "reference_digest"}
    return recorded != view


def _display_inputs(view: Mapping[str, object]) -> tuple[tuple[str, str], ...]:
    first = [name for name in _FIRST_INPUTS if name in view]
    rest = [name for name in view if name not in _NOT_INPUTS and name not in _FIRST_INPUTS]
    return tuple((name, str(view[name])) for name in (*first, *rest))


def _with_relative_reference(
    view: Mapping[str, object], image: ImageSpec, root: Path
) -> Mapping[str, object]:
    # A page may be committed or shared: it names a reference file as the repository
    # does, not by this machine's absolute path.
    reference = image.inputs.reference
    if reference is None or reference.file is None or not reference.file.is_relative_to(root):
        return view
    return {**view, "reference": reference.file.relative_to(root).as_posix()}


def _relative_source(source: str, root: Path) -> str:
    prefix = f"{root}/"
    return source.removeprefix(prefix)


def _planned(change: Change) -> PlannedChange:
    return PlannedChange(
        action=change.action,
        reason=change.reason,
        cost=change.cost,
        changed=change.changed,
        after_digest=change.reuse_digest,
        related=change.moved_from or change.reuse_of or change.depends_on,
    )


def _grouped(cards: Iterable[GalleryImage]) -> tuple[GalleryGroup, ...]:
    """One group per grid (members in page order) or per image, in order of first card."""
    members: dict[str, list[GalleryImage]] = {}
    for card in cards:
        key = card.group if card.labels else f"\0{card.name}"
        members.setdefault(key, []).append(card)
    return tuple(
        GalleryGroup(
            name=group[0].group,
            axes=tuple(axis for axis, _ in group[0].labels),
            images=tuple(group),
        )
        for group in members.values()
    )


@dataclass(frozen=True, slots=True)
class GalleryPage:
    """A gallery written to disk: where the page is, and what it shows."""

    path: Path
    gallery: Gallery
    thumbnails: int
    """How many cards show a picture (the rest show a placeholder)."""
