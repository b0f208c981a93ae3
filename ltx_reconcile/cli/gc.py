"""`ltx-reconcile gc`: list, and with `--force` delete, stored objects nothing keeps; pins."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ltx_reconcile.cli import render
from ltx_reconcile.cli.app import CliApp
from ltx_reconcile.cli.options import lock_timeout_option, open_workspace, workspace_options
from ltx_reconcile.errors import ExitCode, UsageError
from ltx_reconcile.gc import GcReport
from ltx_reconcile.workspace import Workspace


@click.command()
@workspace_options
@click.option(
    "--force",
    is_flag=True,
    help="Delete the unreachable objects. Their artifact rows stay, as the record of what was paid.",
)
@click.option(
    "--pin",
    "pin_digest",
    metavar="DIGEST",
    default=None,
    help="Keep the object DIGEST through every gc, although no image uses it.",
)
@click.option("--note", default=None, help="With --pin: why the object is kept.")
@click.option(
    "--unpin",
    "unpin_digest",
    metavar="DIGEST",
    default=None,
    help="Stop keeping DIGEST; gc collects it once no image uses it.",
)
@lock_timeout_option("--force, --pin or --unpin")
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON document.")
@click.pass_obj
def gc(
    app: CliApp,
    specs_dir: Path | None,
    state_path: Path | None,
    objects_dir: Path | None,
    force: bool,
    pin_digest: str | None,
    note: str | None,
    unpin_digest: str | None,
    lock_timeout: float,
    as_json: bool,
) -> int:
    """List the stored objects no image, pin or open journal entry uses; --force deletes them.

    A dry run by default: each unreachable object with its size and the credits paid for
    it, then the totals. Deleting takes the state's lock, so it cannot race an apply.
    Pinned objects are kept (`--pin DIGEST --note TEXT`, `--unpin DIGEST`). Example:

        ltx-reconcile gc && ltx-reconcile gc --force
    """
    actions = (("--force", force), ("--pin", pin_digest), ("--unpin", unpin_digest))
    chosen = [flag for flag, value in actions if value]
    if len(chosen) > 1:
        raise UsageError(f"{' and '.join(chosen)} cannot be combined; run them one at a time")
    if note is not None and pin_digest is None:
        raise UsageError("--note belongs to --pin")
    workspace = open_workspace(app, specs_dir, state_path, objects_dir)
    if pin_digest is not None:
        return _pin(workspace, pin_digest, note or "", lock_timeout)
    if unpin_digest is not None:
        workspace.unpin(unpin_digest, lock_timeout_s=lock_timeout)
        _say(f"Unpinned {unpin_digest}: gc deletes it once no image uses it.")
        return ExitCode.OK
    report = workspace.gc(force=force, lock_timeout_s=lock_timeout)
    if as_json:
        _print_json(report)
    else:
        _print_report(render.stdout_console(), report)
    return ExitCode.OK


def _pin(workspace: Workspace, digest: str, note: str, lock_timeout_s: float) -> int:
    if workspace.pin(digest, note, lock_timeout_s=lock_timeout_s):
        _say(f"Pinned {digest}: gc keeps it.")
    else:
        _say(f"{digest} was pinned already; its note is unchanged.")
    return ExitCode.OK


def _say(line: str) -> None:
    render.stdout_console().print(line, highlight=False, markup=False)


def _credits(amount: float | None) -> str:
    return "credits unknown (no artifact row)" if amount is None else f"{amount:g} credits"


def _print_report(console: render.Console, report: GcReport) -> None:
    count = len(report.garbage)
    objects = "1 unreachable object" if count == 1 else f"{count} unreachable objects"
    them = "it" if count == 1 else "them"
    totals = f"{report.size_bytes:,} bytes, {report.credits:g} credits paid for {them}"
    if not count:
        console.print("Nothing to collect: every stored object is in use.", markup=False)
    elif report.deleted:
        console.print(f"Deleted {objects}: {totals}.", markup=False)
    else:
        console.print(f"{objects[0].upper()}{objects[1:]}: {totals}.", markup=False)
    for item in report.garbage:
        model = f"  {item.model}" if item.model else ""
        console.print(
            f"  {item.digest}  {item.size_bytes:,} bytes  {_credits(item.credits)}{model}",
            markup=False,
        )
    if report.kept:
        kept = ", ".join(f"{n} {reason.value}" for reason, n in report.kept.items())
        console.print(f"Kept {sum(report.kept.values())}: {kept}.", markup=False)
    if report.deleted and count:
        console.print("Their artifact rows stay, as the record of what was paid.", markup=False)
    elif count:
        console.print(
            "Dry run: nothing was deleted. `ltx-reconcile gc --force` deletes these objects; "
            "their artifact rows stay, as the record of what was paid.",
            markup=False,
        )


def _print_json(report: GcReport) -> None:
    document = {
        "version": 1,
        "deleted": report.deleted,
        "objects": [
            {
                "digest": item.digest,
                "size_bytes": item.size_bytes,
                "credits": item.credits,
                "key": item.key,
                "model": item.model,
            }
            for item in report.garbage
        ],
        "size_bytes": report.size_bytes,
        "credits": report.credits,
        "kept": {reason.name.lower(): n for reason, n in report.kept.items()},
    }
    click.echo(json.dumps(document, indent=1))
