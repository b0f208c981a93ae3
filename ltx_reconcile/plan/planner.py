"""The planner: resolved specs + a state snapshot -> a Plan. Pure: no I/O, no clock.

Everything the planner must know about the world (which local reference files hash to
what, which stored objects are missing) is computed by the workspace and handed in, so the
same inputs always give the same plan, sorted by image address.

Decision order for one image, first match wins (docs/architecture.md explains each):
forced replace; key unknown (its reference is generated in this apply); up to date;
same key already generated earlier in this plan; open paid job; stored artifact for the
key (move or reuse); recorded artifact missing (refetch); key changed (replace, or
blocked when protected); otherwise create. A no-op whose `protect` differs from the
state's carries a protect update; a delete of an image the state records as protected is
blocked: its spec, which alone could lift the protection, is gone.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Mapping, Sequence, Set
from dataclasses import dataclass
from pathlib import Path

from ltx_reconcile.apply_result import BudgetStatus
from ltx_reconcile.keys import image_key
from ltx_reconcile.plan.model import COSTED_ACTIONS, Action, Change, FieldChange, Plan
from ltx_reconcile.spec.image import ImageSpec
from ltx_reconcile.state.records import ImageRecord, StateSnapshot

__all__ = ["PlanOptions", "inputs_view", "make_plan"]


@dataclass(frozen=True, slots=True)
class PlanOptions:
    """What the user narrowed or forced: glob patterns over image addresses."""

    targets: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """The options as plain lists, for the plan document."""
        return {
            "targets": list(self.targets),
            "excludes": list(self.excludes),
            "replace": list(self.replace),
        }


def inputs_view(image: ImageSpec, reference_digest: str | None) -> dict[str, object]:
    """The generation inputs as shown in plans and kept in state: API fields plus reference.

    The reference appears as what the user wrote (an image address or a file path) and,
    once known, the digest of its bytes, which is what the key actually depends on.
    """
    view: dict[str, object] = dict(image.inputs.api_fields())
    reference = image.inputs.reference
    if reference is not None:
        view["reference"] = reference.image if reference.image is not None else str(reference.file)
        if reference_digest is not None:
            view["reference_digest"] = reference_digest
    return view


class _InputsView(Mapping[str, object]):
    """`inputs_view` of one image, built the first time someone looks into it.

    Every change carries its inputs, but a plan shows those of the few that change: building
    a dict for each of 100,000 up-to-date images cost a tenth of a warm plan's time and a
    twentieth of its memory. Compares equal to the dict it stands for.
    """

    __slots__ = ("_image", "_reference_digest", "_view")

    def __init__(self, image: ImageSpec, reference_digest: str | None) -> None:
        self._image = image
        self._reference_digest = reference_digest
        self._view: dict[str, object] | None = None

    def _built(self) -> dict[str, object]:
        if self._view is None:
            self._view = inputs_view(self._image, self._reference_digest)
        return self._view

    def __getitem__(self, name: str) -> object:
        return self._built()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())

    def __eq__(self, other: object) -> bool:
        return self._built() == (other._built() if isinstance(other, _InputsView) else other)

    __hash__ = None  # type: ignore[assignment]  # a mapping, like the dict it stands for

    def __repr__(self) -> str:
        return repr(self._built())


def _changed_fields(
    old: Mapping[str, object], new: Mapping[str, object]
) -> tuple[FieldChange, ...]:
    return tuple(
        FieldChange(name, old.get(name), new.get(name))
        for name in sorted(old.keys() | new.keys())
        if old.get(name) != new.get(name)
    )


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


@dataclass(frozen=True, slots=True)
class _Decision:
    action: Action
    reason: str
    moved_from: str | None = None
    reuse_digest: str | None = None
    reuse_of: str | None = None


class _Planner:
    """One planning pass; holds the bookkeeping shared between images."""

    def __init__(
        self,
        images: Sequence[ImageSpec],
        snapshot: StateSnapshot,
        file_digests: Mapping[Path, str],
        missing_objects: Set[str],
        options: PlanOptions,
    ) -> None:
        self.specs = {image.name: image for image in images}
        self.snapshot = snapshot
        self.file_digests = file_digests
        self.missing = missing_objects
        self.options = options
        self.changes: dict[str, Change] = {}
        self.generated_here: dict[str, str] = {}
        """key -> the image whose generation in this plan produces it."""
        # By name first: the snapshot decodes a record only when it is looked up.
        self.vanished = {
            name: snapshot.images[name] for name in snapshot.images if name not in self.specs
        }
        self.vanished_by_key: dict[str, list[str]] = {}
        for name in sorted(self.vanished):
            self.vanished_by_key.setdefault(self.vanished[name].key, []).append(name)
        self.moved_away: set[str] = set()

    def run(self) -> list[Change]:
        for name in sorted(self.specs):
            self._resolve(name)
        deletes = [
            self._delete(record)
            for name, record in sorted(self.vanished.items())
            if name not in self.moved_away
        ]
        return [self.changes[name] for name in sorted(self.changes)] + deletes

    def _resolve(self, name: str) -> Change:
        image = self.specs[name]
        if image.inputs.reference is None and name not in self.changes:
            change = self.changes[name] = self._plan_image(image)  # the usual case
            return change
        # Iterative depth-first over reference chains: the loader rejects cycles, but a
        # long chain must not hit Python's recursion limit.
        stack = [name]
        while stack:
            current = stack[-1]
            if current in self.changes:
                stack.pop()
                continue
            dependency = self._pending_dependency(current)
            if dependency is not None:
                stack.append(dependency)
                continue
            self.changes[current] = self._plan_image(self.specs[current])
            stack.pop()
        return self.changes[name]

    def _pending_dependency(self, name: str) -> str | None:
        reference = self.specs[name].inputs.reference
        if reference is None or reference.image is None or reference.image in self.changes:
            return None
        return reference.image

    def _reference_digest(self, image: ImageSpec) -> tuple[str | None, str | None]:
        """(digest the key depends on, image generated in this apply it waits for)."""
        reference = image.inputs.reference
        if reference is None:
            return None, None
        if reference.file is not None:
            return self.file_digests[reference.file], None
        assert reference.image is not None  # noqa: S101 - Reference holds exactly one
        upstream = self.changes[reference.image]
        digest = _final_digest(upstream, self.snapshot)
        if digest is None:
            return None, reference.image
        return digest, None

    def _plan_image(self, image: ImageSpec) -> Change:
        reference_digest, waits_for = self._reference_digest(image)
        if image.key is not None:
            key: str | None = image.key  # the loader's, cached with the file's parse
        elif waits_for is not None:
            key = None
        else:
            key = image_key(image.inputs, reference_digest)
        record = self.snapshot.images.get(image.name)
        if record is not None and key == record.key:
            key = record.key  # the state's equal string: one copy per image in memory, not two
        forced = bool(self.options.replace) and _matches(image.name, self.options.replace)
        decision = self._decide(key, record, waits_for, forced=forced)
        action, reason = decision.action, decision.reason
        if image.protect and _replaces(action, key, record, forced=forced):
            action = Action.BLOCKED
            reason = f"protected (protect: true), but it would be replaced: {reason}"
        if action in COSTED_ACTIONS and key is not None:
            self.generated_here.setdefault(key, image.name)
        inputs = _InputsView(image, reference_digest)
        changed: tuple[FieldChange, ...] = ()
        if record is not None and action in (Action.REPLACE, Action.BLOCKED):
            changed = _changed_fields(record.inputs, inputs)
        reuse_digest = decision.reuse_digest
        if action is Action.NOOP and record is not None and record.output != image.output:
            # The same picture, wanted at another path: free, like a rename.
            action = Action.MOVE
            reason = "its output file moves; same inputs, nothing to pay"
            reuse_digest = record.digest
            changed = (FieldChange("output", record.output, image.output),)
        protect_update = None
        if action is Action.NOOP and record is not None and record.protect != image.protect:
            # Metadata only: apply rewrites the state row, so a later delete sees the setting.
            protect_update = image.protect
            reason = f"up to date; apply records protect: {str(image.protect).lower()} (free)"
            changed = (FieldChange("protect", record.protect, image.protect),)
        return Change(
            image=image.name,
            action=action,
            reason=reason,
            key=key,
            old_key=record.key if record else None,
            model=image.inputs.model.value,
            cost=image.price if action in COSTED_ACTIONS else 0,
            inputs=inputs,
            old_inputs=record.inputs if record else None,
            changed=changed,
            output=image.output,
            source=str(image.source),
            moved_from=decision.moved_from,
            reuse_digest=reuse_digest,
            reuse_of=decision.reuse_of,
            depends_on=waits_for,
            seed_derived=image.seed_derived,
            protect_update=protect_update,
        )

    def _decide(
        self,
        key: str | None,
        record: ImageRecord | None,
        waits_for: str | None,
        *,
        forced: bool,
    ) -> _Decision:
        if forced:
            if key is not None and key in self.generated_here:
                return self._shared(key)
            return _Decision(Action.REPLACE, "forced by --replace: a deliberate new attempt")
        if key is None:
            if record is not None:
                return _Decision(
                    Action.REPLACE, f"its reference {waits_for} is generated in this apply"
                )
            return _Decision(
                Action.CREATE, f"new image; its reference {waits_for} is generated first"
            )
        if record is not None and record.key == key and self._is_stored(record.digest):
            return _Decision(Action.NOOP, "up to date")
        return self._decide_by_key(key, record)

    def _decide_by_key(self, key: str, record: ImageRecord | None) -> _Decision:
        if key in self.generated_here:
            return self._shared(key)
        open_jobs = self.snapshot.open_jobs.get(key, ())
        if open_jobs:
            return _Decision(Action.RESUME, _resume_reason(open_jobs[0].state, open_jobs[0].job_id))
        artifact = self.snapshot.artifacts_by_key.get(key)
        if artifact is not None and self._is_stored(artifact.digest):
            return self._move_or_reuse(key, record, artifact.digest)
        if record is not None and record.key == key:
            if record.digest is None:
                return _Decision(
                    Action.CREATE, f"the last attempt left no image (status {record.status})"
                )
            return _Decision(Action.REFETCH, "the recorded artifact is missing from the store")
        if record is not None:
            return _Decision(Action.REPLACE, "generation inputs changed")
        return _Decision(Action.CREATE, "new image")

    def _shared(self, key: str) -> _Decision:
        first = self.generated_here[key]
        return _Decision(
            Action.REUSE,
            f"same inputs as {first}, which this apply generates once",
            reuse_of=first,
        )

    def _move_or_reuse(self, key: str, record: ImageRecord | None, digest: str) -> _Decision:
        if record is None:
            for old_name in self.vanished_by_key.get(key, []):
                if old_name not in self.moved_away:
                    self.moved_away.add(old_name)
                    return _Decision(
                        Action.MOVE,
                        f"renamed from {old_name}; same inputs",
                        moved_from=old_name,
                        reuse_digest=digest,
                    )
        return _Decision(
            Action.REUSE, "an artifact for these inputs is already stored", reuse_digest=digest
        )

    def _is_stored(self, digest: str | None) -> bool:
        return digest is not None and digest not in self.missing

    def _delete(self, record: ImageRecord) -> Change:
        if record.protect:
            action = Action.BLOCKED
            reason = (
                "protected (protect: true in the state), but it would be deleted: "
                f"{record.name} is no longer in the specs"
            )
        else:
            action = Action.DELETE
            reason = "no longer in the specs; the stored object stays until gc"
        return Change(
            image=record.name,
            action=action,
            reason=reason,
            key=None,
            old_key=record.key,
            old_inputs=record.inputs,
            output=record.output,
        )


def _replaces(action: Action, key: str | None, record: ImageRecord | None, *, forced: bool) -> bool:
    """Whether `action` would give a tracked image another picture than its recorded one.

    A replace does; so does a free switch to another key's artifact (reuse, resume) or a
    forced new attempt shared with another image. A refetch or a resume of the same key
    restores the recorded picture, and a create has none to lose.
    """
    if action is Action.REPLACE:
        return True
    if record is None or action is Action.NOOP:
        return False
    return forced or key != record.key


def _resume_reason(state: str, job_id: str | None) -> str:
    if state == "unknown":
        return (
            "an earlier attempt's outcome is unknown and may have been paid for; "
            "apply asks the API again (--resubmit-unknown sends it anew)"
        )
    if job_id is None:
        return "an earlier create was sent but its answer was lost; apply recovers the job"
    return f"job {job_id} is already paid for and still open; apply follows it"


def _final_digest(change: Change, snapshot: StateSnapshot) -> str | None:
    """The artifact digest an upstream image will have after apply, if known now."""
    if change.action is Action.NOOP:
        record = snapshot.images.get(change.image)
        return record.digest if record else None
    if change.action in (Action.MOVE, Action.REUSE):
        return change.reuse_digest
    return None


def _select(
    changes: list[Change], specs: Mapping[str, ImageSpec], options: PlanOptions
) -> set[str]:
    """The image addresses --target/--exclude keep, with the references they need."""
    names = {c.image for c in changes}
    if not options.targets and not options.excludes:
        return names  # everything, so every image anything needs is in already
    if options.targets:
        names = {n for n in names if _matches(n, options.targets)}
    names = {n for n in names if not _matches(n, options.excludes)}
    # A reuse of a generation made in this apply needs that generation, as a reference does.
    shares = {c.image: c.reuse_of for c in changes if c.reuse_of is not None}
    pending = list(names)
    while pending:
        name = pending.pop()
        spec = specs.get(name)
        upstream = spec.inputs.reference.image if spec and spec.inputs.reference else None
        for needed in (upstream, shares.get(name)):
            if needed is not None and needed not in names:
                names.add(needed)
                pending.append(needed)
    return names


def make_plan(
    images: Sequence[ImageSpec],
    snapshot: StateSnapshot,
    *,
    specs_digest: str,
    file_digests: Mapping[Path, str],
    missing_objects: Set[str],
    options: PlanOptions | None = None,
    budget: BudgetStatus | None = None,
) -> Plan:
    """Plan every image of the specs against the state.

    `file_digests` maps each local reference file (as the spec resolved it) to the sha256
    of its bytes; `missing_objects` holds the recorded digests absent from the store;
    `budget` (the specs' budget and the day's spend so far) travels with the plan.
    """
    options = options or PlanOptions()
    planner = _Planner(images, snapshot, file_digests, missing_objects, options)
    changes = planner.run()
    selected = _select(changes, planner.specs, options)
    kept = tuple(c for c in changes if c.image in selected)
    return Plan(
        lineage=snapshot.lineage,
        serial=snapshot.serial,
        specs_digest=specs_digest,
        changes=kept,
        skipped=len(changes) - len(kept),
        options=options.as_dict(),
        budget=budget,
    )
