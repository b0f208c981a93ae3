"""`protect: true` through the CLI: the state remembers it, so even a delete is blocked.

Every command is a real `python -m ltx_reconcile` child process on a real state file and
store, against the crash-test emulator, whose ledger shows what was paid.
"""

from __future__ import annotations

import json

from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.errors import ExitCode
from testing.workspace import CliWorkspace

CAST = """
    images:
      hero:
        prompt: A knight in silver armour
        seed: 3
      villain:
        prompt: A red dragon
        seed: 4
        protect: true
"""

HERO_ONLY = """
    images:
      hero:
        prompt: A knight in silver armour
        seed: 3
"""

UNPROTECTED = CAST.replace("        protect: true\n", "")

BLOCKED_DELETE_REASON = (
    "protected (protect: true in the state), but it would be deleted: "
    "villain is no longer in the specs"
)


def applied(workspace: CliWorkspace, specs: str = CAST) -> None:
    """Apply `specs` from scratch; every image generated."""
    workspace.specs(specs)
    run = workspace.apply()
    assert run.returncode == ExitCode.OK, run.stdout + run.stderr


def test_apply_records_each_images_protect_setting_in_the_state(workspace: CliWorkspace) -> None:
    """The state row of every image says whether its spec protects it."""
    applied(workspace)

    assert {name: r.protect for name, r in workspace.images().items()} == {
        "hero": False,
        "villain": True,
    }


def test_deleting_a_protected_image_is_blocked_in_the_plan_and_refused_by_apply(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """Removing a protected image's spec plans a blocked change naming the image and the
    setting; apply refuses it (exit 3), pays nothing, and keeps the image and its file."""
    applied(workspace)
    output = workspace.root / "out" / "villain.png"
    serial, charges = workspace.snapshot().serial, len(emulator.charges())
    workspace.specs(HERO_ONLY)

    plan = workspace.run("plan", "--detailed-exitcode")

    assert plan.returncode == ExitCode.CHANGES, plan.stderr
    assert "    ! blocked  villain" in plan.stdout.splitlines()
    assert f"        {BLOCKED_DELETE_REASON}" in plan.stdout.splitlines()
    assert "Plan: 0 to create, 0 to replace, 0 to delete, 1 blocked." in plan.stdout
    document = json.loads(workspace.run("plan", "--json").stdout)
    (villain,) = [c for c in document["changes"] if c["image"] == "villain"]
    assert (villain["action"], villain["reason"], villain["after"]) == (
        "blocked",
        BLOCKED_DELETE_REASON,
        None,
    )

    refused = workspace.apply()

    assert refused.returncode == ExitCode.INVALID_INPUT
    assert refused.stderr.splitlines() == [
        "Error: apply refuses blocked changes: villain (protect: true, removed from the specs)",
        "hint: to delete a protected image, put its spec back with `protect: false`, apply, "
        "then remove it; to replace one, remove `protect: true` or revert the change",
    ]
    assert (workspace.snapshot().serial, len(emulator.charges())) == (serial, charges)
    assert sorted(workspace.images()) == ["hero", "villain"]
    assert output.is_file()


def test_removing_protect_first_then_the_spec_deletes_the_image_for_free(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """Dropping `protect: true` is a free change of its own (the state row is updated, no
    job); once applied, removing the spec deletes the image and its output file."""
    applied(workspace)
    charges = len(emulator.charges())
    serial = workspace.snapshot().serial
    workspace.specs(UNPROTECTED)

    plan = workspace.run("plan", "--detailed-exitcode")

    assert plan.returncode == ExitCode.CHANGES, plan.stderr
    assert plan.stdout.splitlines()[2:5] == [
        "      no-op    villain  flux",
        "        up to date; apply records protect: false (free)",
        "        ~ protect: True -> False",
    ]
    unprotect = workspace.apply()
    assert unprotect.returncode == ExitCode.OK, unprotect.stdout + unprotect.stderr
    assert workspace.images()["villain"].protect is False
    assert workspace.snapshot().serial == serial + 1
    assert workspace.run("plan", "--detailed-exitcode").returncode == ExitCode.OK

    workspace.specs(HERO_ONLY)
    deleted = workspace.apply()

    assert deleted.returncode == ExitCode.OK, deleted.stdout + deleted.stderr
    assert "0 generated, 0 reused, 0 moved, 0 resumed, 1 deleted" in deleted.stdout
    assert sorted(workspace.images()) == ["hero"]
    assert not (workspace.root / "out" / "villain.png").exists()
    assert len(emulator.charges()) == charges


def test_protecting_an_applied_image_is_recorded_and_then_blocks_its_delete(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """Adding `protect: true` to an up-to-date image records it at no cost; from then on a
    replace of it and the removal of its spec are both blocked."""
    applied(workspace, UNPROTECTED)
    charges = len(emulator.charges())
    workspace.specs(CAST)

    protect = workspace.apply()

    assert protect.returncode == ExitCode.OK, protect.stdout + protect.stderr
    assert workspace.images()["villain"].protect is True
    assert len(emulator.charges()) == charges

    workspace.specs(CAST.replace("A red dragon", "A green dragon"))
    replaced = workspace.apply()
    assert replaced.returncode == ExitCode.INVALID_INPUT
    assert replaced.stderr.splitlines()[0] == "Error: apply refuses blocked changes: villain"
    assert (
        "        protected (protect: true), but it would be replaced: generation inputs changed"
        in replaced.stdout.splitlines()
    )

    workspace.specs(HERO_ONLY)
    deleted = workspace.apply()
    assert deleted.returncode == ExitCode.INVALID_INPUT
    assert "villain (protect: true, removed from the specs)" in deleted.stderr
    assert len(emulator.charges()) == charges


def test_exclude_and_target_leave_a_blocked_delete_out_of_the_apply(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """--exclude of the protected image, or --target of the others, applies the rest."""
    applied(workspace)
    charges = len(emulator.charges())
    workspace.specs(HERO_ONLY + "      squire: {prompt: A squire carrying a shield, seed: 6}\n")

    excluded = workspace.apply("--exclude", "villain")

    assert excluded.returncode == ExitCode.OK, excluded.stdout + excluded.stderr
    assert "Apply complete: 1 generated" in excluded.stdout
    assert sorted(workspace.images()) == ["hero", "squire", "villain"]
    targeted = workspace.run("plan", "--target", "hero", "--target", "squire")
    assert (targeted.returncode, "blocked" in targeted.stdout) == (ExitCode.OK, False)
    assert "No changes." in targeted.stdout
    assert workspace.apply().returncode == ExitCode.INVALID_INPUT
    assert len(emulator.charges()) == charges + 1
