"""Fixtures for the state tests: a real state file in tmp_path, and record factories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ltx_reconcile.state.store import StateStore


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    """Where the state file goes; the directory does not exist yet."""
    return tmp_path / "state" / "state.db"


@pytest.fixture
def store(state_path: Path) -> Iterator[StateStore]:
    """A freshly created state, closed after the test."""
    opened = StateStore.open(state_path)
    yield opened
    opened.close()
