"""Each plan action, against a state written by a real apply through the emulator."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ltx_reconcile.errors import ExitCode
from ltx_reconcile.plan.model import Action, FieldChange
from ltx_reconcile.state.journal import Journal
from tests.plan.project import Project, lines

CAST = """
    images:
      hero:
        prompt: A knight in silver armour
        seed: 3
      villain:
        prompt: A red dragon
        seed: 4
        protect: true
      castle:
        model: nano-banana
        prompt: A castle above the clouds
        seed: 5
"""

NEWCOMERS = """
    images:
      squire:
        prompt: A squire carrying a shield
        seed: 6
      knight:
        prompt: A knight on a horse
        seed: 7
      knight-night:
        prompt: The same knight at night
        reference: knight
        seed: 8
"""


@pytest.fixture(name="applied")
def applied_cast(applied: Callable[[str], Project]) -> Project:
    """A project whose CAST was applied: three images present, their objects stored."""
    return applied(CAST)


def without(spec: str, image: str) -> str:
    """`spec` with the lines of `image` cut out (its name and its deeper-indented fields)."""
    kept: list[str] = []
    skipping = False
    for line in spec.splitlines(keepends=True):
        if line.strip() == f"{image}:":
            skipping = True
        elif skipping and not line.startswith(" " * 8):
            skipping = False
        if not skipping:
            kept.append(line)
    return "".join(kept)


def summary_of(project: Project, **options: tuple[str, ...]) -> dict[str, tuple[Action, int]]:
    """Each planned image's action and cost."""
    return {name: (c.action, c.cost) for name, c in project.changes(**options).items()}


def test_an_applied_project_plans_a_no_op_for_every_image(applied):
    """Right after an apply, nothing is left to do and nothing costs anything."""
    plan = applied.plan()
    assert [(c.image, c.action, c.reason, c.cost) for c in plan.changes] == [
        ("castle", Action.NOOP, "up to date", 0),
        ("hero", Action.NOOP, "up to date", 0),
        ("villain", Action.NOOP, "up to date", 0),
    ]
    assert (plan.has_changes, plan.total_cost, plan.serial) == (False, 0, applied.snapshot().serial)


def test_a_new_image_is_a_costed_create_with_its_inputs(applied):
    """An image the state has never seen is generated, at its model's price."""
    applied.specs(NEWCOMERS, "more.yaml")
    squire = applied.changes()["squire"]
    assert (squire.action, squire.reason, squire.cost, squire.model) == (
        Action.CREATE,
        "new image",
        28,
        "flux",
    )
    assert (squire.old_key, squire.old_inputs, squire.source) == (
        None,
        None,
        "specs/more.yaml:2:3",
    )
    assert squire.inputs == {
        "prompt": "A squire carrying a shield",
        "aspectRatio": "16:9",
        "seed": 6,
        "model": "flux",
    }


def test_changing_keyed_inputs_is_a_costed_replace_that_names_each_change(applied):
    """The replace shows every changed input as old -> new, and both keys."""
    old_key = applied.snapshot().images["hero"].key
    applied.specs(
        CAST.replace("A knight in silver armour", "A knight in golden armour").replace(
            "seed: 3", "seed: 3\n        aspect_ratio: '1:1'"
        )
    )
    hero = applied.changes()["hero"]
    assert (hero.action, hero.reason, hero.cost, hero.old_key) == (
        Action.REPLACE,
        "generation inputs changed",
        28,
        old_key,
    )
    assert hero.key != old_key
    assert hero.changed == (
        FieldChange("aspectRatio", "16:9", "1:1"),
        FieldChange("prompt", "A knight in silver armour", "A knight in golden armour"),
    )


def test_renaming_an_image_with_the_same_inputs_is_a_free_move(applied, emulator):
    """The artifact follows the new name: no delete of the old name, no charge."""
    digest = applied.snapshot().images["hero"].digest
    applied.specs(CAST.replace("hero:", "champion:"))
    plan = applied.plan()
    champion = {c.image: c for c in plan.changes}["champion"]
    assert (champion.action, champion.reason, champion.cost) == (
        Action.MOVE,
        "renamed from hero; same inputs",
        0,
    )
    assert (champion.moved_from, champion.reuse_digest) == ("hero", digest)
    assert [c.image for c in plan.changes] == ["castle", "champion", "villain"]
    charges = len(emulator.charges())
    summary = applied.apply()
    assert (summary.moved, summary.spent, len(emulator.charges())) == (["champion"], 0, charges)
    assert sorted(applied.snapshot().images) == ["castle", "champion", "villain"]
    assert not applied.plan().has_changes


def test_a_new_image_whose_inputs_are_stored_reuses_the_artifact_for_free(applied, emulator):
    """An artifact already stored for the key is pointed at, not bought again."""
    digest = applied.snapshot().images["hero"].digest
    applied.specs(CAST + "      hero-again: {prompt: A knight in silver armour, seed: 3}\n")
    again = applied.changes()["hero-again"]
    assert (again.action, again.reason, again.cost, again.reuse_digest) == (
        Action.REUSE,
        "an artifact for these inputs is already stored",
        0,
        digest,
    )
    charges = len(emulator.charges())
    assert applied.apply().reused == ["hero-again"]
    assert len(emulator.charges()) == charges
    assert applied.snapshot().images["hero-again"].digest == digest


def test_an_open_journal_entry_for_the_key_is_resumed_for_free(applied):
    """A create already sent is followed or recovered, whatever state its entry is in."""
    applied.specs(NEWCOMERS, "more.yaml")
    key = applied.changes()["squire"].key
    assert key is not None
    entry = applied.journal_intent("squire", key)
    squire = applied.changes()["squire"]
    assert (squire.action, squire.cost, squire.reason) == (
        Action.RESUME,
        0,
        "an earlier create was sent but its answer was lost; apply recovers the job",
    )
    with applied.store() as store:
        Journal(store).mark_submitted(entry, "job-42", cost=28)
    assert applied.changes()["squire"].reason == (
        "job job-42 is already paid for and still open; apply follows it"
    )


def test_an_entry_whose_outcome_is_unknown_is_resumed_with_a_warning(applied):
    """An unknown outcome may have been paid for: the reason says so and names the way out."""
    applied.specs(NEWCOMERS, "more.yaml")
    key = applied.changes()["squire"].key
    assert key is not None
    entry = applied.journal_intent("squire", key)
    with applied.store() as store:
        Journal(store).mark_unknown(entry, "no job found for its replyRef")
    squire = applied.changes()["squire"]
    assert (squire.action, squire.cost, squire.reason) == (
        Action.RESUME,
        0,
        "an earlier attempt's outcome is unknown and may have been paid for; "
        "apply asks the API again (--resubmit-unknown sends it anew)",
    )


def test_a_recorded_artifact_missing_from_the_store_is_a_costed_refetch(applied, emulator):
    """The state says present but the object is gone: generating again costs money."""
    record = applied.snapshot().images["hero"]
    assert record.digest is not None
    applied.artifacts().path_for(record.digest).unlink()
    hero = applied.changes()["hero"]
    assert (hero.action, hero.reason, hero.cost, hero.key, hero.old_key) == (
        Action.REFETCH,
        "the recorded artifact is missing from the store",
        28,
        record.key,
        record.key,
    )
    charges = len(emulator.charges())
    assert applied.apply().generated == ["hero"]
    assert len(emulator.charges()) == charges + 1
    assert not applied.plan().has_changes


def test_an_image_removed_from_the_specs_is_a_free_delete(applied):
    """The address stops being tracked; the stored object stays until gc."""
    record = applied.snapshot().images["castle"]
    applied.specs(without(CAST, "castle"))
    castle = applied.changes()["castle"]
    assert (castle.action, castle.reason, castle.cost, castle.key, castle.old_key) == (
        Action.DELETE,
        "no longer in the specs; the stored object stays until gc",
        0,
        None,
        record.key,
    )
    assert castle.output == "out/castle.png"


def test_a_protected_image_whose_inputs_changed_is_blocked_and_apply_refuses(
    applied, emulator, capsys
):
    """protect: true turns the replace into blocked; apply changes nothing and says why."""
    applied.specs(CAST.replace("A red dragon", "A green dragon"))
    villain = applied.changes()["villain"]
    assert (villain.action, villain.cost, villain.reason) == (
        Action.BLOCKED,
        0,
        "protected (protect: true), but it would be replaced: generation inputs changed",
    )
    assert villain.changed == (FieldChange("prompt", "A red dragon", "A green dragon"),)
    serial, charges = applied.snapshot().serial, len(emulator.charges())
    capsys.readouterr()
    assert applied.run("apply", "--auto-approve") == ExitCode.INVALID_INPUT
    assert capsys.readouterr().err == lines(
        """
        Error: apply refuses blocked changes: villain
        hint: remove `protect: true` from the image, or revert the change that would replace or delete it
        """
    )
    assert (applied.snapshot().serial, len(emulator.charges())) == (serial, charges)


def test_forcing_a_protected_image_to_regenerate_is_blocked(applied):
    """--replace is a replace too: protect wins."""
    villain = applied.changes(replace=("villain",))["villain"]
    assert (villain.action, villain.cost, villain.reason) == (
        Action.BLOCKED,
        0,
        "protected (protect: true), but it would be replaced: "
        "forced by --replace: a deliberate new attempt",
    )


def test_giving_a_protected_image_the_inputs_of_a_stored_artifact_is_blocked(applied):
    """A free swap to another stored picture still replaces the protected image."""
    applied.specs(
        CAST.replace("A red dragon", "A knight in silver armour").replace("seed: 4", "seed: 3")
    )
    villain = applied.changes()["villain"]
    assert (villain.action, villain.cost) == (Action.BLOCKED, 0)
    assert villain.reason == (
        "protected (protect: true), but it would be replaced: "
        "an artifact for these inputs is already stored"
    )
    assert [(f.field, f.old, f.new) for f in villain.changed] == [
        ("prompt", "A red dragon", "A knight in silver armour"),
        ("seed", 4, 3),
    ]


def test_removing_a_protected_image_from_the_specs_is_blocked(applied):
    """The state records protect (docs/spec-format.md), so the delete is blocked too."""
    applied.specs(without(CAST, "villain"))
    villain = applied.changes()["villain"]
    assert (villain.action, villain.cost, villain.reason) == (
        Action.BLOCKED,
        0,
        "protected (protect: true in the state), but it would be deleted: "
        "villain is no longer in the specs",
    )


def test_replace_flag_plans_a_costed_new_attempt_at_the_same_key(applied):
    """--replace regenerates an up-to-date image on purpose; the others stay no-ops."""
    record = applied.snapshot().images["hero"]
    plan = applied.plan(replace=("h*",))
    hero = {c.image: c for c in plan.changes}["hero"]
    assert (hero.action, hero.reason, hero.cost, hero.key) == (
        Action.REPLACE,
        "forced by --replace: a deliberate new attempt",
        28,
        record.key,
    )
    assert summary_of(applied, replace=("h*",)) == {
        "castle": (Action.NOOP, 0),
        "hero": (Action.REPLACE, 28),
        "villain": (Action.NOOP, 0),
    }
    assert plan.options == {"targets": [], "excludes": [], "replace": ["h*"]}


def test_target_keeps_the_matching_images_and_the_images_they_reference(applied):
    """Globs select addresses; a referenced image comes along; the rest are counted skipped."""
    applied.specs(NEWCOMERS, "more.yaml")
    plan = applied.plan(targets=("*-night",))
    assert [(c.image, c.action, c.depends_on) for c in plan.changes] == [
        ("knight", Action.CREATE, None),
        ("knight-night", Action.CREATE, "knight"),
    ]
    assert plan.skipped == 4
    assert plan.changes[1].key is None
    assert plan.changes[1].reason == "new image; its reference knight is generated first"


def test_exclude_leaves_the_matching_images_out(applied):
    """Several --exclude globs combine; a delete can be excluded like any image."""
    applied.specs(NEWCOMERS.replace("knight", "rider"), "more.yaml")
    applied.specs(without(CAST, "castle"))
    plan = applied.plan(excludes=("rider*", "castle"))
    assert [(c.image, c.action) for c in plan.changes] == [
        ("hero", Action.NOOP),
        ("squire", Action.CREATE),
        ("villain", Action.NOOP),
    ]
    assert plan.skipped == 3
    assert summary_of(applied, targets=("castle",)) == {"castle": (Action.DELETE, 0)}


TWINS = """
    images:
      twin-a: {prompt: Two identical knights, seed: 9}
      twin-b: {prompt: Two identical knights, seed: 9}
"""


def test_two_new_images_with_identical_inputs_are_paid_for_once(project, emulator):
    """One create, one reuse of that create; apply charges once and a replan is empty."""
    project.specs(TWINS)
    plan = project.plan()
    assert [(c.image, c.action, c.cost, c.reuse_of) for c in plan.changes] == [
        ("twin-a", Action.CREATE, 28, None),
        ("twin-b", Action.REUSE, 0, "twin-a"),
    ]
    assert plan.changes[1].reason == "same inputs as twin-a, which this apply generates once"
    charges = len(emulator.charges())
    summary = project.apply()
    assert (summary.generated, summary.reused, summary.spent) == (["twin-a"], ["twin-b"], 28)
    assert len(emulator.charges()) == charges + 1
    assert not project.plan().has_changes


@pytest.mark.parametrize("selection", [("--exclude", "twin-a"), ("--target", "twin-b")])
def test_an_image_that_shares_a_generation_brings_that_generation_along(
    project, emulator, selection
):
    """A reuse of an image generated in this apply needs it, as a reference would."""
    project.specs(TWINS)
    flag, pattern = selection
    key = "excludes" if flag == "--exclude" else "targets"
    plan = project.plan(**{key: (pattern,)})
    assert [(c.image, c.action, c.cost) for c in plan.changes] == [
        ("twin-a", Action.CREATE, 28),
        ("twin-b", Action.REUSE, 0),
    ]
    charges = len(emulator.charges())
    assert project.run("apply", "--auto-approve", flag, pattern) == ExitCode.OK
    assert len(emulator.charges()) == charges + 1
    assert sorted(project.snapshot().images) == ["twin-a", "twin-b"]


def test_forcing_two_images_with_identical_inputs_pays_for_one_new_attempt(project, emulator):
    """--replace over both twins regenerates the key once and shares it."""
    project.specs(TWINS)
    project.apply()
    plan = project.plan(replace=("twin-*",))
    assert [(c.image, c.action, c.cost, c.reuse_of) for c in plan.changes] == [
        ("twin-a", Action.REPLACE, 28, None),
        ("twin-b", Action.REUSE, 0, "twin-a"),
    ]
    charges = len(emulator.charges())
    assert project.run("apply", "--auto-approve", "--replace", "twin-*") == ExitCode.OK
    assert len(emulator.charges()) == charges + 1
    snapshot = project.snapshot()
    assert snapshot.images["twin-a"].digest == snapshot.images["twin-b"].digest
