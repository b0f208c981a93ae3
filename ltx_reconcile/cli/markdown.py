"""A plan as a pull-request comment (`plan --format markdown`), in GitHub-flavoured Markdown.

A reviewer reads the summary line first, then anything apply will refuse (blocked) or that
may already be paid for (resume), each in an alert above the fold, then the cost per
model; the change-by-change list (action, image, reason, inputs old -> new) sits in a
collapsed `<details>` section. Text that comes from specs (image names, prompts) is
escaped or put in code spans, so it cannot break the comment's layout. A comment has a
size limit (65,536 characters on GitHub), so long lists are cut with a count of the rest.
Pure: a plan in, a string out; nothing here prints or reads files.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable
from typing import Final

from ltx_reconcile.cli.render import budget_lines, summary_line
from ltx_reconcile.plan.model import SYMBOLS, Action, Change, Plan

__all__ = ["plan_markdown"]

MAX_LISTED: Final = 100
"""Changes listed in the details section: about 30,000 characters, half a comment."""
MAX_ALERTED: Final = 20
"""Images named in each alert; the details section lists the rest."""
_MAX_VALUE_CHARS: Final = 200

# Enough for text inside a line: the characters that open emphasis, code, links or HTML.
_MARKDOWN_SPECIALS: Final = re.compile(r"([\\`*_\[\]<>|~])")


def plan_markdown(plan: Plan) -> str:
    """The whole comment for `plan`, ending in a newline.

    An up-to-date plan is one line, `**No changes.** N images are up to date.`
    """
    if not plan.has_changes:
        images = len(plan.changes)
        noun = "image is" if images == 1 else "images are"
        return f"**No changes.** {images} {noun} up to date.\n"
    blocks = [
        f"**{summary_line(plan)}**",
        *_alerts(plan),
        *_cost_table(plan),
        *_budget(plan),
        *_skipped(plan.skipped),
        _details(plan.pending),
    ]
    return "\n\n".join(block for block in blocks if block) + "\n"


def _alerts(plan: Plan) -> list[str]:
    blocked = plan.blocked
    resumed = [c for c in plan.pending if c.action is Action.RESUME]
    alerts = []
    if blocked:
        count = _count(len(blocked), "change is", "changes are")
        alerts.append(
            _alert(
                "CAUTION", f"{count} blocked: `ltx-reconcile apply` will refuse this plan.", blocked
            )
        )
    if resumed:
        count = _count(len(resumed), "image has", "images have")
        alerts.append(
            _alert(
                "WARNING",
                f"{count} a job that may already be paid for: apply follows it, "
                "it does not pay again.",
                resumed,
            )
        )
    return alerts


def _alert(kind: str, headline: str, changes: Iterable[Change]) -> str:
    listed = list(changes)
    lines = [f"> [!{kind}]", f"> **{headline}**"]
    lines += [f"> - {_code(c.image)}: {_escape(c.reason)}" for c in listed[:MAX_ALERTED]]
    if len(listed) > MAX_ALERTED:
        lines.append(f"> - and {len(listed) - MAX_ALERTED} more, listed below")
    return "\n".join(lines)


def _cost_table(plan: Plan) -> list[str]:
    if not plan.total_cost:
        return []
    images: Counter[str] = Counter(c.model for c in plan.changes if c.cost and c.model)
    lines = ["| model | images | credits |", "|:--|--:|--:|"]
    lines += [
        f"| {_escape(model)} | {images[model]} | {credits} |"
        for model, credits in plan.cost_by_model.items()
    ]
    lines.append(f"| **total** | **{sum(images.values())}** | **{plan.total_cost}** |")
    return ["\n".join(lines)]


def _budget(plan: Plan) -> list[str]:
    lines = budget_lines(plan)
    return ["  \n".join(_escape(line) for line in lines)] if lines else []


def _skipped(skipped: int) -> list[str]:
    if not skipped:
        return []
    return [f"{_count(skipped, 'image', 'images')} left out by `--target`/`--exclude`."]


def _details(pending: tuple[Change, ...]) -> str:
    lines = [f"<details><summary>{_count(len(pending), 'change', 'changes')}</summary>", ""]
    for change in pending[:MAX_LISTED]:
        lines += _entry(change)
    if len(pending) > MAX_LISTED:
        lines.append(
            f"- … and {len(pending) - MAX_LISTED} more: run `ltx-reconcile plan` to see them all"
        )
    lines += ["", "</details>"]
    return "\n".join(lines)


def _entry(change: Change) -> list[str]:
    symbol = SYMBOLS[change.action].strip()
    facts = [_escape(change.model)] if change.model else []
    if change.cost:
        facts.append(f"{change.cost} credits")
    about = f" ({', '.join(facts)})" if facts else ""
    lines = [
        f"- {_code(symbol)} **{change.action.value}** {_code(change.image)}{about}: "
        f"{_escape(change.reason)}"
    ]
    if change.changed:
        lines += [
            f"  - {_code(c.field)}: {_code(_value(c.old))} -> {_code(_value(c.new))}"
            for c in change.changed
        ]
    elif change.action is Action.CREATE and change.inputs is not None:
        derived = " (derived from the name)" if change.seed_derived else ""
        lines.append(f"  - `prompt`: {_code(_value(change.inputs.get('prompt')))}")
        lines.append(f"  - `seed`: {_code(_value(change.inputs.get('seed')))}{derived}")
    return lines


def _count(number: int, singular: str, plural: str) -> str:
    return f"{number} {singular if number == 1 else plural}"


def _value(value: object) -> str:
    if value is None:
        return "(none)"
    if not isinstance(value, str):
        return str(value)
    if len(value) > _MAX_VALUE_CHARS:
        value = value[: _MAX_VALUE_CHARS - 3] + "..."
    return json.dumps(value, ensure_ascii=False)


def _escape(text: str) -> str:
    """Plain text that Markdown and HTML show as written, on one line."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", " ".join(text.split()))


def _code(text: str) -> str:
    """`text` as an inline code span, whatever backticks or pipes it holds."""
    text = " ".join(text.split())
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"
