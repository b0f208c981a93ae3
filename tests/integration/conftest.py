"""Fixtures of the integration tests: the crash-test emulator, shared per module.

These tests drive the product the way a user or a CI job does: real `python -m
ltx_reconcile` child processes (`workspace`, tests/conftest.py), real git, the shipped
examples, talking to `emulator` over real HTTP with a canary token.
"""

from __future__ import annotations

import pytest

from ltx_reconcile.emulator.config import EmulatorConfig
from testing.workspace import crash_test_config


@pytest.fixture(scope="module")
def emulator_config_for_module() -> EmulatorConfig:
    """Fast jobs in test mode, as the apply tests use."""
    return crash_test_config()
