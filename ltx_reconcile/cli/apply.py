"""`ltx-reconcile apply`: generate what the plan says, never paying twice."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path

import click

from ltx_reconcile.apply_result import DEFAULT_GRACE_S, ApplyOptions
from ltx_reconcile.cli import render
from ltx_reconcile.cli.api import api_options, connect
from ltx_reconcile.cli.app import CliApp
from ltx_reconcile.cli.options import (
    lock_timeout_option,
    open_workspace,
    plan_options,
    selection_options,
    workspace_options,
)
from ltx_reconcile.cli.progress import JsonLinesReporter, PlainReporter, RichReporter
from ltx_reconcile.errors import ExitCode, UsageError
from ltx_reconcile.events import Reporter


@click.command()
# Not `exists=True`: click would look in the current directory, but PLANFILE is read
# below the -C root (where `plan --out` wrote it); a missing file is a UsageError there.
@click.argument("planfile", required=False, type=click.Path(dir_okay=False, path_type=Path))
@workspace_options
@selection_options
@api_options
@click.option("--auto-approve", is_flag=True, help="Apply without asking for confirmation.")
@click.option(
    "--parallelism",
    type=click.IntRange(min=1),
    default=None,
    help="At most N jobs at once [default: $LTX_PARALLELISM, else the account's maxJobs].",
)
@lock_timeout_option(shared_default=True)
@click.option(
    "--max-cost",
    type=click.IntRange(min=0),
    default=None,
    help="Stop submitting before this apply's spend would pass N credits (exit 7); a spec's "
    "budget (per_apply, per_day) limits it too, and the tightest limit wins.",
)
@click.option(
    "--resubmit-unknown",
    is_flag=True,
    help="Send again images whose earlier outcome is unknown (they may have been paid for).",
)
@click.option(
    "--grace",
    "grace_s",
    type=click.FloatRange(min=0),
    default=DEFAULT_GRACE_S,
    show_default=True,
    help="After Ctrl-C, seconds to wait for jobs already paid for.",
)
@click.option("--json", "as_json", is_flag=True, help="Progress as JSON lines on stderr.")
@click.pass_obj
def apply(
    app: CliApp,
    planfile: Path | None,
    specs_dir: Path | None,
    state_path: Path | None,
    objects_dir: Path | None,
    targets: tuple[str, ...],
    excludes: tuple[str, ...],
    replace: tuple[str, ...],
    api_url: str | None,
    email: str | None,
    emulator: bool,
    auto_approve: bool,
    parallelism: int | None,
    lock_timeout: float | None,
    max_cost: int | None,
    resubmit_unknown: bool,
    grace_s: float,
    as_json: bool,
) -> int:
    """Generate the images that are missing or whose inputs changed.

    Plans, shows the plan and asks before spending (or applies exactly a saved PLANFILE).
    Interrupted applies resume where they stopped. Example:

        ltx-reconcile apply --emulator --auto-approve
    """
    if planfile is not None and (targets or excludes or replace):
        raise UsageError(
            "--target, --exclude and --replace belong to `plan` when applying a PLANFILE"
        )
    workspace = open_workspace(app, specs_dir, state_path, objects_dir)
    # Before the state is opened (which creates it): invalid specs must change nothing.
    workspace.validate()
    stdout = render.stdout_console()
    stderr = render.stderr_console()
    options = ApplyOptions(
        parallelism=parallelism,
        max_cost=max_cost,
        resubmit_unknown=resubmit_unknown,
        grace_s=grace_s,
    )
    with ExitStack() as stack:
        connected = stack.enter_context(connect(workspace, api_url, email, emulator=emulator))
        session = stack.enter_context(
            connected.session(lock_timeout_s=lock_timeout, operation="apply")
        )
        if planfile is not None:
            plan = session.load_plan(app.root / planfile)
        else:
            plan = session.plan(plan_options(targets, excludes, replace))
        render.plan(stdout, plan)
        if not plan.has_changes:
            return ExitCode.OK
        if planfile is None and not auto_approve:
            _confirm(stdout)
        reporter: Reporter
        if as_json:
            reporter = JsonLinesReporter(sys.stderr)
        elif stderr.is_terminal:
            reporter = stack.enter_context(RichReporter(stderr))
        else:
            reporter = PlainReporter(sys.stderr)
        summary = session.apply(plan, options, reporter=reporter)
    render.apply_summary(stdout, summary, workspace.paths)
    return summary.exit_code


def _confirm(console: render.Console) -> None:
    if not sys.stdin.isatty():
        raise UsageError(
            "apply needs confirmation, but standard input is not a terminal",
            hint="review the plan above and rerun with --auto-approve, or apply a saved plan",
        )
    console.print("\nDo you want to perform these actions? Only 'yes' will be accepted.")
    answer = click.prompt("  Enter a value", default="", show_default=False)
    if answer.strip() != "yes":
        raise UsageError("apply cancelled; nothing was changed")
