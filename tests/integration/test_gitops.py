"""GitOps without a server: the example workflow, linted, and its sequence run locally.

`examples/github-actions/.github/workflows/images.yml` plans on pull requests and applies
on pushes to main, committing `state/state.db` and `out/` back. Here the same commands run
with real git in a temporary repository against the emulator: a branch that adds an
image is planned (the state file stays byte for byte as it was), merged and applied, the
state and images are committed, and a fresh clone then has nothing to do and pays nothing.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.errors import ExitCode
from testing.workspace import CANARY_TOKEN, CliWorkspace, Finished
from tests.plan.project import lines

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "github-actions"
WORKFLOW = EXAMPLE / ".github" / "workflows" / "images.yml"

VALIDATE = ("validate",)
PLAN = ("plan", "--format", "markdown", "--detailed-exitcode")
REPAIR = ("verify", "--repair")
APPLY = ("apply", "--auto-approve")
COMMIT = ("add", "state/state.db", "out/")
"""The workflow's commands, which the local run below repeats (the first test checks)."""

MAP_IMAGE = """\

  world-map:
    prompt: An old parchment map of the islands, hand-inked coastlines and sea monsters
    aspect_ratio: "1:1"
    seed: 33
"""


def load_workflow(path: Path = WORKFLOW) -> dict[str, Any]:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def lint(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema against its vendored copy of the GitHub workflow schema (offline)."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.github-workflows",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_workflow_runs_the_commands_this_test_repeats():
    """The local sequence below is the workflow's: the same commands, word for word."""
    text = WORKFLOW.read_text(encoding="utf-8")
    for args in (VALIDATE, PLAN, REPAIR, APPLY):
        assert f"ltx-reconcile {' '.join(args)}" in text
    assert f"git {' '.join(COMMIT)}" in text


def test_the_workflow_passes_the_github_workflow_schema():
    """A workflow linter from PyPI accepts it (see pyproject's dev extra for which, and why)."""
    run = lint(WORKFLOW)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.strip() == "ok -- validation done"


def test_the_linter_rejects_a_broken_workflow(tmp_path):
    """The lint above can fail: a job without `runs-on` is refused."""
    broken = copy.deepcopy(load_workflow())
    del broken["jobs"]["apply"]["runs-on"]
    path = tmp_path / "images.yml"
    with path.open("w", encoding="utf-8") as handle:
        YAML(typ="safe").dump(broken, handle)
    assert lint(path).returncode == 1


def test_plans_need_no_secret_and_applies_run_one_at_a_time():
    """Pull requests plan without the token; pushes to main apply, serialised, never cancelled."""
    workflow = load_workflow()
    assert set(workflow["on"]) == {"pull_request", "push"}
    assert workflow["on"]["push"] == {"branches": ["main"]}
    plan, apply = workflow["jobs"]["plan"], workflow["jobs"]["apply"]
    assert plan["if"] == "github.event_name == 'pull_request'"
    assert "secrets." not in str(plan)
    assert apply["if"] == "github.event_name == 'push'"
    assert apply["concurrency"]["cancel-in-progress"] is False
    assert apply["permissions"] == {"contents": "write"}
    (apply_step,) = [step for step in apply["steps"] if step.get("id") == "apply"]
    assert apply_step["env"]["USEAPI_TOKEN"] == "${{ secrets.USEAPI_TOKEN }}"
    (commit_step,) = [step for step in apply["steps"] if "git add" in step.get("run", "")]
    assert commit_step["if"] == "always()"


class Repo:
    """A git working tree with its own identity and no user or system configuration."""

    def __init__(self, root: Path, home: Path) -> None:
        self.root = root
        self.env = {
            **os.environ,
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(home),
            "GIT_AUTHOR_NAME": "ci",
            "GIT_AUTHOR_EMAIL": "ci@example.com",
            "GIT_COMMITTER_NAME": "ci",
            "GIT_COMMITTER_EMAIL": "ci@example.com",
        }

    def git(self, *args: str) -> str:
        run = subprocess.run(
            ["git", *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert run.returncode == 0, f"git {' '.join(args)}: {run.stderr}"
        return run.stdout

    def status(self) -> list[str]:
        """`git status --porcelain`, ignored files left out."""
        return self.git("status", "--porcelain").splitlines()

    def commit_state(self, message: str) -> None:
        """What the workflow's commit step does."""
        self.git(*COMMIT)
        self.git("commit", "-q", "-m", message)
        assert self.status() == [], "a file was left out of the commit"


def has_repair(ws: CliWorkspace) -> bool:
    """Whether this ltx-reconcile has `verify --repair` (rebuild the store from out/)."""
    help_ = ws.run("verify", "--help")
    return help_.returncode == 0 and "--repair" in help_.stdout


def ok(run: Finished, *codes: int) -> Finished:
    assert run.returncode in (codes or (ExitCode.OK,)), run.stdout + run.stderr
    return run


BRANCH_PLAN = """
    **Plan: 1 to create, 0 to replace, 0 to delete. Estimated cost: 28 credits (flux 28).**

    | model | images | credits |
    |:--|--:|--:|
    | flux | 1 | 28 |
    | **total** | **1** | **28** |

    <details><summary>1 change</summary>

    - `+` **create** `world-map` (flux, 28 credits): new image
      - `prompt`: `"An old parchment map of the islands, hand-inked coastlines and sea monsters"`
      - `seed`: `33`

    </details>
"""


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_plan_on_a_branch_apply_on_main_and_a_fresh_clone_has_nothing_to_pay_for(
    workspace: CliWorkspace, emulator: RunningEmulator, tmp_path: Path
):
    """The workflow's sequence with real git: nothing is paid twice, and the committed
    state.db and out/ are all a fresh clone needs."""
    repo = Repo(workspace.root, tmp_path)
    shutil.copytree(EXAMPLE, workspace.root, dirs_exist_ok=True)
    repo.git("init", "-q", "-b", "main")
    repo.git("add", ".")
    repo.git("commit", "-q", "-m", "specs")

    # Push to main: apply, commit the state and the images.
    ok(workspace.apply())
    repo.commit_state("images: first apply")
    assert len(emulator.charges()) == 2

    # A pull request that adds an image: validate and plan, and the state is untouched.
    repo.git("switch", "-q", "-c", "add-map")
    with (workspace.root / "specs" / "images.yaml").open("a", encoding="utf-8") as spec:
        spec.write(MAP_IMAGE)
    repo.git("commit", "-q", "-am", "add the world map")
    state_before = workspace.state_path.read_bytes()
    ok(workspace.run(*VALIDATE))
    plan = ok(workspace.run(*PLAN), ExitCode.CHANGES)
    assert plan.stdout == lines(BRANCH_PLAN)
    assert workspace.state_path.read_bytes() == state_before
    assert repo.status() == []
    assert len(emulator.charges()) == 2

    # Merge, then the push to main applies just the new image.
    repo.git("switch", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "merge add-map", "add-map")
    applied = ok(workspace.apply())
    assert "Apply complete: 1 generated" in applied.stdout
    repo.commit_state("images: apply add-map")
    assert len(emulator.charges()) == 3
    tracked = repo.git("ls-files").splitlines()
    assert "state/state.db" in tracked
    assert {"out/title-screen.png", "out/loading-screen.png", "out/world-map.png"} <= set(tracked)
    assert not [path for path in tracked if path.startswith(("state/objects/", "state/cache/"))]

    # A fresh clone, as the next CI runner gets it: no object store, only what git holds.
    clone = CliWorkspace.create(tmp_path / "runner", api_url=workspace.api_url, token=CANARY_TOKEN)
    Repo(clone.root.parent, tmp_path).git("clone", "-q", str(workspace.root), clone.root.name)
    assert not (clone.root / "state" / "objects").exists()
    assert clone.images() == workspace.images()

    if has_repair(clone):
        committed = clone.snapshot()
        ok(clone.run(*REPAIR))
        assert ok(clone.run("plan")).stdout == "No changes. 3 images are up to date.\n"
        ok(clone.apply())
        assert len(emulator.charges()) == 3, "the fresh clone paid again"
        after = clone.snapshot()
        assert (after.lineage, after.serial) == (committed.lineage, committed.serial)
        # The same state, though not always the same bytes: `verify --repair` takes the
        # lease, and writing the lease row rewrites a page of the file.
        assert Repo(clone.root, tmp_path).status() in ([], [" M state/state.db"])
    else:
        # Without `verify --repair` the store must be regenerated: plan says so, costed.
        plan = ok(clone.run("plan"))
        assert (
            "Plan: 0 to create, 0 to replace, 3 to refetch, 0 to delete. "
            "Estimated cost: 84 credits (flux 84)." in plan.stdout.splitlines()
        )
    clone.wait_all()
    assert clone.places_holding(CANARY_TOKEN) == []
