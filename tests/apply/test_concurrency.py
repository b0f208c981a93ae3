"""Two applies on one workspace: the lease lets one write at a time, and a dead holder's
lease is taken over at once. Every test runs on the state file and on a PostgreSQL state."""

from __future__ import annotations

import re

import pytest

from ltx_reconcile.emulator.config import FaultConfig, FaultKind, FaultRule
from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.errors import ExitCode
from testing.emulator import wait_until
from testing.workspace import STATE_BACKENDS, CliWorkspace
from tests.apply.specs import THREE_IMAGES

pytestmark = pytest.mark.parametrize("state_backend", STATE_BACKENDS, indirect=True)


def test_a_second_apply_waits_with_lock_timeout_or_exits_4_naming_the_holder(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """While one apply runs, another with no --lock-timeout exits 4 naming the holder, and
    one with --lock-timeout waits for it, then finds nothing left to do."""
    workspace.specs(THREE_IMAGES)
    # Each artifact is held back 6 s after its job completes: the holder keeps the lease
    # while the refused apply starts, plans and asks, even on a heavily loaded machine.
    emulator.set_faults(FaultConfig(rules=(FaultRule(FaultKind.LAG_WINDOW, delay_s=6, times=3),)))
    holder = workspace.spawn_apply()
    emulator.wait_for_charges(3)
    waiter = workspace.spawn_apply("--lock-timeout", "30")

    refused = workspace.apply()

    assert holder.process.poll() is None, "the holder finished before the refusal was tested"
    assert refused.returncode == ExitCode.STATE
    assert re.search(
        rf"Error: state {re.escape(workspace.state_location)} is locked by \S+@\S+ "
        rf"\(pid {holder.pid}, apply, since ",
        refused.stderr,
    ), refused.stderr
    assert "ltx-reconcile force-unlock" in refused.stderr
    held = holder.finished()
    waited = waiter.finished()
    assert held.returncode == ExitCode.OK, held.stderr
    assert waited.returncode == ExitCode.OK, waited.stderr
    assert waited.stdout.splitlines() == ["No changes. 3 images are up to date."]
    assert len(emulator.charges()) == 3
    assert workspace.integrity_check() == "ok"
    assert workspace.output_problems() == []


def test_the_lease_of_a_sigkilled_apply_is_taken_over_at_once(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """An apply SIGKILLed while holding the lease leaves it behind; the next apply on the
    same host sees its process is gone and takes it over without waiting."""
    workspace.specs(THREE_IMAGES)
    killed = workspace.spawn_apply()
    wait_until(lambda: [bool(row.job_id) for row in workspace.journal()] == [True] * 3, 15)
    killed.kill()

    resumed = workspace.apply("--lock-timeout", "0")

    assert resumed.returncode == ExitCode.OK, resumed.stderr
    assert "locked" not in resumed.stderr
    assert len(emulator.charges()) == 3
    assert workspace.integrity_check() == "ok"
    assert workspace.output_problems() == []
