"""After every command, `state/state.db` alone is the state: no -wal, -shm or -journal.

GitOps users commit `state/state.db` after each apply (issue 7). A committed file whose
last transactions still sit in a `-wal` beside it is a state that lost them, so every
command, whether it succeeds or ends in an error exit, must leave the file checkpointed.
`plan` and the other read-only commands must not change a byte of it either. Every
command `ltx-reconcile --help` lists is run here (a test fails when a new one is not).
"""

from __future__ import annotations

import shutil
import signal
from collections.abc import Sequence

import click
import pytest

from ltx_reconcile.cli.main import cli
from ltx_reconcile.emulator.config import FaultConfig, FaultKind, FaultRule
from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.errors import ExitCode
from ltx_reconcile.state.lease import ProcessIdentity, acquire
from ltx_reconcile.state.store import StateStore
from testing.emulator import tiny_image
from testing.workspace import CliWorkspace
from tests.apply.specs import THREE_IMAGES, TWO_IMAGES

ELSEWHERE = ProcessIdentity(pid=4242, host="build-runner-7", user="ci", start_token=None)


def beside_the_state(ws: CliWorkspace) -> list[str]:
    """The files SQLite keeps next to the state while it is not checkpointed."""
    return sorted(path.name for path in ws.state_path.parent.glob("state.db-*"))


def images_in_the_file_alone(ws: CliWorkspace, tmp_path) -> dict[str, object]:
    """What a fresh clone would read: a copy of state.db without anything beside it."""
    alone = tmp_path / "alone" / "state.db"
    alone.parent.mkdir(exist_ok=True)
    shutil.copyfile(ws.state_path, alone)
    return dict(StateStore.read_snapshot(alone).images)


def test_read_only_commands_leave_the_state_file_byte_for_byte_as_it_was(workspace):
    """validate, plan and a refused force-unlock change no byte and leave no file."""
    workspace.specs(TWO_IMAGES)
    assert workspace.apply().returncode == ExitCode.OK
    workspace.specs(THREE_IMAGES)
    before = workspace.state_path.read_bytes()
    # Each form of plan is also checked in-process (tests/plan/test_cli_plan.py); here it
    # is the whole program, exiting as a CI job's step would.
    steps = [
        (("validate",), ExitCode.OK),
        (("plan", "--format", "markdown", "--detailed-exitcode"), ExitCode.CHANGES),
        (("plan", "--out", "plan.json"), ExitCode.OK),
        (("force-unlock", "no-such-lease"), ExitCode.STATE),
    ]
    for args, expected in steps:
        run = workspace.run(*args)
        assert run.returncode == expected, (args, run.stderr)
        assert beside_the_state(workspace) == [], args
        assert workspace.state_path.read_bytes() == before, args


def test_a_successful_apply_leaves_the_state_checkpointed(workspace, tmp_path):
    """Everything it recorded is in state.db itself: a copy of the file alone reads the same."""
    workspace.specs(TWO_IMAGES)
    assert workspace.apply().returncode == ExitCode.OK
    assert beside_the_state(workspace) == []
    images = workspace.images()
    assert sorted(images) == ["cat", "dog"]
    assert images_in_the_file_alone(workspace, tmp_path) == images


def test_applying_a_saved_plan_and_refusing_a_stale_one_both_leave_it_checkpointed(workspace):
    """`apply PLANFILE` (exit 0), then the same file again, now stale (exit 4)."""
    workspace.specs(TWO_IMAGES)
    assert workspace.run("plan", "--out", "plan.json").returncode == ExitCode.OK
    assert workspace.apply("plan.json").returncode == ExitCode.OK
    assert beside_the_state(workspace) == []
    stale = workspace.apply("plan.json")
    assert stale.returncode == ExitCode.STATE, stale.stderr
    assert beside_the_state(workspace) == []


def test_an_apply_ending_in_a_partial_failure_leaves_it_checkpointed(
    workspace, emulator: RunningEmulator, tmp_path
):
    """Exit 6: the generated images and the failed journal entry are in the file itself."""
    workspace.specs(TWO_IMAGES)
    emulator.set_faults(
        FaultConfig(rules=(FaultRule(FaultKind.FAIL_JOB, reply_ref_contains="ltxr:"),))
    )
    run = workspace.apply()
    assert run.returncode == ExitCode.PARTIAL, run.stderr
    assert beside_the_state(workspace) == []
    assert images_in_the_file_alone(workspace, tmp_path) == workspace.images()


def test_an_apply_the_api_refuses_leaves_it_checkpointed(workspace):
    """Exit 5: the lease was taken and released, and nothing stays beside the file."""
    workspace.specs(TWO_IMAGES)
    run = workspace.apply(env=workspace.environment(USEAPI_TOKEN="user:1-wrong-token"))
    assert run.returncode == ExitCode.API, run.stderr
    assert beside_the_state(workspace) == []


def test_a_locked_state_then_force_unlock_leave_it_checkpointed(workspace):
    """apply refused by another host's lease (exit 4), force-unlock, then apply (exit 0)."""
    workspace.specs(TWO_IMAGES)
    with StateStore.open(workspace.state_path) as store:
        lock_id = acquire(store, "apply", timeout_s=0, identity=ELSEWHERE).lock_id
    locked = workspace.apply("--lock-timeout", "0")
    assert locked.returncode == ExitCode.STATE, locked.stderr
    assert beside_the_state(workspace) == []
    unlock = workspace.run("force-unlock", lock_id)
    assert unlock.returncode == ExitCode.OK, unlock.stderr
    assert beside_the_state(workspace) == []
    assert workspace.apply().returncode == ExitCode.OK
    assert beside_the_state(workspace) == []


HOLD_FIRST_CREATE = FaultConfig(
    rules=(FaultRule(FaultKind.HOLD, endpoint="images/create", delay_s=2.0),)
)
"""The first create is accepted and charged, and its answer held open: apply is mid-flight."""


def test_an_interrupted_apply_leaves_it_checkpointed(workspace, emulator: RunningEmulator):
    """Exit 130 after Ctrl-C twice: the journaled job is in the file, nothing beside it."""
    workspace.specs(THREE_IMAGES)
    emulator.set_faults(HOLD_FIRST_CREATE)
    child = workspace.spawn_apply()
    emulator.wait_for_charges(1)
    child.send_signal(signal.SIGINT)
    child.send_signal(signal.SIGINT)
    assert child.wait() == ExitCode.INTERRUPTED
    assert beside_the_state(workspace) == []
    assert workspace.journal() != []


def test_the_first_command_after_a_killed_apply_checkpoints_what_it_left(
    workspace, emulator: RunningEmulator, tmp_path
):
    """kill -9 leaves a -wal; the next plan folds it in and reads the journal it held."""
    workspace.specs(THREE_IMAGES)
    emulator.set_faults(HOLD_FIRST_CREATE)
    child = workspace.spawn_apply()
    emulator.wait_for_charges(1)
    child.kill()
    assert "state.db-wal" in beside_the_state(workspace)
    plan = workspace.run("plan")
    assert plan.returncode == ExitCode.OK, plan.stderr
    assert beside_the_state(workspace) == []
    alone = tmp_path / "alone.db"
    shutil.copyfile(workspace.state_path, alone)
    assert StateStore.read_snapshot(alone).open_jobs != {}


Step = tuple[str, tuple[str, ...], tuple[int, ...]]
"""A command name, its arguments, and the exit statuses that mean it did its work."""

DAY_TWO_READERS: Sequence[Step] = (
    ("show", ("show",), (ExitCode.OK,)),
    ("state", ("state", "list"), (ExitCode.OK,)),
    ("state", ("state", "show", "cat"), (ExitCode.OK,)),
    ("state", ("state", "pull"), (ExitCode.OK,)),
    ("verify", ("verify",), (ExitCode.OK,)),
    ("gc", ("gc",), (ExitCode.OK,)),
    ("gallery", ("gallery",), (ExitCode.OK,)),
    ("schema", ("schema",), (ExitCode.OK,)),
)
DAY_TWO_WRITERS: Sequence[Step] = (
    ("verify", ("verify", "--repair"), (ExitCode.OK,)),
    ("gc", ("gc", "--pin", "{cat}", "--note", "keep"), (ExitCode.OK,)),
    ("gc", ("gc", "--unpin", "{cat}"), (ExitCode.OK,)),
    ("gc", ("gc", "--force"), (ExitCode.OK,)),
    ("import", ("import", "owl", "owl.png"), (ExitCode.OK,)),
    ("state", ("state", "mv", "dog", "hound"), (ExitCode.OK,)),
    ("state", ("state", "rm", "hound"), (ExitCode.OK,)),
)
COVERED: frozenset[str] = frozenset(
    {"validate", "plan", "apply", "force-unlock"}
    | {name for name, _, _ in (*DAY_TWO_READERS, *DAY_TWO_WRITERS)}
    | {"emulator"}  # serves the API; it never opens a workspace's state
)


def commands() -> set[str]:
    """Every command `ltx-reconcile --help` lists."""
    return set(cli.list_commands(click.Context(cli)))


def test_every_command_is_covered_by_these_tests():
    """A new command must be added here: the rule holds for every command."""
    assert commands() - COVERED == set()


@pytest.fixture
def day_two(workspace: CliWorkspace) -> CliWorkspace:
    """cat and dog applied, owl not yet, and a picture for owl to import."""
    workspace.specs(THREE_IMAGES)
    assert workspace.apply("--target", "cat", "--target", "dog").returncode == ExitCode.OK
    workspace.gen({"owl.png": tiny_image()})
    return workspace


def run_steps(ws: CliWorkspace, steps: Sequence[Step], *, read_only: bool) -> None:
    digest = ws.images()["cat"].digest or ""
    before = ws.state_path.read_bytes()
    for name, args, codes in steps:
        if name not in commands():
            continue  # not in this version
        argv = [arg.replace("{cat}", digest) for arg in args]
        run = ws.run(*argv)
        assert run.returncode in codes, (argv, run.stderr)
        assert beside_the_state(ws) == [], argv
        if read_only:
            assert ws.state_path.read_bytes() == before, argv


def test_day_two_commands_that_only_read_leave_the_state_as_it_was(day_two):
    """show, state list/show/pull, verify, gc, gallery and schema change no byte of it."""
    run_steps(day_two, DAY_TWO_READERS, read_only=True)


def test_day_two_commands_that_write_leave_it_checkpointed(day_two, tmp_path):
    """verify --repair, gc, import, state mv/rm and state push leave nothing beside it."""
    run_steps(day_two, DAY_TWO_WRITERS, read_only=False)
    if "state" in commands():
        pulled = day_two.run("state", "pull")
        assert pulled.returncode == ExitCode.OK, pulled.stderr
        (day_two.root / "state.json").write_text(pulled.stdout, encoding="utf-8")
        pushed = day_two.run("state", "push", "state.json")
        assert pushed.returncode == ExitCode.OK, pushed.stderr
        assert beside_the_state(day_two) == []
    assert images_in_the_file_alone(day_two, tmp_path) == day_two.images()
