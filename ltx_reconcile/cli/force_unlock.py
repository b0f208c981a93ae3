"""`ltx-reconcile force-unlock`: remove a lease whose holder is gone without releasing it."""

from __future__ import annotations

from pathlib import Path

import click

from ltx_reconcile.cli import render
from ltx_reconcile.cli.app import CliApp
from ltx_reconcile.cli.options import open_workspace, workspace_options
from ltx_reconcile.errors import ExitCode


@click.command("force-unlock")
@click.argument("lock_id")
@workspace_options
@click.pass_obj
def force_unlock(
    app: CliApp,
    lock_id: str,
    specs_dir: Path | None,
    state_path: Path | None,
    objects_dir: Path | None,
) -> int:
    """Remove the state's lease LOCK_ID, as named in a "state is locked" message.

    Only for a holder that is gone: a dead process on this host is taken over without it.
    Open journal entries are kept, so the next apply still resumes. Example:

        ltx-reconcile force-unlock 5f0c1d2e-...
    """
    workspace = open_workspace(app, specs_dir, state_path, objects_dir)
    lease = workspace.force_unlock(lock_id)
    render.stdout_console().print(
        f"Unlocked: removed lease {lease.lock_id} held by {lease.owner} "
        f"(pid {lease.pid}, {lease.operation}).",
        highlight=False,
    )
    return ExitCode.OK
