"""Fixtures for plan tests: one emulator for the session, and a project per test."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.settings import Settings
from testing.emulator import TEST_TOKEN, running_emulator
from tests.plan.project import EDITED, ORIGINAL, Project

POLL_INTERVAL_S = "0.005"


@pytest.fixture(scope="session")
def emulator() -> Iterator[RunningEmulator]:
    """A fast emulator (jobs take milliseconds) shared by every plan test.

    URLs must stay valid longer than the client's 30 s expiry margin, or every download
    looks expired: fast_config's time_scale of 0.001 would make them last 3.6 s.
    """
    with running_emulator(url_ttl_s=3600.0 / 0.001, starting_balance=10**9) as running:
        yield running


@pytest.fixture(scope="session")
def environment(emulator: RunningEmulator) -> dict[str, str]:
    """The environment that points the CLI at the emulator, with a fast poll."""
    return {
        "USEAPI_TOKEN": TEST_TOKEN,
        "LTX_API_URL": emulator.base_url,
        "LTX_POLL_INTERVAL_S": POLL_INTERVAL_S,
    }


@pytest.fixture(scope="session")
def api_settings(environment: dict[str, str]) -> Settings:
    """The library's settings for the same environment."""
    return Settings.from_env(environment)


@pytest.fixture
def project(
    tmp_path: Path,
    environment: dict[str, str],
    api_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> Project:
    """An empty workspace at tmp_path; the library and the CLI both talk to the emulator."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LTX_EMAIL", raising=False)
    return Project(tmp_path, api_settings)


@pytest.fixture(scope="session")
def applied_states(
    tmp_path_factory: pytest.TempPathFactory, api_settings: Settings
) -> Callable[[str], Path]:
    """The state/ folder (state, objects) one real apply of some specs leaves; one per specs."""
    made: dict[str, Path] = {}

    def state_of(specs: str) -> Path:
        if specs not in made:
            template = Project(tmp_path_factory.mktemp("applied"), api_settings)
            template.specs(specs)
            summary = template.apply()
            assert (summary.failed, summary.unknown, summary.not_started) == ({}, {}, [])
            made[specs] = template.paths.state.parent
        return made[specs]

    return state_of


@pytest.fixture
def applied(project: Project, applied_states: Callable[[str], Path]) -> Callable[[str], Project]:
    """Make `project` look as if `specs` (specs/a.yaml) had just been applied.

    The state folder is a copy of one real apply's, made once per session, so each test
    gets its own state file without paying for an apply of its own.
    """

    def apply(specs: str) -> Project:
        shutil.copytree(applied_states(specs), project.paths.state.parent)
        project.specs(specs)
        return project

    return apply


@pytest.fixture
def edited(applied: Callable[[str], Project]) -> Project:
    """ORIGINAL applied, then edited: hero replaced, castle deleted, squire created."""
    project = applied(ORIGINAL)
    project.specs(EDITED)
    return project
