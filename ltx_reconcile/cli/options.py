"""Flags shared by several commands, defined once as decorators (as sqlite-utils does)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ltx_reconcile.cli.app import CliApp
from ltx_reconcile.errors import UsageError
from ltx_reconcile.plan.planner import PlanOptions
from ltx_reconcile.workspace import SHARED_LOCK_TIMEOUT_S, Workspace, WorkspacePaths

__all__ = ["open_workspace", "selection_options", "workspace_options"]

F = TypeVar("F", bound=Callable[..., Any])


def workspace_options(func: F) -> F:
    """`--specs`, `--state`, `--objects` and `--store`: where this workspace keeps each thing."""
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
                metavar="PATH|postgresql://…",
                default=None,
                callback=_state_location,
                help="State database [default: state/state.db], or a PostgreSQL URL "
                "shared by a team [env: LTX_STATE_URL, LTX_STATE_SCHEMA].",
            ),
            click.option(
                "--objects",
                "objects_dir",
                type=click.Path(file_okay=False, path_type=Path),
                default=None,
                help="Artifact store directory [default: objects/ beside the state]; "
                "with an S3 --store, its local cache.",
            ),
            click.option(
                "--store",
                metavar="s3://BUCKET/PREFIX",
                default=None,
                expose_value=False,
                callback=_override_setting("store"),
                help="Keep artifacts in an S3-compatible bucket, shared by a team "
                "[env: LTX_STORE; default: the --objects directory].",
            ),
            click.option(
                "--store-endpoint",
                metavar="URL",
                default=None,
                expose_value=False,
                callback=_override_setting("store_endpoint"),
                help="URL of an S3-compatible server [env: LTX_STORE_ENDPOINT; "
                "default: AWS_ENDPOINT_URL or AWS].",
            ),
        ]
    ):
        func = decorator(func)
    return func


def _override_setting(name: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    """A callback that puts a flag's value into the command's settings, over the environment.

    The store flags reach the workspace through `Settings` (as `LTX_STORE` does), so no
    command's signature has to carry them: the command's context gets a `CliApp` whose
    settings hold the flag, and `@click.pass_obj` hands that one over.
    """

    def callback(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        app = ctx.find_object(CliApp)
        if value is not None and app is not None:
            ctx.obj = dataclasses.replace(app, settings=app.settings.with_changes(**{name: value}))

    return callback


def _state_location(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    """`--state`: a file's path; a PostgreSQL URL goes into the settings, as LTX_STATE_URL."""
    if value is None:
        return None
    if value.startswith(("postgresql://", "postgres://")):
        _override_setting("state_url")(ctx, param, value)
        return None
    path: Path = click.Path(dir_okay=False, path_type=Path).convert(value, param, ctx)
    return path


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
    app: CliApp,
    specs_dir: Path | None,
    state_path: Path | None,
    objects_dir: Path | None,
    *,
    postgres_ready: bool = True,
) -> Workspace:
    """The workspace the flags describe, below the `-C` root.

    Every command takes a PostgreSQL state (`state pull` and `state push` refuse one in
    the workspace). Raises `UsageError` when the state is a PostgreSQL URL and a command
    says it is not `postgres_ready`: it must not use the file instead.
    """
    if app.settings.state_url is not None and not postgres_ready:
        ctx = click.get_current_context(silent=True)
        command = ctx.info_name if ctx is not None else "this command"
        raise UsageError(
            f"`{command}` cannot use a PostgreSQL state yet",
            hint="run it without LTX_STATE_URL and without --state postgresql://…",
        )
    paths = WorkspacePaths.under(app.root, specs=specs_dir, state=state_path, objects=objects_dir)
    return Workspace(paths, app.settings)


def plan_options(
    targets: tuple[str, ...], excludes: tuple[str, ...], replace: tuple[str, ...]
) -> PlanOptions:
    """The planner's options from the selection flags."""
    return PlanOptions(targets=targets, excludes=excludes, replace=replace)


def lock_timeout_option(
    when: str = "", *, shared_default: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--lock-timeout SECONDS` of a command that writes the state; `when` names the flags it
    writes with (e.g. "--repair"), for commands that only read without them. With
    `shared_default` (apply) the default is None: the workspace picks one by state."""
    prefix = f"With {when}: s" if when else "S"
    help_text = f"{prefix}econds to wait for another command's lock on the state (exit 4)."
    if shared_default:
        help_text += (
            " [default: 0; on a PostgreSQL state, where other applies plan briefly under"
            f" it, {SHARED_LOCK_TIMEOUT_S:g}]"
        )
    return click.option(
        "--lock-timeout",
        type=click.FloatRange(min=0),
        default=None if shared_default else 0.0,
        show_default=not shared_default,
        help=help_text,
    )


def format_options(format_help: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--format human|json|markdown` and its `--json` shorthand, as plan and show take them."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        command = click.option("--json", "as_json", is_flag=True, help="Same as --format json.")(
            command
        )
        return click.option(
            "--format",
            "output_format",
            type=click.Choice(["human", "json", "markdown"]),
            default="human",
            help=format_help,
        )(command)

    return decorate
