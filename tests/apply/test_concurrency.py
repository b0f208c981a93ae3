"""Two applies on one workspace. On a state file the lease lets one write at a time, and a
dead holder's lease is taken over at once; on PostgreSQL (issue 8) applies share the state,
claiming keys, and only commands that need it alone wait for them."""

from __future__ import annotations

import re

import pytest

from ltx_reconcile.emulator.config import FaultConfig, FaultKind, FaultRule
from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.errors import ExitCode
from testing.emulator import wait_until
from testing.workspace import STATE_BACKENDS, CliWorkspace
from tests.apply.specs import SIX_IMAGES, THREE_IMAGES


@pytest.mark.parametrize("state_backend", ["sqlite"], indirect=True)
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


@pytest.mark.parametrize("state_backend", STATE_BACKENDS, indirect=True)
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


@pytest.mark.parametrize("state_backend", ["postgresql"], indirect=True)
def test_two_applies_on_a_postgresql_state_share_it_and_pay_once_per_image(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """Started together on one shared state, both applies run to the end: the images are
    divided between them by claims, each is paid for once, and a `gc --force` meanwhile
    is refused (exit 4) while they run, naming why."""
    workspace.specs(SIX_IMAGES)
    # Artifacts held back 3 s after their jobs complete: both applies are mid-way when gc runs.
    emulator.set_faults(FaultConfig(rules=(FaultRule(FaultKind.LAG_WINDOW, delay_s=3, times=6),)))
    first = workspace.spawn_apply("--parallelism", "2", "--json")
    second = workspace.spawn_apply("--parallelism", "2", "--json")
    emulator.wait_for_charges(4)

    gc = workspace.run("gc", "--force", "--lock-timeout", "0")

    assert first.process.poll() is None, "an apply finished before gc was tried"
    assert gc.returncode == ExitCode.STATE, gc.stderr
    assert "in use by running applies" in gc.stderr
    runs = [first.finished(), second.finished()]
    for run in runs:
        assert run.returncode == ExitCode.OK, run.stderr
    submitted = [run.stderr.count('"event": "JobSubmitted"') for run in runs]
    assert sorted(submitted) != [0, 6], f"one apply did all the work: {submitted}"
    assert sum(submitted) == 6
    for run, count in zip(runs, submitted, strict=True):
        others = 6 - count
        assert f"({others} more made by other applies of this state)" in run.stdout, run.stdout
    assert len(emulator.charges()) == 6
    assert workspace.output_problems() == []
    assert workspace.run("gc", "--force").returncode == ExitCode.OK
