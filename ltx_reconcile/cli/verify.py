"""`ltx-reconcile verify`: check the store, output files and state; `--repair` fixes the free."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click

from ltx_reconcile.cli import render
from ltx_reconcile.cli.app import CliApp
from ltx_reconcile.cli.options import lock_timeout_option, open_workspace, workspace_options
from ltx_reconcile.errors import ExitCode
from ltx_reconcile.verify import Done, Finding, Remedy, Repair, VerifyOutcome


@click.command()
@workspace_options
@click.option(
    "--repair",
    is_flag=True,
    help="Do the free repairs: rebuild objects from output files, write missing output "
    "files from the store, move corrupt objects aside. Never overwrites a file you changed.",
)
@lock_timeout_option("--repair")
@click.option("--json", "as_json", is_flag=True, help="The report as one JSON document.")
@click.pass_obj
def verify(
    app: CliApp,
    specs_dir: Path | None,
    state_path: Path | None,
    objects_dir: Path | None,
    repair: bool,
    lock_timeout: float,
    as_json: bool,
) -> int:
    """Re-hash every stored object; check every output file and every image in the state.

    Reports what is missing, corrupt or modified, and whether each can be put right at no
    cost (`--repair` does it) or only by a paid generation (with its credits). Exit 0 when
    nothing drifts, 2 when something does (with --repair: when drift remains), 1 or the
    table's code on an error (4: state locked or unreadable). Example:

        ltx-reconcile verify || ltx-reconcile verify --repair
    """
    workspace = open_workspace(app, specs_dir, state_path, objects_dir)
    outcome = workspace.verify(repair=repair, lock_timeout_s=lock_timeout)
    if as_json:
        click.echo(json.dumps(_document(outcome), indent=1))
    else:
        _print_outcome(render.stdout_console(), outcome)
    return outcome.exit_code


def _print_outcome(console: render.Console, outcome: VerifyOutcome) -> None:
    report = outcome.report
    console.print(
        f"Checked {_count(report.objects, 'stored object')}, "
        f"{_count(report.outputs, 'output file')} and {_count(report.images, 'image')}.",
        markup=False,
    )
    if outcome.repair is not None and outcome.repair.repaired:
        console.print("Repaired at no cost:", markup=False)
        for repair in outcome.repair.repaired:
            console.print(f"  {_repair_line(repair)}", markup=False)
    if outcome.repair is None:
        _print_findings(console, report.findings)
    elif outcome.repair.remaining:
        console.print("Drift left:", markup=False)
        _print_findings(console, outcome.repair.remaining)
    console.print(_summary(outcome.remaining, repaired=outcome.repair is not None), markup=False)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _print_findings(console: render.Console, findings: Sequence[Finding]) -> None:
    for finding in findings:
        console.print(
            f"  {finding.problem.value:<10} {_subject(finding)}: {_remedy(finding)}", markup=False
        )


def _subject(finding: Finding) -> str:
    if finding.kind == "object":
        users = ", ".join(finding.images) if finding.images else "no image"
        return f"object {finding.subject} (used by {users})"
    if finding.kind == "output":
        return f"output {finding.subject} ({finding.images[0]})"
    return f"image {finding.subject} (its artifact row is missing)"


def _remedy(finding: Finding) -> str:
    if finding.remedy is Remedy.RESTORE:
        source = "the store" if finding.kind == "output" else finding.source
        return f"restorable at no cost from {source}"
    if finding.remedy is Remedy.QUARANTINE:
        return "nothing uses it; moved aside at no cost"
    if finding.remedy is Remedy.KEEP:
        return "changed by someone else; left alone"
    if finding.kind == "output":
        return "comes back once its object is generated again"
    if finding.credits is None:
        return "needs a new generation (cost unknown)"
    return f"needs a new generation: {finding.credits:g} credits (`ltx-reconcile apply`)"


def _repair_line(repair: Repair) -> str:
    finding = repair.finding
    if repair.done is Done.MOVED_ASIDE:
        return f"moved corrupt object {finding.subject} aside to {repair.quarantined}"
    if repair.done is Done.REMOVED:
        return f"removed corrupt output {finding.subject} (a link to the object moved aside)"
    if finding.kind == "output":
        return f"restored output {finding.subject} from the store"
    line = f"restored object {finding.subject} from {finding.source}"
    if repair.quarantined is not None:
        line += f" (the corrupt copy is now {repair.quarantined})"
    return line


def _summary(findings: Sequence[Finding], *, repaired: bool) -> str:
    if not findings:
        return "No drift left." if repaired else "No drift: everything verifies."
    free = sum(1 for f in findings if f.is_free)
    costed = [f for f in findings if f.remedy is Remedy.REGENERATE]
    kept = sum(1 for f in findings if f.remedy is Remedy.KEEP)
    credits = sum(f.credits or 0 for f in costed)
    parts = [f"{free} restorable at no cost"] if free else []
    if costed:
        verb = "needs" if len(costed) == 1 else "need"
        parts.append(f"{len(costed)} {verb} a new generation ({credits:g} credits)")
    if kept:
        parts.append(f"{kept} changed by someone else and left alone")
    line = f"Drift: {_count(len(findings), 'problem')}: {', '.join(parts)}."
    if free:
        line += " Run `ltx-reconcile verify --repair` to do the free repairs."
    return line


def _finding_document(finding: Finding) -> dict[str, object]:
    return {
        "kind": finding.kind,
        "subject": finding.subject,
        "problem": finding.problem.value,
        "remedy": finding.remedy.value,
        "free": finding.is_free,
        "images": list(finding.images),
        "source": finding.source,
        "credits": finding.credits,
    }


def _document(outcome: VerifyOutcome) -> dict[str, object]:
    report = outcome.report
    repaired = None
    if outcome.repair is not None:
        repaired = [
            {**_finding_document(r.finding), "done": r.done.value, "quarantined": r.quarantined}
            for r in outcome.repair.repaired
        ]
    return {
        "version": 1,
        "clean": outcome.exit_code is ExitCode.OK,
        "checked": {"objects": report.objects, "outputs": report.outputs, "images": report.images},
        "findings": [_finding_document(f) for f in report.findings],
        "repaired": repaired,
        "remaining": [_finding_document(f) for f in outcome.remaining],
    }
