"""Flags shared by several commands, defined once as decorators (as sqlite-utils does)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ltx_reconcile.cli.app import CliApp
from ltx_reconcile.plan.planner import PlanOptions
from ltx_reconcile.workspace import Workspace, WorkspacePaths

__all__ = ["open_workspace", "selection_options", "workspace_options"]

F = TypeVar("F", bound=Callable[..., Any])


def workspace_options(func: F) -> F:
    """`--specs`, `--state` and `--objects`: where this workspace keeps each thing."""
    for decorator in reversed(
        [
            click.option(
                "--specs",
                "specs_dir",
                type=click.Path(file_okay=False, path_type=Path),
                default=None,
                help="Directory of spec files [default: specs].",
            ),
            click.option(
                "--state",
                "state_path",
                type=click.Path(dir_okay=False, path_type=Path),
                default=None,
                help="State database [default: state/state.db].",
            ),
            click.option(
                "--objects",
                "objects_dir",
                type=click.Path(file_okay=False, path_type=Path),
                default=None,
                help="Artifact store directory [default: objects/ beside the state].",
            ),
        ]
    ):
        func = decorator(func)
    return func


def selection_options(func: F) -> F:
    """`--target`, `--exclude` and `--replace`: glob patterns over image addresses."""
    for decorator in reversed(
        [
            click.option(
                "--target",
                "targets",
                multiple=True,
                metavar="PATTERN",
                help="Only these images (and the images they reference). Repeatable.",
            ),
            click.option(
                "--exclude",
                "excludes",
                multiple=True,
                metavar="PATTERN",
                help="Leave these images out. Repeatable.",
            ),
            click.option(
                "--replace",
                "replace",
                multiple=True,
                metavar="PATTERN",
                help="Generate these again although nothing changed (costed). Repeatable.",
            ),
        ]
    ):
        func = decorator(func)
    return func


def open_workspace(
    app: CliApp, specs_dir: Path | None, state_path: Path | None, objects_dir: Path | None
) -> Workspace:
    """The workspace the flags describe, below the `-C` root."""
    paths = WorkspacePaths.under(app.root, specs=specs_dir, state=state_path, objects=objects_dir)
    return Workspace(paths, app.settings)


def plan_options(
    targets: tuple[str, ...], excludes: tuple[str, ...], replace: tuple[str, ...]
) -> PlanOptions:
    """The planner's options from the selection flags."""
    return PlanOptions(targets=targets, excludes=excludes, replace=replace)
