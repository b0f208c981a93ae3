"""Several applies on one PostgreSQL state (issue 8): what one runner decided about a key
this round, the others take as decided. The 4-runner kill test is tests/scale."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ltx_reconcile.emulator.config import FaultConfig, FaultKind, FaultRule
from ltx_reconcile.emulator.ledger import LedgerKind
from ltx_reconcile.emulator.server import RunningEmulator, serve_emulator
from ltx_reconcile.errors import ExitCode
from testing.workspace import CliWorkspace, crash_test_config
from tests.apply.specs import ONE_IMAGE

pytestmark = pytest.mark.parametrize("state_backend", ["postgresql"], indirect=True)


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    """Jobs of about 3 s: the second runner plans while the first one's job still runs."""
    with serve_emulator(crash_test_config(time_scale=0.4)) as running:
        yield running


def test_a_job_that_failed_for_one_runner_is_not_paid_for_again_by_another(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """Two runners on one image whose job fails: one pays (and is refunded), the other
    reports the same failure instead of paying again; the next apply, a new round, retries."""
    workspace.specs(ONE_IMAGE)
    emulator.set_faults(
        FaultConfig(
            rules=(FaultRule(FaultKind.FAIL_JOB, endpoint="images/create", message="moderation"),)
        )
    )
    runs = [workspace.spawn_apply(), workspace.spawn_apply()]
    finished = [run.finished() for run in runs]

    for run in finished:
        assert run.returncode == ExitCode.PARTIAL, run.stderr
    kinds = [entry.kind for entry in emulator.ledger()]
    assert kinds == [LedgerKind.CHARGE, LedgerKind.REFUND]
    assert any("another apply of this state tried it" in run.stdout for run in finished), [
        run.stdout for run in finished
    ]

    retried = workspace.apply()

    assert retried.returncode == ExitCode.OK, retried.stderr
    assert len(emulator.charges()) == 2
    assert workspace.output_problems() == []
