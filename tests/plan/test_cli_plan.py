"""`ltx-reconcile plan` in-process: exit codes, invalid specs, and a state it never writes."""

from __future__ import annotations

import pytest

from ltx_reconcile.errors import ExitCode
from tests.plan.project import lines

HEROES = """
    images:
      hero: {prompt: A knight in silver armour, seed: 3}
      villain: {prompt: A red dragon, seed: 4}
"""

TYPO = """
    images:
      hero:
        prompt: A knight
        sede: 3
"""

TYPO_MESSAGE = """
    Error: 1 error in spec files:
    specs/a.yaml:4:5: images.hero.sede: unknown key (did you mean "seed"?)
    hint: fix the files named above; nothing was written
"""


def test_detailed_exitcode_is_2_with_changes_and_0_without(project, capsys):
    """Terraform's meaning: 2 says apply has work to do, 0 that it has none."""
    project.specs(HEROES)
    assert project.run("plan", "--detailed-exitcode") == ExitCode.CHANGES
    assert project.run("plan") == ExitCode.OK
    project.apply()
    assert project.run("plan", "--detailed-exitcode") == ExitCode.OK
    project.specs(HEROES.replace("A red dragon", "A green dragon"))
    assert project.run("plan", "--detailed-exitcode") == ExitCode.CHANGES


@pytest.mark.parametrize(
    "args",
    [
        ("plan",),
        ("plan", "--detailed-exitcode"),
        ("plan", "--json"),
        ("plan", "--format", "markdown"),
        ("plan", "--out", "plan.json"),
        ("validate",),
    ],
)
def test_an_invalid_spec_exits_3_and_writes_nothing(project, capsys, args):
    """No state, no cache, no saved plan, no out/: only the diagnostics, on stderr."""
    project.specs(TYPO)
    assert project.run(*args) == ExitCode.INVALID_INPUT
    assert capsys.readouterr() == ("", lines(TYPO_MESSAGE))
    assert project.files() == ["specs/a.yaml"]


def test_apply_with_an_invalid_spec_exits_3_and_writes_nothing(project, capsys):
    """apply refuses invalid specs before touching the state, like plan."""
    project.specs(TYPO)
    assert project.run("apply", "--auto-approve") == ExitCode.INVALID_INPUT
    assert capsys.readouterr().err == lines(TYPO_MESSAGE)
    assert project.files() == ["specs/a.yaml"]


def test_plan_of_a_new_project_creates_no_state_and_no_outputs(project):
    """The spec parse cache is the only thing a plan may write."""
    project.specs(HEROES)
    assert project.run("plan", "--replace", "hero") == ExitCode.OK
    assert [name for name in project.files() if not name.startswith("state/cache/")] == [
        "specs/a.yaml"
    ]


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--replace", "hero"),
        ("--target", "villain"),
        ("--exclude", "hero"),
        ("--json",),
        ("--format", "markdown"),
        ("--out", "plan.json"),
        ("--detailed-exitcode",),
    ],
)
def test_plan_never_changes_the_state(applied, args):
    """Not the serial, not a byte of the file, and no -wal or -shm left beside it."""
    project = applied(HEROES)
    project.specs(HEROES.replace("A red dragon", "A green dragon"))
    state = project.paths.state
    before = (project.snapshot().serial, state.read_bytes(), state.stat().st_mtime_ns)
    assert project.run("plan", *args) in (ExitCode.OK, ExitCode.CHANGES)
    assert (project.snapshot().serial, state.read_bytes(), state.stat().st_mtime_ns) == before
    assert sorted(path.name for path in state.parent.glob("state.db*")) == ["state.db"]
