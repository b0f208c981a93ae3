"""Fixtures of the S3 store's tests: a fresh bucket on the session's S3 emulator.

`s3_server` (tests/conftest.py) is moto's server on loopback. The CLI tests also get the
crash-test API emulator, shared per module, and `workspace` (tests/conftest.py): real
`python -m ltx_reconcile` child processes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ltx_reconcile.emulator.config import EmulatorConfig
from ltx_reconcile.s3store import S3ArtifactStore, S3Location
from testing.workspace import crash_test_config
from tests.s3.server import S3Server

PREFIX = "team/objects"


@pytest.fixture(scope="module")
def emulator_config_for_module() -> EmulatorConfig:
    """Fast jobs in test mode, as the apply tests use."""
    return crash_test_config()


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    """A new, empty bucket of this test's own."""
    return s3_server.new_bucket()


@pytest.fixture
def location(bucket: str) -> S3Location:
    """`s3://<bucket>/team/objects`."""
    return S3Location(bucket, PREFIX)


@pytest.fixture
def open_s3_store(s3_server: S3Server, location: S3Location):
    """Opens a store on the test's bucket with its cache at the given directory: one a runner."""

    def open_store(cache: Path) -> S3ArtifactStore:
        return S3ArtifactStore(location, cache, client=s3_server.client())

    return open_store
