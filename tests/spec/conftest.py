"""Fixtures for spec tests: a workspace directory to build spec trees in."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty workspace, made the current directory so messages read `specs/a.yaml:...`."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
