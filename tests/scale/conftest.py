"""Fixtures of the scale tests: one emulator per module, slow enough to kill a runner mid-way.

A flux job takes about 1.2 s here (8 s of emulated time at `TIME_SCALE`), so 200 images
keep four runners busy for seconds, not milliseconds: a SIGKILL after a runner's tenth
submission lands while it still has paid jobs in flight and most of the work is ahead,
even when a loaded machine (CI, three test processes on two cores) delays the kill by a
second or two (at 0.6 s per job, 40 at once, a 1.5 s delay lets more than half the
images be paid for before the kill).
"""

from __future__ import annotations

from typing import Final

import pytest

from ltx_reconcile.emulator.config import AccountConfig, EmulatorConfig
from testing.workspace import EMAIL, crash_test_config

TIME_SCALE: Final = 0.15
"""Real seconds per emulated second. URLs then live 540 s: far past the test's end."""
MAX_JOBS: Final = 40
"""The account's concurrent jobs: room for four runners of `--parallelism 10` each."""


@pytest.fixture(scope="module")
def emulator_config_for_module() -> EmulatorConfig:
    """A test-mode emulator whose account takes 40 jobs at once, each lasting ~0.6 s."""
    return crash_test_config(
        time_scale=TIME_SCALE, accounts=(AccountConfig(EMAIL, max_jobs=MAX_JOBS),)
    )
