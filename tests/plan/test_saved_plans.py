"""Saved plans: `plan --out F` then `apply F` applies exactly F, or refuses a stale F."""

from __future__ import annotations

import pytest

from ltx_reconcile.errors import ExitCode, StalePlanError
from tests.plan.project import Project, lines

HERO = """
    images:
      hero: {prompt: A knight in silver armour, seed: 3}
"""

HERO_AND_VILLAIN = """
    images:
      hero: {prompt: A knight in silver armour, seed: 3}
      villain: {prompt: A red dragon, seed: 4}
"""

HINT = "hint: run `ltx-reconcile plan --out FILE` again and review the new plan\n"


def refusal(project: Project, capsys: pytest.CaptureFixture[str]) -> str:
    """`apply plan.json`'s stderr, after checking that it exits 4 and changes nothing."""
    serial = project.snapshot().serial
    capsys.readouterr()
    assert project.run("apply", "plan.json") == ExitCode.STATE
    assert project.snapshot().serial == serial
    return capsys.readouterr().err


def test_a_fresh_saved_plan_is_applied_exactly(project, emulator, capsys):
    """Nothing moved since `plan --out`: apply runs the saved plan without asking."""
    project.specs(HERO_AND_VILLAIN)
    assert project.run("plan", "--out", "plan.json") == ExitCode.OK
    assert capsys.readouterr().out.endswith(
        lines(
            """
            Saved the plan to plan.json. Apply exactly it with:
                ltx-reconcile apply plan.json
            """
        )
    )
    charges = len(emulator.charges())
    assert project.run("apply", "plan.json") == ExitCode.OK
    assert sorted(project.snapshot().images) == ["hero", "villain"]
    assert len(emulator.charges()) == charges + 2


def test_a_saved_plan_is_refused_once_the_state_serial_moved(applied, capsys):
    """Another apply in between makes the reviewed diff wrong: exit 4, and the serials."""
    project = applied(HERO)
    project.specs(HERO_AND_VILLAIN)
    assert project.run("plan", "--out", "plan.json") == ExitCode.OK
    before = project.snapshot().serial
    project.apply()
    after = project.snapshot().serial
    assert after > before
    assert refusal(project, capsys) == (
        f"Error: the saved plan was made at state serial {before}; the state is now at {after}\n"
        + HINT
    )


def test_a_saved_plan_is_refused_once_the_specs_changed(applied, capsys):
    """Editing a spec file after `plan --out` makes the plan stale, even if it were harmless."""
    project = applied(HERO)
    project.specs(HERO_AND_VILLAIN)
    assert project.run("plan", "--out", "plan.json") == ExitCode.OK
    project.specs(HERO_AND_VILLAIN.replace("A red dragon", "A green dragon"))
    assert refusal(project, capsys) == (
        "Error: the specs (or a reference file they name) changed since the plan was made\n" + HINT
    )


def test_a_saved_plan_is_refused_once_a_reference_file_changed(project, capsys):
    """A reference file's bytes are part of the key, so new bytes make the plan stale."""
    project.write(
        {
            "specs/a.yaml": "images:\n  hero: {prompt: A knight, seed: 3, reference: ref.png}\n",
            "specs/ref.png": b"first bytes",
        }
    )
    with project.store():
        pass  # the state exists, at serial 0, before the plan is made
    assert project.run("plan", "--out", "plan.json") == ExitCode.OK
    project.write({"specs/ref.png": b"second bytes"})
    assert refusal(project, capsys) == (
        "Error: the specs (or a reference file they name) changed since the plan was made\n" + HINT
    )


def test_a_saved_plan_of_another_state_is_refused(project, api_settings, capsys):
    """Same specs, same serial, another lineage: the plan was made for a different state."""
    other = Project(project.root / "other", api_settings)
    for workspace in (project, other):
        workspace.specs(HERO)
        with workspace.store():
            pass
    assert other.run("plan", "--out", "plan.json") == ExitCode.OK
    (project.root / "plan.json").write_bytes((other.root / "plan.json").read_bytes())
    mine, theirs = project.snapshot().lineage, other.snapshot().lineage
    assert refusal(project, capsys) == (
        f"Error: the saved plan belongs to another state (lineage {theirs}; this state is "
        f"{mine})\n" + HINT
    )


def test_a_plan_saved_before_the_state_existed_is_refused_once_it_is_written(project, capsys):
    """A plan made against no state at all is stale as soon as an apply writes one."""
    project.specs(HERO)
    assert project.run("plan", "--out", "plan.json") == ExitCode.OK
    project.specs(HERO_AND_VILLAIN)
    project.apply()
    project.specs(HERO)
    assert refusal(project, capsys) == (
        "Error: the saved plan was made before the state existed; it has been written since\n"
        + HINT
    )


def test_the_library_refuses_a_stale_plan_with_stale_plan_error(applied):
    """Workspace.load_plan is the check apply uses; it raises rather than returns."""
    project = applied(HERO)
    project.specs(HERO_AND_VILLAIN)
    workspace = project.workspace()
    workspace.save_plan(workspace.plan(), project.root / "plan.json")
    assert workspace.load_plan(project.root / "plan.json").has_changes
    project.specs(HERO)
    with pytest.raises(StalePlanError) as caught:
        workspace.load_plan(project.root / "plan.json")
    assert str(caught.value) == (
        "the specs (or a reference file they name) changed since the plan was made"
    )
    assert caught.value.exit_code == ExitCode.STATE


def test_a_file_that_is_not_a_saved_plan_is_invalid_input(applied, capsys):
    """A plan document with a field of another format is refused, not guessed at: exit 3."""
    project = applied(HERO)
    project.write({"plan.json": '{"format_version": "2"}'})
    capsys.readouterr()
    assert project.run("apply", "plan.json") == ExitCode.INVALID_INPUT
    assert capsys.readouterr().err == lines(
        f"""
        Error: {project.root / "plan.json"} is not a saved plan of format version 1 (format_version: Input should be '1')
        hint: make a new one with `ltx-reconcile plan --out FILE`
        """
    )
