"""Fixtures of the gallery tests: the crash-test emulator, shared per module.

Each test gets `workspace` (tests/conftest.py): an empty directory whose commands are real
`python -m ltx_reconcile` child processes talking to `emulator` with a canary token.
"""

from __future__ import annotations

import pytest

from ltx_reconcile.emulator.config import EmulatorConfig
from testing.workspace import crash_test_config


@pytest.fixture(scope="module")
def emulator_config_for_module() -> EmulatorConfig:
    """Fast jobs in test mode, as the apply tests use."""
    return crash_test_config()
