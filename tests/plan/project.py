"""A workspace directory for plan tests: real specs, a real state, real applies.

`Project` drives the library the way the CLI does (`Workspace`), or the CLI itself
(`run`), against the session's emulator; every file it touches is under tmp_path.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ltx_reconcile.apply_result import ApplyOptions, ApplySummary
from ltx_reconcile.artifacts import ArtifactStore
from ltx_reconcile.cli.main import main
from ltx_reconcile.plan.model import Change, Plan
from ltx_reconcile.plan.planner import PlanOptions
from ltx_reconcile.settings import Settings
from ltx_reconcile.state.journal import Journal
from ltx_reconcile.state.records import StateSnapshot
from ltx_reconcile.state.store import StateStore
from ltx_reconcile.workspace import Workspace, WorkspacePaths
from testing.tree import Tree, gen

__all__ = ["EDITED", "ORIGINAL", "Project", "lines"]

ORIGINAL = """
    images:
      hero: {prompt: A knight in silver armour, seed: 3}
      villain: {prompt: A red dragon, seed: 4, protect: true}
      castle: {prompt: A castle above the clouds, seed: 5, model: nano-banana}
"""

EDITED = """
    images:
      hero: {prompt: A knight in golden armour, seed: 3, aspect_ratio: "1:1"}
      villain: {prompt: A red dragon, seed: 4, protect: true}
      squire: {prompt: A squire carrying a shield, seed: 6}
"""


class Project:
    """One workspace under `root`: write specs, plan, apply, look at the state."""

    def __init__(self, root: Path, settings: Settings) -> None:
        self.root = root
        self.settings = settings
        self.paths = WorkspacePaths.under(root)

    def write(self, tree: Tree) -> None:
        """Create or overwrite files below the root (see `testing.tree.gen`)."""
        gen(self.root, tree)

    def specs(self, text: str, name: str = "a.yaml") -> None:
        """Replace specs/<name> with `text` (dedented)."""
        self.write({f"specs/{name}": text})

    def workspace(self) -> Workspace:
        """The library's view of this directory."""
        return Workspace(self.paths, self.settings)

    def plan(self, **options: tuple[str, ...]) -> Plan:
        """Plan the specs against the state, as `ltx-reconcile plan` does."""
        return self.workspace().plan(PlanOptions(**options))

    def changes(self, **options: tuple[str, ...]) -> dict[str, Change]:
        """The plan's changes by image address."""
        return {change.image: change for change in self.plan(**options).changes}

    def apply(self) -> ApplySummary:
        """Plan and apply under the lease, as `ltx-reconcile apply --auto-approve` does."""
        with self.workspace().session(lock_timeout_s=0, operation="apply") as session:
            return session.apply(session.plan(), ApplyOptions(), handle_signals=False)

    def run(self, *args: str) -> int:
        """Run the CLI in-process in this directory; the exit status."""
        return main(["-C", str(self.root), *args])

    def snapshot(self) -> StateSnapshot:
        """The state as a plan would read it."""
        return StateStore.read_snapshot(self.paths.state)

    @contextmanager
    def store(self) -> Iterator[StateStore]:
        """The state opened for writing, closed afterwards."""
        with StateStore.open(self.paths.state) as store:
            yield store

    def journal_intent(self, image: str, key: str) -> int:
        """Record a paid create for `key` as sent, its answer never heard; the entry id."""
        with self.store() as store:
            request = {"prompt": f"the request of {image}", "model": "flux"}
            entry = Journal(store).record_intent(key, image, "user@example.com", request, "0" * 64)
            return entry.id

    def artifacts(self) -> ArtifactStore:
        """The project's content-addressed object store."""
        return ArtifactStore(self.paths.objects)

    def files(self) -> list[str]:
        """Every file below the root, as sorted POSIX paths."""
        return sorted(
            p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()
        )


def lines(text: str) -> str:
    """`text` dedented and without its first newline, for whole-output comparisons."""
    return textwrap.dedent(text).lstrip("\n")
