"""`ltx-reconcile plan`: show what apply would generate, reuse, replace or remove."""

from __future__ import annotations

from pathlib import Path

import click

from ltx_reconcile import __version__
from ltx_reconcile.cli import render
from ltx_reconcile.cli.app import CliApp
from ltx_reconcile.cli.options import (
    format_options,
    open_workspace,
    plan_options,
    selection_options,
    workspace_options,
)
from ltx_reconcile.errors import ExitCode


@click.command()
@workspace_options
@selection_options
@format_options("human (default), json (the versioned plan document) or markdown (a PR comment).")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Save the plan for a later `apply FILE`.",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 with no changes, 2 with changes (1 error, 3 invalid input, 7 over budget).",
)
@click.pass_obj
def plan(
    app: CliApp,
    specs_dir: Path | None,
    state_path: Path | None,
    objects_dir: Path | None,
    targets: tuple[str, ...],
    excludes: tuple[str, ...],
    replace: tuple[str, ...],
    output_format: str,
    as_json: bool,
    out: Path | None,
    detailed_exitcode: bool,
) -> int:
    """Show what `apply` would generate, reuse, replace or remove, and what it costs.

    Writes nothing to the state. Exits 7 when the estimate would pass the specs' budget
    (per apply, or what is left of the UTC day's), whatever else it exits with. Example:

        ltx-reconcile plan --out plan.json && ltx-reconcile apply plan.json
    """
    workspace = open_workspace(app, specs_dir, state_path, objects_dir, postgres_ready=True)
    result = workspace.plan(plan_options(targets, excludes, replace))
    if out is not None:
        workspace.save_plan(result, app.root / out)
    console = render.stdout_console()
    if as_json or output_format == "json":
        # Imported here: the document is pydantic, which a human-readable plan never needs.
        from ltx_reconcile.plan.document import from_plan

        console.file.write(from_plan(result, tool_version=__version__).model_dump_json(indent=1))
        console.file.write("\n")
    elif output_format == "markdown":
        from ltx_reconcile.cli.markdown import plan_markdown  # only for this format

        console.file.write(plan_markdown(result))
    else:
        render.plan(console, result)
        if out is not None:
            console.print(f"\nSaved the plan to {out}. Apply exactly it with:")
            console.print(f"    ltx-reconcile apply {out}")
    if result.over_budget:
        return ExitCode.OVER_BUDGET
    if detailed_exitcode and result.has_changes:
        return ExitCode.CHANGES
    return ExitCode.OK
