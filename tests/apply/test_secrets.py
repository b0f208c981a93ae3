"""The API token never leaves the process environment: not in the state, the store, the
outputs, saved plans, crash logs, nor anything any command prints."""

from __future__ import annotations

from ltx_reconcile.emulator.config import FaultConfig, FaultKind, FaultRule
from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.errors import ExitCode
from testing.workspace import CANARY_TOKEN, CliWorkspace
from tests.apply.specs import THREE_IMAGES


def test_the_token_is_in_no_file_and_no_output_of_plan_or_apply(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """A saved plan, a JSON plan and an apply of the saved plan with --json progress
    through API errors: the canary token shows up nowhere they write or print.

    (Every other test of this folder checks the same of its own children at teardown.)"""
    workspace.specs(THREE_IMAGES)
    emulator.set_faults(
        FaultConfig(
            rules=(
                FaultRule(FaultKind.FAIL_JOB, message="Generation failed: upstream timeout"),
                # The first create's answer comes at once, the second's is a 502.
                FaultRule(FaultKind.HOLD, delay_s=0.0),
                FaultRule(FaultKind.STATUS_AFTER_ACCEPT, status=502),
                FaultRule(FaultKind.TRUNCATE_DOWNLOAD, endpoint="storage"),
            )
        )
    )
    assert workspace.run("plan", "--out", "saved.plan").returncode == ExitCode.OK
    assert workspace.run("plan", "--json").returncode == ExitCode.OK
    applied = workspace.run(*workspace.apply_args("saved.plan", "--json", auto_approve=False))
    assert applied.returncode == ExitCode.PARTIAL, applied.stderr
    assert '"event": "ImageFailed"' in applied.stderr
    assert '"event": "JobAdopted"' in applied.stderr

    assert list(workspace.tmp.iterdir()) == [], "a child wrote a crash log"
    assert (workspace.root / "saved.plan").is_file()
    assert workspace.places_holding(CANARY_TOKEN) == []
