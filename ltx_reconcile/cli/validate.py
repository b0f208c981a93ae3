"""`ltx-reconcile validate`: check every spec file, report every problem at once."""

from __future__ import annotations

from pathlib import Path

import click

from ltx_reconcile.cli import render
from ltx_reconcile.cli.app import CliApp
from ltx_reconcile.cli.options import open_workspace, workspace_options
from ltx_reconcile.errors import ExitCode


@click.command()
@workspace_options
@click.pass_obj
def validate(
    app: CliApp, specs_dir: Path | None, state_path: Path | None, objects_dir: Path | None
) -> int:
    """Check the spec files against the schema and the API's rules, without planning.

    Exit 3 with every problem as file:line:column when anything is wrong. Example:

        ltx-reconcile validate --specs specs/
    """
    # Ready for a PostgreSQL state: validating reads no state at all.
    workspace = open_workspace(app, specs_dir, state_path, objects_dir, postgres_ready=True)
    specs = workspace.validate()
    files = len(specs.files)
    render.stdout_console().print(
        f"Valid: {len(specs.images)} images in {files} spec file{'s' if files != 1 else ''}."
    )
    return ExitCode.OK
