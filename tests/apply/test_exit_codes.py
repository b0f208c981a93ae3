"""Apply's exit status says what happened: partial (6), refused before spending (3, 5)."""

from __future__ import annotations

from ltx_reconcile.emulator.config import FaultConfig, FaultKind, FaultRule
from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.errors import ExitCode
from testing.workspace import CliWorkspace
from tests.apply.specs import THREE_IMAGES


def test_an_apply_where_a_job_fails_exits_6_and_the_rerun_generates_only_that_image(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """A failed job is reported with the API's reason and not retried in the same run
    (exit 6); its charge is refunded, and the next apply generates just that image."""
    workspace.specs(THREE_IMAGES)
    emulator.set_faults(
        FaultConfig(
            rules=(
                FaultRule(
                    FaultKind.FAIL_JOB,
                    reply_ref_contains="ltxr:",
                    message="Prompt was rejected by content moderation",
                ),
            )
        )
    )

    partial = workspace.apply()

    assert partial.returncode == ExitCode.PARTIAL, partial.stderr
    assert "2 generated, 0 reused, 0 moved, 0 resumed, 0 deleted, 1 failed" in partial.stdout
    assert "Prompt was rejected by content moderation" in partial.stdout
    (failed,) = [row for row in workspace.journal() if row.state == "failed"]
    assert failed.image not in workspace.images()
    assert not (workspace.root / "out" / f"{failed.image}.png").exists()
    assert [e.kind.value for e in emulator.ledger()].count("charge") == 3
    assert emulator.net_spend() == 2 * 28

    rerun = workspace.apply()

    assert rerun.returncode == ExitCode.OK, rerun.stderr
    assert "Apply complete: 1 generated" in rerun.stdout
    assert sorted(workspace.images()) == ["cat", "dog", "owl"]
    assert workspace.output_problems() == []
    assert workspace.net_charges_by_key(emulator.ledger()) == dict.fromkeys(
        workspace.image_keys(), 1
    )


def test_apply_without_a_terminal_or_auto_approve_exits_3_and_submits_nothing(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """With stdin not a terminal, apply cannot ask for confirmation: it shows the plan,
    refuses (exit 3) and sends nothing."""
    workspace.specs(THREE_IMAGES)

    run = workspace.run(*workspace.apply_args(auto_approve=False))

    assert run.returncode == ExitCode.INVALID_INPUT
    assert "Plan: 3 to create" in run.stdout
    assert run.stderr.splitlines() == [
        "Error: apply needs confirmation, but standard input is not a terminal",
        "hint: review the plan above and rerun with --auto-approve, or apply a saved plan",
    ]
    assert emulator.ledger() == []
    assert emulator.jobs() == []
    assert workspace.journal() == []


def test_a_token_the_api_refuses_exits_5_and_submits_nothing(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """A wrong token is refused (401) before anything is sent: exit 5, no journal entry."""
    workspace.specs(THREE_IMAGES)
    wrong_token = "user:99999-wrong-token-1f2e3d"

    run = workspace.apply(env=workspace.environment(USEAPI_TOKEN=wrong_token))

    assert run.returncode == ExitCode.API
    assert run.stderr.splitlines() == [
        "Error: reading free capacity: the API refused the token (401 Unauthorized)",
        "hint: check USEAPI_TOKEN",
    ]
    assert wrong_token not in run.stdout + run.stderr
    assert emulator.ledger() == []
    assert workspace.journal() == []


def test_apply_without_a_token_exits_3_and_submits_nothing(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """No USEAPI_TOKEN at all is a usage error (exit 3) that names the variable."""
    workspace.specs(THREE_IMAGES)

    run = workspace.apply(env=workspace.environment(USEAPI_TOKEN=None))

    assert run.returncode == ExitCode.INVALID_INPUT
    assert "Error: USEAPI_TOKEN is not set" in run.stderr
    assert emulator.ledger() == []


def test_max_cost_stops_submitting_before_spend_would_pass_it_and_exits_7(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """Three 28-credit images under --max-cost 60: two are paid and stored, the third is
    not sent (exit 7, said in the summary); a later apply without the cap pays for it."""
    workspace.specs(THREE_IMAGES)

    capped = workspace.apply("--max-cost", "60", "--parallelism", "1")

    assert capped.returncode == ExitCode.OVER_BUDGET, capped.stderr
    assert "Spent 56 credits of a 60 limit." in capped.stdout
    assert "1 image was not submitted: the budget was reached." in capped.stdout
    assert emulator.net_spend() == 56
    assert len(workspace.images()) == 2
    assert workspace.output_problems() == []

    rest = workspace.apply()

    assert rest.returncode == ExitCode.OK, rest.stderr
    assert "Apply complete: 1 generated" in rest.stdout
    assert emulator.net_spend() == 84
