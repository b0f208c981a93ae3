"""`ltx-reconcile import`: adopt an existing picture (a file, or a finished job) for free."""

from __future__ import annotations

from pathlib import Path

import click

from ltx_reconcile.cli import render
from ltx_reconcile.cli.api import api_options, connect
from ltx_reconcile.cli.app import CliApp
from ltx_reconcile.cli.options import lock_timeout_option, open_workspace, workspace_options
from ltx_reconcile.errors import ExitCode
from ltx_reconcile.importer import ImportResult
from ltx_reconcile.outputs import OutputAction


@click.command("import")
@click.argument("name")
@click.argument("source", metavar="FILE_OR_JOB_ID")
@workspace_options
@api_options
@click.option(
    "--force",
    is_flag=True,
    help="Replace the image's current picture, or import a job that disagrees with the spec.",
)
@lock_timeout_option()
@click.pass_obj
def import_(
    app: CliApp,
    name: str,
    source: str,
    specs_dir: Path | None,
    state_path: Path | None,
    objects_dir: Path | None,
    api_url: str | None,
    email: str | None,
    emulator: bool,
    force: bool,
    lock_timeout: float,
) -> int:
    """Adopt FILE_OR_JOB_ID as the picture of image NAME, at no cost.

    FILE is a PNG, JPEG or WebP file; a JOB_ID (email:<account>:<id>-type:image) is a
    finished job at the API, downloaded once. Afterwards `plan` shows NAME up to date.
    Examples:

        ltx-reconcile import hero art/hero.png

        ltx-reconcile import hero 'email:me@example.com:7a34...-type:image'
    """
    workspace = open_workspace(app, specs_dir, state_path, objects_dir)
    with connect(workspace, api_url, email, emulator=emulator) as connected:
        result = connected.import_image(name, source, force=force, lock_timeout_s=lock_timeout)
    _warnings(render.stderr_console(), result)
    _summary(render.stdout_console(), result)
    return ExitCode.OK


def _warnings(console: render.Console, result: ImportResult) -> None:
    if result.warnings:
        console.print(
            f"Warning: {result.origin} does not match the spec of {result.image}; "
            "imported anyway (--force):",
            markup=False,
        )
        for line in result.warnings:
            console.print(f"  {line}", markup=False)


def _summary(console: render.Console, result: ImportResult) -> None:
    if not result.changed:
        console.print(
            f"{result.image} already has this picture (sha256 {result.digest}); nothing changed.",
            markup=False,
        )
        return
    console.print(
        f"Imported {result.image} from {result.origin}: {result.width}x{result.height} "
        f"{result.mime}, sha256 {result.digest}. No credits spent.",
        markup=False,
    )
    if result.output_action is OutputAction.UNCHANGED:
        console.print(f"{result.output} already held this picture.", markup=False)
    else:
        console.print(f"{result.output} {result.output_action}.", markup=False)
    if result.replaced is not None:
        console.print(
            f"The previous picture (sha256 {result.replaced}) stays in the store until gc.",
            markup=False,
        )
