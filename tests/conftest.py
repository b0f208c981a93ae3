"""Shared pytest configuration: hypothesis profiles, and the per-module emulator."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from ltx_reconcile.emulator.config import EmulatorConfig
from ltx_reconcile.emulator.server import RunningEmulator, serve_emulator
from testing.workspace import CANARY_TOKEN, CliWorkspace
from tests.s3.server import S3Server, running_s3_server

settings.register_profile("dev", max_examples=50)
settings.register_profile("ci", max_examples=50, deadline=None, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="module")
def module_emulator(emulator_config_for_module: EmulatorConfig) -> Iterator[RunningEmulator]:
    """One emulator per module, configured by the folder's `emulator_config_for_module`."""
    with serve_emulator(emulator_config_for_module) as running:
        yield running


@pytest.fixture
def emulator(module_emulator: RunningEmulator) -> RunningEmulator:
    """The module's emulator over real HTTP on loopback, as if just started.

    Reset to its configuration (E43: jobs, assets, ledger, accounts, faults and seeded RNGs)
    before each test: a new server per test costs more than the test.
    """
    module_emulator.reset()
    return module_emulator


@pytest.fixture
def workspace(tmp_path: Path, emulator: RunningEmulator) -> Iterator[CliWorkspace]:
    """An empty workspace whose commands go to `emulator` with the canary token.

    Every command is a real `python -m ltx_reconcile` child process. Any child still running
    at the end is killed and reaped. Then, whatever the test did, no file and no captured
    output may hold the token.
    """
    ws = CliWorkspace.create(tmp_path, api_url=emulator.base_url, token=CANARY_TOKEN)
    try:
        yield ws
    finally:
        ws.wait_all()
    assert ws.places_holding(CANARY_TOKEN) == [], "the API token leaked"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3-compatible server (moto) on loopback, shared by the session's S3 tests.

    Skipped with the reason when it cannot start, and failed instead when CI is set.
    """
    yield from running_s3_server()
