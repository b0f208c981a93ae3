"""Rendering for terminals: errors, plans and progress. Every renderer takes a `Console`.

stdout carries the product (plans, summaries); stderr carries progress and diagnostics.
Colour goes off when the stream is not a terminal or `NO_COLOR` is set (rich honours both).
"""

from __future__ import annotations

import json

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from ltx_reconcile.apply_result import ApplySummary
from ltx_reconcile.errors import ReconcileError
from ltx_reconcile.plan.model import SYMBOLS, Action, Change, Plan
from ltx_reconcile.workspace import WorkspacePaths

__all__ = [
    "Console",
    "apply_summary",
    "budget_lines",
    "error",
    "plan",
    "stderr_console",
    "stdout_console",
    "summary_line",
]


def stdout_console() -> Console:
    """A console on stdout, soft-wrapped so long lines stay copyable."""
    return Console(soft_wrap=True, highlight=False)


def stderr_console() -> Console:
    """A console on stderr for progress and diagnostics."""
    return Console(stderr=True, soft_wrap=True, highlight=False)


def error(console: Console, err: ReconcileError) -> None:
    """Print an anticipated failure: `Error: <message>` and, if any, a hint line."""
    console.print(f"[bold red]Error:[/] {escape(str(err))}")
    if err.hint:
        console.print(f"[dim]hint:[/] {escape(err.hint)}")


_STYLES: dict[Action, str] = {
    Action.CREATE: "green",
    Action.REPLACE: "yellow",
    Action.MOVE: "cyan",
    Action.REUSE: "cyan",
    Action.RESUME: "magenta",
    Action.REFETCH: "yellow",
    Action.DELETE: "red",
    Action.BLOCKED: "bold red",
}

_ORDER: tuple[Action, ...] = (
    Action.CREATE,
    Action.REPLACE,
    Action.REFETCH,
    Action.RESUME,
    Action.REUSE,
    Action.MOVE,
    Action.DELETE,
    Action.BLOCKED,
)


def _value(value: object) -> str:
    if isinstance(value, str):
        shown = value if len(value) <= 80 else value[:77] + "..."
        return json.dumps(shown, ensure_ascii=False)
    return "(none)" if value is None else str(value)


def _cost_text(plan_: Plan) -> str:
    if not plan_.total_cost:
        return "Estimated cost: 0 credits."
    parts = ", ".join(f"{model} {cost}" for model, cost in plan_.cost_by_model.items())
    return f"Estimated cost: {plan_.total_cost} credits ({parts})."


def summary_line(plan_: Plan) -> str:
    """`Plan: 2 to create, 1 to replace, ... Estimated cost: N credits (...)`."""
    counts = plan_.counts
    words = {
        Action.CREATE: "to create",
        Action.REPLACE: "to replace",
        Action.REFETCH: "to refetch",
        Action.RESUME: "to resume",
        Action.REUSE: "to reuse",
        Action.MOVE: "to move",
        Action.DELETE: "to delete",
        Action.BLOCKED: "blocked",
    }
    parts = [
        f"{counts.get(a, 0)} {words[a]}"
        for a in _ORDER
        if counts.get(a, 0) or a in (Action.CREATE, Action.REPLACE, Action.DELETE)
    ]
    return f"Plan: {', '.join(parts)}. {_cost_text(plan_)}"


_Line = list[tuple[str, str]]
"""One output line as (text, style) pieces: markup-free, so image names need no escaping."""


def _change_lines(change: Change) -> list[_Line]:
    symbol = SYMBOLS[change.action]
    head: _Line = [
        ("  ", ""),
        (f"{symbol:>3} {change.action.value:<8}", _STYLES.get(change.action, "")),
        (" ", ""),
        (change.image, "bold"),
    ]
    if change.model:
        head.append((f"  {change.model}", "dim"))
    if change.cost:
        head.append((f"  {change.cost} credits", ""))
    lines = [head, [(f"        {change.reason}", "dim")]]
    if change.changed:
        lines += [
            [(f"        ~ {c.field}: {_value(c.old)} -> {_value(c.new)}", "")]
            for c in change.changed
        ]
    elif change.action is Action.CREATE and change.inputs is not None:
        derived = " (derived from the name)" if change.seed_derived else ""
        lines.append([(f"        prompt: {_value(change.inputs.get('prompt'))}", "")])
        lines.append([(f"        seed: {change.inputs.get('seed')}{derived}", "")])
    return lines


def _print_lines(console: Console, lines: list[_Line]) -> None:
    # One write for the whole block: rich costs most of a millisecond per print() call, which
    # was five of the six seconds of a 10,000-image plan.
    if console.color_system is None:
        console.file.write("".join("".join(t for t, _ in line) + "\n" for line in lines))
        return
    text = Text()
    for line in lines:
        for piece, style in line:
            text.append(piece, style=style or None)
        text.append("\n")
    console.print(text, end="")


def plan(console: Console, plan_: Plan) -> None:
    """Print a plan the way Terraform users read one: blocks, legend, summary."""
    pending = plan_.pending
    if not pending:
        images = len(plan_.changes)
        console.print(
            f"[green]No changes.[/] {images} image{'s are' if images != 1 else ' is'} up to date."
        )
        return
    console.print("ltx-reconcile will perform the following actions:\n")
    _print_lines(console, [line for change in pending for line in _change_lines(change)])
    used = [a for a in _ORDER if plan_.counts.get(a, 0)]
    legend = "  ".join(f"{SYMBOLS[a]} {a.value}" for a in used)
    console.print(f"\n[dim]Legend: {legend}[/]")
    if plan_.skipped:
        console.print(f"[dim]{plan_.skipped} images left out by --target/--exclude.[/]")
    console.print(f"\n[bold]{summary_line(plan_)}[/]")
    for line in budget_lines(plan_):
        style = "bold red" if line.startswith("Over budget") else "dim"
        console.print(f"[{style}]{escape(line)}[/]")
    if plan_.restorable:
        count = plan_.restorable
        objects = "1 stored object is" if count == 1 else f"{count} stored objects are"
        console.print(
            f"[yellow]{objects} missing but can be restored at no cost from their output "
            "files: run `ltx-reconcile verify --repair` before applying.[/]"
        )
    if plan_.blocked:
        console.print(
            f"[bold red]{len(plan_.blocked)} change(s) are blocked; apply will refuse them.[/]"
        )


def _credits(amount: float) -> str:
    return f"{amount:.0f}" if amount == int(amount) else f"{amount:.2f}"


def budget_lines(plan_: Plan) -> list[str]:
    """The estimate against the specs' budget, a line per limit, then a verdict when over.

    Plain text (no markup), for the terminal and for the pull-request comment alike.
    """
    budget = plan_.budget
    if budget is None:
        return []
    cost, over = plan_.total_cost, plan_.over_budget
    lines = []
    if budget.per_apply is not None:
        excess = f" (over by {cost - budget.per_apply})" if "budget.per_apply" in over else ""
        lines.append(f"Budget per apply: {cost} of {budget.per_apply} credits{excess}.")
    if budget.per_day is not None:
        total = budget.spent_today + cost
        excess = (
            f" (over by {_credits(total - budget.per_day)})" if "budget.per_day" in over else ""
        )
        lines.append(
            f"Budget per day ({budget.day} UTC): {_credits(budget.spent_today)} spent today "
            f"+ {cost} planned = {_credits(total)} of {budget.per_day} credits{excess}."
        )
    if over:
        lines.append(
            f"Over budget ({', '.join(over)}): apply would submit only what fits and stop there."
        )
    return lines


def _stopped_by(summary: ApplySummary) -> str:
    limit, budget = summary.limit, summary.budget
    assert limit is not None  # noqa: S101 - only called with a limit
    if limit.source == "--max-cost":
        return f"Stopped by --max-cost {limit.credits}."
    if limit.source == "budget.per_apply":
        return f"Stopped by budget.per_apply: {limit.credits} credits per apply."
    assert budget is not None  # noqa: S101 - a per_day limit comes from a budget
    return (
        f"Stopped by budget.per_day: {budget.per_day} credits on {budget.day} (UTC), "
        f"{_credits(budget.spent_today)} of them spent before this apply."
    )


def apply_summary(console: Console, summary: ApplySummary, paths: WorkspacePaths) -> None:
    """The final lines of an apply: what happened to how many images, and the money."""
    limit = f" of a {summary.max_cost} limit" if summary.max_cost is not None else ""
    head = "Apply stopped" if summary.interrupted else "Apply complete"
    counts = (
        f"{len(summary.generated)} generated, {len(summary.reused)} reused, "
        f"{len(summary.moved)} moved, {len(summary.resumed)} resumed, "
        f"{len(summary.deleted)} deleted, {len(summary.failed)} failed, "
        f"{len(summary.unknown)} unknown"
    )
    if summary.by_others:
        counts += f" ({len(summary.by_others)} more made by other applies of this state)"
    console.print(f"\n[bold]{head}:[/] {counts}. Spent {summary.spent} credits{limit}.")
    for name, message in sorted(summary.failed.items()):
        console.print(f"  [red]failed[/] {escape(name)}: {escape(message)}")
    for name, message in sorted(summary.unknown.items()):
        console.print(f"  [yellow]unknown[/] {escape(name)}: {escape(message)}")
    if summary.over_budget:
        count = len(summary.over_budget)
        images = "1 image was" if count == 1 else f"{count} images were"
        console.print(f"  [yellow]{images} not submitted: the budget was reached.[/]")
        if summary.limit is not None:
            console.print(f"  [yellow]{escape(_stopped_by(summary))}[/]")
    for path in summary.outputs_kept:
        console.print(f"  [yellow]kept[/] {escape(path)}: changed by someone else, not overwritten")
    if summary.interrupted:
        console.print("Run `ltx-reconcile apply` again to resume; nothing paid for is sent twice.")
    elif summary.fatal is not None:
        console.print(f"[red]Stopped submitting:[/] {escape(str(summary.fatal))}")
    done = (
        summary.generated or summary.reused or summary.moved or summary.resumed or summary.by_others
    )
    if done:
        console.print(
            f"Images are in {paths.display(paths.root / 'out')}/ (see each spec's output)."
        )
