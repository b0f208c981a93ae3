"""Crash safety: an apply killed at any instant, or under any API fault, resumes and ends
with every image present and every image key paid for exactly once.

Each test drives real `apply` children against an emulator whose jobs take 100 to 260 ms,
kills them with SIGKILL (no cleanup of any kind runs) or SIGINT, and checks the outcome in
the emulator's ledger: the only record of what was paid that the client cannot fake.
"""

from __future__ import annotations

import random
import re
import signal

import pytest

from ltx_reconcile.emulator.config import FaultConfig, FaultKind, FaultRule
from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.errors import ExitCode
from testing.emulator import wait_until
from testing.workspace import STATE_BACKENDS, CliWorkspace, Finished

CAST = """
    defaults:
      aspect_ratio: "1:1"
    images:
      knight:
        prompt: a young knight holding a lantern in a misty forest
        seed: 1
      knight-night:
        prompt: the same knight keeping watch on a castle wall at night
        reference: knight
        seed: 2
      ranger:
        prompt: a ranger with a longbow, {mood} expression
        grid:
          seed: [11, 12]
          mood: [calm, fierce]
      tavern:
        prompt: a warm tavern interior, a bard by the fire
        seed: 7
      tavern-copy:
        prompt: a warm tavern interior, a bard by the fire
        seed: 7
"""
"""Eight images, seven keys: one uses another as its reference, two share their inputs."""
CAST_KEYS = 7

CREW = """
    images:
      ranger:
        prompt: a ranger with a longbow
        grid:
          seed: [11, 12, 13]
      tavern:
        prompt: a warm tavern interior, a bard by the fire
        seed: 7
      tavern-copy:
        prompt: a warm tavern interior, a bard by the fire
        seed: 7
"""
"""Five images, four keys (two share their inputs); quicker than CAST."""

OPEN = ("submitting", "submitted", "completed", "unknown")
"""Journal states of an entry not yet settled."""
ADOPTED = re.compile(r"found job \S+ by replyRef in (scheduler|assets)")


def assert_converged(
    workspace: CliWorkspace, emulator: RunningEmulator, *, images: int = 8, keys: int = CAST_KEYS
) -> None:
    """All `images` are present and verified, and each of their `keys` was paid for once."""
    assert len(workspace.images()) == images
    assert workspace.output_problems() == []
    assert len(workspace.image_keys()) == keys
    assert workspace.net_charges_by_key(emulator.ledger()) == dict.fromkeys(
        workspace.image_keys(), 1
    )
    assert [row for row in workspace.journal() if row.state in OPEN] == []
    assert workspace.recorded_spend() == workspace.net_spend_by_job(emulator.ledger())


def resume_until_done(workspace: CliWorkspace, attempts: int = 4) -> list[Finished]:
    """Apply again until one succeeds; an image reported unknown is resubmitted next time.

    Every run must exit 0 (done) or 6 (some images failed or unknown, a rerun resumes).
    """
    runs: list[Finished] = []
    flags: tuple[str, ...] = ()
    for _ in range(attempts):
        run = workspace.apply(*flags)
        runs.append(run)
        assert run.returncode in (ExitCode.OK, ExitCode.PARTIAL), run.stderr
        if run.returncode == ExitCode.OK:
            return runs
        if "unknown" in run.stdout:
            flags = ("--resubmit-unknown",)
    pytest.fail(f"still not done after {attempts} applies: {runs[-1].stdout}")


def kill_at_random_instant(
    workspace: CliWorkspace, emulator: RunningEmulator, rng: random.Random
) -> bool:
    """Spawn an apply and SIGKILL it after 0 to 3 more charges plus 0 to 200 ms; True
    when it was still running at that instant."""
    child = workspace.spawn_apply("--parallelism", "3")
    target = len(emulator.charges()) + rng.randint(0, 3)
    wait_until(
        lambda: len(emulator.charges()) >= target or child.process.poll() is not None,
        timeout_s=20,
    )
    was_running = child.running_after(rng.uniform(0.0, 0.2))
    child.kill()
    return was_running


@pytest.mark.slow
@pytest.mark.parametrize("seed", [7, 2024])
def test_apply_killed_at_seeded_random_instants_resumes_without_paying_twice(
    seed: int, workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """Three SIGKILLs at seeded instants, then resumes (resubmitting what was never sent,
    if asked): all images present, one charge per key."""
    rng = random.Random(seed)
    workspace.specs(CAST)

    kills = [kill_at_random_instant(workspace, emulator, rng) for _ in range(3)]
    resume_until_done(workspace)

    assert any(kills)
    assert_converged(workspace, emulator)


@pytest.mark.parametrize("state_backend", STATE_BACKENDS, indirect=True)
def test_apply_killed_between_create_accepted_and_answer_read_adopts_the_jobs(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """Killed while the API holds the create answers of paid jobs, a resume finds each job
    by its replyRef instead of paying again."""
    workspace.specs(CAST)
    emulator.set_faults(FaultConfig(hold_create_s=3.0))
    child = workspace.spawn_apply("--parallelism", "3")
    emulator.wait_for_charges(3)
    child.kill()
    assert [(r.state, r.job_id) for r in workspace.journal()] == [("submitting", None)] * 3

    emulator.set_faults(FaultConfig())
    resumed = workspace.apply()

    assert resumed.returncode == ExitCode.OK, resumed.stderr
    assert len(ADOPTED.findall(resumed.stderr)) == 3
    assert_converged(workspace, emulator)


def test_create_answer_held_past_the_request_timeout_is_adopted_not_sent_again(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """A create answer slower than the client's timeout is an unknown outcome: the job is
    looked up by replyRef and followed, never sent a second time."""
    workspace.specs(CAST)
    emulator.set_faults(
        FaultConfig(rules=(FaultRule(FaultKind.HOLD, endpoint="images/create", delay_s=2.0),))
    )

    run = workspace.apply()

    assert run.returncode == ExitCode.OK, run.stderr
    assert len(ADOPTED.findall(run.stderr)) == 1
    assert_converged(workspace, emulator)


def test_sigint_exits_130_after_paid_jobs_and_a_rerun_resumes_cleanly(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """One Ctrl-C stops new submissions, fetches what is paid for, exits 130; the rerun
    generates the rest with nothing left to recover."""
    workspace.specs(CAST)
    child = workspace.spawn_apply("--parallelism", "2")
    emulator.wait_for_charges(1)
    child.send_signal(signal.SIGINT)
    stopped = child.finished()

    assert stopped.returncode == ExitCode.INTERRUPTED, stopped.stderr
    assert "Stopping: no new submissions" in stopped.stderr
    paid = len(emulator.charges())
    assert paid < CAST_KEYS
    assert [row.state for row in workspace.journal()] == ["fetched"] * paid

    resumed = workspace.apply()

    assert resumed.returncode == ExitCode.OK, resumed.stderr
    assert "Settling" not in resumed.stderr
    assert_converged(workspace, emulator)


def _rules(*rules: FaultRule) -> FaultConfig:
    return FaultConfig(rules=rules)


FAULTS: dict[str, FaultConfig] = {
    # Two of the first three creates are refused (429): the kill lands while they wait.
    "429-storm": _rules(
        FaultRule(FaultKind.STATUS_BEFORE_ACCEPT, endpoint="images/create", status=429, times=2),
        FaultRule(FaultKind.STATUS_BEFORE_ACCEPT, endpoint="scheduler", status=429, times=4),
        FaultRule(FaultKind.STATUS_BEFORE_ACCEPT, endpoint="assets/status", status=429, times=3),
        FaultRule(
            FaultKind.STATUS_BEFORE_ACCEPT, endpoint="scheduler/available", status=429, times=2
        ),
    ),
    "5xx-before-accept": _rules(
        FaultRule(FaultKind.STATUS_BEFORE_ACCEPT, endpoint="images/create", status=503),
        FaultRule(FaultKind.STATUS_BEFORE_ACCEPT, endpoint="images/create", status=596),
        FaultRule(FaultKind.STATUS_BEFORE_ACCEPT, endpoint="scheduler", status=502, times=2),
        FaultRule(FaultKind.STATUS_BEFORE_ACCEPT, endpoint="assets/status", status=500, times=2),
    ),
    "5xx-after-accept": _rules(
        FaultRule(FaultKind.STATUS_AFTER_ACCEPT, status=500),
        FaultRule(FaultKind.STATUS_AFTER_ACCEPT, status=503, times=2),
    ),
    "reset-after-create": _rules(FaultRule(FaultKind.RESET_AFTER_ACCEPT, times=3)),
    "failed-jobs": _rules(FaultRule(FaultKind.FAIL_JOB, times=2)),
    "completed-without-url": _rules(FaultRule(FaultKind.LAG_WINDOW, delay_s=0.3, times=3)),
    "truncated-or-corrupt-downloads": _rules(
        FaultRule(FaultKind.TRUNCATE_DOWNLOAD, endpoint="storage", times=2),
        FaultRule(FaultKind.CORRUPT_DOWNLOAD, endpoint="storage", times=2),
    ),
    "expired-urls": _rules(FaultRule(FaultKind.EXPIRE_EARLY, endpoint="storage", times=3)),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(FAULTS))
def test_apply_under_an_api_fault_killed_and_resumed_pays_once_per_image(
    fault: str, workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """Under each scripted API fault, an apply SIGKILLed at a seeded instant after its first
    charge resumes to every image present and verified, each key paid for once."""
    rng = random.Random(fault)
    workspace.specs(CREW)
    emulator.set_faults(FAULTS[fault])
    child = workspace.spawn_apply("--parallelism", "3")
    emulator.wait_for_charges(1, timeout_s=20)
    child.running_after(rng.uniform(0.0, 0.3))
    child.kill()

    resume_until_done(workspace)

    assert_converged(workspace, emulator, images=5, keys=4)
