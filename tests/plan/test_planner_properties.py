"""Planner properties over generated specs and states, on real files and real SQLite."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ltx_reconcile.artifacts import ArtifactStore, digest_bytes
from ltx_reconcile.keys import image_key
from ltx_reconcile.plan.model import COSTED_ACTIONS, Action, Plan
from ltx_reconcile.plan.planner import PlanOptions
from ltx_reconcile.settings import Settings
from ltx_reconcile.spec.image import GenerationInputs, Model
from ltx_reconcile.state.journal import Journal
from ltx_reconcile.state.records import ArtifactRecord, ImageRecord
from ltx_reconcile.state.store import StateStore
from ltx_reconcile.workspace import Workspace, WorkspacePaths
from testing.strategies import (
    GONE_NAMES,
    IMAGE_NAMES,
    Fields,
    RecordDraft,
    laid_out_twice,
    record_drafts,
    spec_tree,
)
from testing.tree import gen
from tests.plan.project import Project


def _key(fields: Fields) -> str:
    inputs = GenerationInputs(
        prompt=str(fields["prompt"]),
        model=Model(str(fields["model"])),
        seed=int(str(fields["seed"])),
    )
    return image_key(inputs, None)


def write_state(path: Path, drafts: tuple[RecordDraft, ...]) -> None:
    """A state as applies leave it: artifacts, images pointing at them, open journal entries.

    An image's object is in the store only when its draft says `stored`.
    """
    objects = ArtifactStore(path.parent / "objects")
    opened: set[str] = set()
    with StateStore.open(path) as store:
        for draft in drafts:
            key = _key(draft.fields)
            data = f"the picture of {key}".encode()
            digest = digest_bytes(data)
            if draft.stored:
                objects.put_bytes(data)
            inputs = {"aspectRatio": "16:9", **draft.fields}
            model = str(draft.fields["model"])
            with store.transaction():
                store.put_artifact(
                    ArtifactRecord(
                        digest=digest,
                        key=key,
                        size=len(data),
                        mime="image/png",
                        width=8,
                        height=4,
                        job_id=None,
                        model=model,
                        email=None,
                        cost=28.0,
                        created_at=1.7e9,
                        source="generated",
                        request=inputs,
                    )
                )
                output = f"out/{draft.name}.png"
                store.put_image(
                    ImageRecord(draft.name, key, digest, output, "present", inputs, None, 1.7e9)
                )
            if draft.open_job and key not in opened:
                opened.add(key)
                Journal(store).record_intent(key, draft.name, "a@example.com", inputs, "0" * 64)


def without_sources(plan: Plan) -> list[object]:
    """The plan's changes with where each image is declared blanked out."""
    return [change._replace(source=None) for change in plan.changes]


def assert_well_formed(plan: Plan) -> None:
    """In documented order; one costed action per key; every shared generation is planned."""
    names = [change.image for change in plan.changes]
    deletes = [change.image for change in plan.changes if change.action is Action.DELETE]
    kept = [name for name in names if name not in deletes]
    assert names == sorted(kept) + sorted(deletes)  # docs/plan-format.md: deletes last
    costed = Counter(c.key for c in plan.changes if c.action in COSTED_ACTIONS and c.key)
    assert [key for key, count in costed.items() if count > 1] == []
    generating = {c.image for c in plan.changes if c.action in COSTED_ACTIONS}
    assert {c.reuse_of for c in plan.changes if c.reuse_of} <= generating
    assert {c.depends_on for c in plan.changes if c.depends_on} <= set(names)


patterns = st.lists(st.sampled_from([*IMAGE_NAMES, *GONE_NAMES, "*a*", "gone-*"]), max_size=2)


KNIGHT: Fields = {"prompt": "A knight", "seed": 1, "model": "flux"}
TWINS = (
    {"alpha": KNIGHT, "bravo": KNIGHT},
    (("one.yaml", "alpha"), ("one.yaml", "bravo")),
    (("two/two.yaml", "bravo"), ("one.yaml", "alpha")),
)


@settings(max_examples=40, deadline=None)
@given(
    layouts=laid_out_twice(),
    drafts=record_drafts(),
    options=st.builds(
        PlanOptions,
        targets=patterns.map(tuple),
        excludes=patterns.map(tuple),
        replace=patterns.map(tuple),
    ),
)
@example(  # a delete whose address sorts before the images still in the specs
    layouts=({"bravo": KNIGHT}, (("one.yaml", "bravo"),), (("one.yaml", "bravo"),)),
    drafts=(RecordDraft("alpha", KNIGHT, stored=False, open_job=False),),
    options=PlanOptions(),
)
@example(  # a reuse kept while the generation it shares is excluded
    layouts=TWINS,
    drafts=(),
    options=PlanOptions(excludes=("alpha",)),
)
@example(  # two forced replaces of one key
    layouts=TWINS,
    drafts=(
        RecordDraft("alpha", KNIGHT, stored=True, open_job=False),
        RecordDraft("bravo", KNIGHT, stored=True, open_job=False),
    ),
    options=PlanOptions(replace=("*a*",)),
)
def test_a_plan_does_not_depend_on_how_the_specs_are_ordered_or_split(
    tmp_path_factory, layouts, drafts, options
):
    """Two layouts of the same images, planned against one state, plan the same changes."""
    images, *placements = layouts
    root = tmp_path_factory.mktemp("order")
    state = root / "state" / "state.db"
    write_state(state, drafts)
    plans = []
    for label, placement in zip(("first", "second"), placements, strict=True):
        gen(root / label, spec_tree(images, placement))
        workspace = Workspace(WorkspacePaths.under(root / label, state=state), Settings())
        plans.append(workspace.plan(options))
    assert without_sources(plans[0]) == without_sources(plans[1])
    assert_well_formed(plans[0])


@settings(max_examples=3, deadline=None)
@given(layouts=laid_out_twice(max_size=4))
def test_an_apply_followed_by_a_replan_is_empty_and_paid_once_per_key(
    tmp_path_factory, api_settings, emulator, layouts
):
    """Through the real executor and emulator: every distinct key is charged exactly once."""
    images, placement, _ = layouts
    project = Project(tmp_path_factory.mktemp("replan"), api_settings)
    project.write(spec_tree(images, placement))
    plan = project.plan()
    assert_well_formed(plan)
    charges = len(emulator.charges())
    summary = project.apply()
    assert (summary.failed, summary.unknown, summary.not_started) == ({}, {}, [])
    assert not project.plan().has_changes
    keys = {record.key for record in project.snapshot().images.values()}
    assert len(emulator.charges()) - charges == len(keys)
    assert all(c.action in (Action.CREATE, Action.REUSE) for c in plan.changes)
