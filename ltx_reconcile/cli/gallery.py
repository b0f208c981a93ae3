"""`ltx-reconcile gallery`: write a static HTML page of every image, or of a saved plan."""

from __future__ import annotations

from pathlib import Path

import click

from ltx_reconcile.cli import render
from ltx_reconcile.cli.app import CliApp
from ltx_reconcile.cli.options import open_workspace, workspace_options
from ltx_reconcile.errors import ExitCode
from ltx_reconcile.gallery import GalleryPage


@click.command()
@workspace_options
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("gallery"),
    show_default=True,
    help="Directory to write index.html into.",
)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Show what this saved plan changes, beside the current pictures.",
)
@click.pass_obj
def gallery(
    app: CliApp,
    specs_dir: Path | None,
    state_path: Path | None,
    objects_dir: Path | None,
    out_dir: Path,
    plan_file: Path | None,
) -> int:
    """Write a static HTML page of every image in the specs, filterable by tag, model, status.

    Each card shows the picture, prompt, inputs, status, cost and job id, and links to the
    output file; grids are laid out by their axes. With --plan, each image the plan
    regenerates is shown beside "will be regenerated" and its changed inputs. No network,
    no state written: only the page and its thumbnail cache. Examples:

    \b
        ltx-reconcile gallery                 # then open gallery/index.html
        ltx-reconcile gallery --plan plan.json --out review
    """
    workspace = open_workspace(app, specs_dir, state_path, objects_dir)
    plan_path = None if plan_file is None else app.root / plan_file
    page = workspace.gallery(app.root / out_dir, plan_path=plan_path)
    render.stdout_console().print(_summary(page, workspace.paths.display(page.path)), markup=False)
    return ExitCode.OK


def _summary(page: GalleryPage, shown_path: Path) -> str:
    images = page.gallery.images
    plural = "" if len(images) == 1 else "s"
    statuses = ", ".join(f"{n} {s}" for s, n in page.gallery.status_counts.items())
    line = f"Wrote {shown_path}: {len(images)} image{plural}"
    if statuses:
        line += f" ({statuses})"
    plan = page.gallery.plan
    if plan is not None:
        changing = sum(n for action, n in plan.counts.items() if action != "no-op")
        line += f"; the plan changes {changing}, estimated {plan.total_cost} credits"
    return line + "."
