"""How many jobs an apply runs at once: the flag, then LTX_PARALLELISM, then maxJobs."""

from __future__ import annotations

import pytest

from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.errors import ExitCode
from testing.workspace import CliWorkspace
from tests.apply.specs import ONE_IMAGE


@pytest.mark.parametrize(
    ("flags", "variable", "expected"),
    [
        ((), None, 20),
        ((), "3", 3),
        (("--parallelism", "2"), "3", 2),
    ],
)
def test_parallelism_comes_from_the_flag_then_the_environment_then_the_account(
    workspace: CliWorkspace, emulator: RunningEmulator, flags, variable, expected
) -> None:
    """The start line names the limit in force; the account's maxJobs (20) is the default."""
    workspace.specs(ONE_IMAGE)

    run = workspace.apply(*flags, env=workspace.environment(LTX_PARALLELISM=variable))

    assert run.returncode == ExitCode.OK, run.stderr
    assert f"with up to {expected} jobs at once" in run.stderr
