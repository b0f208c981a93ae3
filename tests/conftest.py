"""Shared pytest configuration: hypothesis profiles, the per-module emulator, the state
backend a workspace test runs on, and the throwaway servers (PostgreSQL, S3)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from ltx_reconcile.artifacts import ArtifactStore
from ltx_reconcile.emulator.config import EmulatorConfig
from ltx_reconcile.emulator.server import RunningEmulator, serve_emulator
from testing.postgres import PostgresServer, PostgresUnavailable
from testing.workspace import CANARY_TOKEN, CliWorkspace
from tests.s3.bucket import BucketView, use_a_bucket
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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server per test process; each test takes its own schema.

    Skipped, saying why, when no server can be started here; under CI that is a failure.
    """
    try:
        import psycopg  # noqa: F401 (the `postgres` extra must be installed)

        server = PostgresServer.start()
    except (ImportError, PostgresUnavailable) as err:
        reason = f"no PostgreSQL server for the state tests: {err}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must not skip them)")
        pytest.skip(reason)
    yield server
    server.stop()


@pytest.fixture
def state_backend(request: pytest.FixtureRequest) -> tuple[str, str] | None:
    """Where `workspace` keeps its state: None for the file (the default), or a PostgreSQL
    URL and a schema of this test's own, when the test is parametrized indirectly with
    `testing.workspace.STATE_BACKENDS`."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.url, f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def workspace(
    tmp_path: Path, emulator: RunningEmulator, state_backend: tuple[str, str] | None
) -> Iterator[CliWorkspace]:
    """An empty workspace whose commands go to `emulator` with the canary token.

    Every command is a real `python -m ltx_reconcile` child process. Any child still running
    at the end is killed and reaped. Then, whatever the test did, no file and no captured
    output may hold the token. Its state is the file, or PostgreSQL (`state_backend`).
    """
    url, schema = state_backend or (None, None)
    ws = CliWorkspace.create(
        tmp_path,
        api_url=emulator.base_url,
        token=CANARY_TOKEN,
        state_url=url,
        state_schema=schema,
    )
    try:
        yield ws
    finally:
        ws.wait_all()
    assert ws.places_holding(CANARY_TOKEN) == [], "the API token leaked"
    if ws.is_postgres:
        assert not ws.state_path.exists(), "a command used the state file, not PostgreSQL"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3-compatible server (moto) on loopback, shared by the session's S3 tests.

    Skipped with the reason when it cannot start, and failed instead when CI is set.
    """
    yield from running_s3_server()


@pytest.fixture
def artifact_store(
    request: pytest.FixtureRequest, workspace: CliWorkspace, tmp_path: Path
) -> ArtifactStore | BucketView:
    """The artifact store `workspace`'s commands use, to look into: its objects directory,
    or, parametrized indirectly with "s3" (`tests.s3.bucket.STORE_BACKENDS`), a fresh bucket
    on the S3 emulator that every command of the workspace uses from then on. Request it
    before any fixture that runs a command."""
    if getattr(request, "param", "local") == "local":
        return workspace.store
    return use_a_bucket(workspace, request.getfixturevalue("s3_server"), tmp_path / "bucket")
