"""Fixtures of the day-two operation tests: the crash-test emulator, shared per module.

Each test gets `workspace` (tests/conftest.py): an empty directory whose commands are real
`python -m ltx_reconcile` child processes talking to `emulator` with a canary token. A
module that sets `APPLIED_SPECS` may use `ws` instead: its own copy of a workspace where
those specs were applied once per module, which costs a copy, not an apply, per test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ltx_reconcile.emulator.config import EmulatorConfig
from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.errors import ExitCode
from testing.workspace import CANARY_TOKEN, CliWorkspace, crash_test_config


@pytest.fixture(scope="module")
def emulator_config_for_module() -> EmulatorConfig:
    """Fast jobs in test mode, as the apply tests use."""
    return crash_test_config()


@pytest.fixture(scope="module")
def applied_template(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    module_emulator: RunningEmulator,
) -> CliWorkspace:
    """A workspace where the module's `APPLIED_SPECS` were applied once, to copy per test."""
    base = tmp_path_factory.mktemp("template")
    ws = CliWorkspace.create(base, api_url=module_emulator.base_url, token=CANARY_TOKEN)
    ws.specs(request.module.APPLIED_SPECS)
    run = ws.apply()
    assert run.returncode == ExitCode.OK, run.stderr
    return ws


def _link_or_copy(src: str, dst: str) -> None:
    # The state file is written by the tests: a copy. Everything else is only read or
    # replaced by rename: a hard link keeps the inode the state recorded for an output.
    if Path(src).name.startswith("state.db"):
        shutil.copy2(src, dst)
    else:
        os.link(src, dst)


@pytest.fixture
def ws(
    tmp_path: Path, emulator: RunningEmulator, applied_template: CliWorkspace
) -> Iterator[CliWorkspace]:
    """This test's own copy of the applied workspace, talking to the (reset) emulator."""
    copy = CliWorkspace.create(tmp_path, api_url=emulator.base_url, token=CANARY_TOKEN)
    shutil.copytree(
        applied_template.root, copy.root, copy_function=_link_or_copy, dirs_exist_ok=True
    )
    try:
        yield copy
    finally:
        copy.wait_all()
    assert copy.places_holding(CANARY_TOKEN) == [], "the API token leaked"
