"""Fixtures for the emulator's own tests: an emulator served over real HTTP, and a client.

Route tests use real HTTP too, not starlette's TestClient: the installed starlette warns
that TestClient on httpx is deprecated (it wants httpx2), and loopback is fast enough.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from ltx_reconcile.emulator.config import EmulatorConfig
from ltx_reconcile.emulator.server import RunningEmulator, serve_emulator
from testing.emulator import api_client, fast_config


@pytest.fixture(scope="module")
def emulator_config_for_module() -> EmulatorConfig:
    """The configuration of this folder's shared emulator (tests/conftest.py)."""
    return fast_config()


@pytest.fixture
def client(emulator: RunningEmulator) -> Iterator[httpx.Client]:
    """A plain httpx client on the emulator's API, with a valid token."""
    with api_client(emulator) as http:
        yield http


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[RunningEmulator]:
    """One emulator for a whole module of tests that only read or create independent jobs."""
    with serve_emulator(fast_config(starting_balance=10**9)) as running:
        yield running


@pytest.fixture
def shared_client(shared_emulator: RunningEmulator) -> Iterator[httpx.Client]:
    """A client on the module's shared emulator."""
    with api_client(shared_emulator) as http:
        yield http
