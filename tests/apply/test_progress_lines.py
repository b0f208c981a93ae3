"""The plain progress lines an apply writes to a log or a pipe (stderr is not a terminal)."""

from __future__ import annotations

from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.errors import ExitCode
from testing.workspace import CliWorkspace

LONG_NAME = "environment-concept-art-for-the-northern-harbour-at-dawn-variant-a"


def test_each_event_is_one_whole_line_however_long(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """A log line holds the image and the whole job id, unwrapped, so `grep JOB_ID` finds
    the line whatever the width of the log's reader."""
    workspace.specs(
        f"""
        images:
          {LONG_NAME}:
            prompt: a harbour at dawn
            seed: 1
        """
    )

    run = workspace.apply()

    assert run.returncode == ExitCode.OK, run.stderr
    (job,) = emulator.jobs()
    assert f"{LONG_NAME}: submitted (28 credits), job {job.job_id}" in run.stderr.splitlines()
    assert f"{LONG_NAME}: create done -> out/{LONG_NAME}.png" in run.stderr.splitlines()
