"""`ltx-reconcile show [PLANFILE]`: a saved plan as `plan` shows it, or the state at a glance.

Like `terraform show`: it only displays. A stale plan is shown all the same (with a note on
stderr saying why `apply` would refuse it); stdout carries exactly what `plan` printed.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ltx_reconcile import __version__
from ltx_reconcile.cli import render
from ltx_reconcile.cli.app import CliApp
from ltx_reconcile.cli.options import format_options, open_workspace, workspace_options
from ltx_reconcile.errors import ExitCode, UsageError
from ltx_reconcile.inventory import StateSummary


@click.command()
# Not `exists=True`: PLANFILE is read below the -C root, as `apply PLANFILE` reads it.
@click.argument("planfile", required=False, type=click.Path(dir_okay=False, path_type=Path))
@workspace_options
@format_options(
    "human (default), json (the plan document, or the summary) or markdown (a plan only)."
)
@click.pass_obj
def show(
    app: CliApp,
    planfile: Path | None,
    specs_dir: Path | None,
    state_path: Path | None,
    objects_dir: Path | None,
    output_format: str,
    as_json: bool,
) -> int:
    """Show a saved plan as `plan` showed it; without PLANFILE, sum up the state.

    Changes nothing. A stale plan is shown too, with a note that `apply` would refuse it.
    Example:

        ltx-reconcile plan --out plan.json && ltx-reconcile show plan.json
    """
    workspace = open_workspace(app, specs_dir, state_path, objects_dir)
    output_format = "json" if as_json else output_format
    console = render.stdout_console()
    if planfile is None:
        if output_format == "markdown":
            raise UsageError("--format markdown shows a saved plan; name a PLANFILE")
        summary = workspace.state_summary()
        if output_format == "json":
            console.file.write(json.dumps(summary.as_dict(), indent=1) + "\n")
        else:
            console.file.write(
                "".join(f"{line}\n" for line in _summary_lines(summary, workspace.state_display()))
            )
        return ExitCode.OK
    plan, stale = workspace.read_saved_plan(app.root / planfile)
    if output_format == "json":
        # Imported here, as `plan` does: pydantic is needed for the document only.
        from ltx_reconcile.plan.document import from_plan

        console.file.write(from_plan(plan, tool_version=__version__).model_dump_json(indent=1))
        console.file.write("\n")
    elif output_format == "markdown":
        from ltx_reconcile.cli.markdown import plan_markdown

        console.file.write(plan_markdown(plan))
    else:
        render.plan(console, plan)
    if stale is not None:
        render.stderr_console().print(
            f"Note: {planfile} is stale ({stale}); `apply {planfile}` would refuse it.",
            markup=False,
        )
    return ExitCode.OK


def _summary_lines(summary: StateSummary, where: str) -> list[str]:
    # `where` from the workspace, not summary.path: a PostgreSQL URL is not a path.
    if summary.lineage is None:
        return [f"No state at {where} yet; `ltx-reconcile apply` creates it."]
    statuses = ", ".join(f"{count} {status}" for status, count in summary.images_by_status.items())
    images = f"{summary.images} image{'' if summary.images == 1 else 's'}"
    spent = f"{summary.spent:g}"
    return [
        f"State {where}: lineage {summary.lineage}, serial {summary.serial}, "
        f"schema {summary.schema_version}.",
        f"{images}" + (f": {statuses}." if statuses else "."),
        f"Spent {spent} credits since the state was created (refunds deducted).",
    ]
