"""`ltx-reconcile show [PLANFILE]`: a saved plan as `plan` printed it, or the state's summary."""

from __future__ import annotations

import json

from ltx_reconcile.errors import ExitCode
from testing.workspace import CliWorkspace
from tests.apply.specs import TWO_IMAGES

# Against TWO_IMAGES applied: dog's prompt changes (replace), cat goes (delete), and a new
# image without a seed comes (create, seed derived from its name).
CHANGED = """
    images:
      dog:
        prompt: a dog in the rain
        seed: 2
      fox:
        prompt: a fox in the woods
"""


def ok(ws: CliWorkspace, *args: str) -> str:
    """Run a command that must succeed; its stdout."""
    run = ws.run(*args)
    assert run.returncode == ExitCode.OK, run.stderr
    assert run.stderr == ""
    return run.stdout


def test_show_prints_a_saved_plan_exactly_as_plan_printed_it(workspace: CliWorkspace) -> None:
    """For every format, show PLANFILE prints what plan printed for the plan it saved."""
    workspace.specs(TWO_IMAGES)
    assert workspace.apply().returncode == ExitCode.OK
    workspace.specs(CHANGED)

    for flags in ((), ("--json",), ("--format", "markdown")):
        name = f"plan{len(flags)}.json"
        planned = ok(workspace, "plan", *flags, "--out", name)
        shown = ok(workspace, "show", name, *flags)
        if not flags:
            saved_lines = f"\nSaved the plan to {name}. Apply exactly it with:\n    ltx-reconcile apply {name}\n"
            assert planned == shown + saved_lines
            assert "  -/+ replace  dog  flux  28 credits" in shown.splitlines()
        else:
            assert planned == shown


def test_show_of_a_stale_plan_shows_it_and_says_apply_would_refuse_it(
    workspace: CliWorkspace,
) -> None:
    """A plan whose specs moved on is still shown, with a note on stderr, exit 0."""
    workspace.specs(TWO_IMAGES)
    planned = ok(workspace, "plan", "--json", "--out", "plan.json")
    workspace.specs(CHANGED)

    run = workspace.run("show", "--json", "plan.json")

    assert run.returncode == ExitCode.OK
    assert run.stdout == planned
    assert run.stderr.splitlines() == [
        "Note: plan.json is stale (the specs (or a reference file they name) changed since "
        "the plan was made); `apply plan.json` would refuse it."
    ]
    assert not workspace.state_path.exists()


def test_show_without_a_planfile_sums_up_the_state(workspace: CliWorkspace) -> None:
    """Images by status, credits spent, lineage and serial: read-only, and in JSON too."""
    workspace.specs(TWO_IMAGES)
    assert workspace.apply().returncode == ExitCode.OK
    snapshot = workspace.snapshot()
    spent = sum(workspace.recorded_spend().values())

    assert ok(workspace, "show").splitlines() == [
        f"State state/state.db: lineage {snapshot.lineage}, serial {snapshot.serial}, schema 2.",
        "2 images: 2 present.",
        f"Spent {spent:g} credits since the state was created (refunds deducted).",
    ]
    assert json.loads(ok(workspace, "show", "--json")) == {
        "state": str(workspace.state_path),
        "lineage": snapshot.lineage,
        "serial": snapshot.serial,
        "schema_version": 2,
        "images": {"total": 2, "present": 2},
        "spent": spent,
    }
    assert workspace.snapshot().serial == snapshot.serial


def test_show_without_a_state_says_so_and_creates_none(workspace: CliWorkspace) -> None:
    """No state yet: one line that says so; nothing is written."""
    assert ok(workspace, "show").splitlines() == [
        "No state at state/state.db yet; `ltx-reconcile apply` creates it."
    ]
    assert not (workspace.root / "state").exists()


def test_show_refuses_what_is_not_a_saved_plan(workspace: CliWorkspace) -> None:
    """A file that is no plan, a missing one, or markdown without a plan: exit 3."""
    workspace.specs(TWO_IMAGES)
    (workspace.root / "notes.json").write_text('{"hello": 1}')

    for args in (
        ("show", "notes.json"),
        ("show", "missing.json"),
        ("show", "--format", "markdown"),
    ):
        run = workspace.run(*args)
        assert run.returncode == ExitCode.INVALID_INPUT, (args, run.stderr)
    assert workspace.run("show", "missing.json").stderr.startswith(
        "Error: cannot read the saved plan"
    )
