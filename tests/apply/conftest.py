"""Fixtures of the apply tests: a fast emulator in test mode, and a workspace run by the CLI.

Every command here is a real `python -m ltx_reconcile ... apply` child process talking real
HTTP to an emulator served on loopback from this process, so the tests read the emulator's
ledger (what was paid) and inject its faults directly. The token is a canary: it is given
to the children in their environment only, and must never show up anywhere they write.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ltx_reconcile.emulator.server import RunningEmulator, serve_emulator
from testing.workspace import crash_test_config


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    """A fresh emulator per test (`crash_test_config()`), over real HTTP on 127.0.0.1."""
    with serve_emulator(crash_test_config()) as running:
        yield running
