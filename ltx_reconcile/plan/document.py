"""The plan document: the versioned JSON form of a plan (`plan --json`, saved plan files).

This is a boundary, so it is pydantic with `extra="forbid"`: a saved plan written by another
format version, or edited by hand into something else, is refused rather than guessed at.
The format is documented in docs/plan-format.md; `FORMAT_VERSION` changes whenever a field's
meaning does. Fields added since (`budget`, `protect_update`) have defaults, so a document
written before them still reads, with the same meaning.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict

from ltx_reconcile.apply_result import BudgetStatus
from ltx_reconcile.plan.model import Action, Change, FieldChange, Plan

__all__ = ["FORMAT_VERSION", "ChangeDocument", "PlanDocument", "from_plan", "to_plan"]

FORMAT_VERSION: Final = "1"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldChangeDocument(_Frozen):
    """One changed generation input: `field` went from `old` to `new`."""

    field: str
    old: object
    new: object


class ChangeDocument(_Frozen):
    """One image's planned action, with the inputs before and after."""

    image: str
    action: Action
    reason: str
    key: str | None
    old_key: str | None = None
    model: str | None = None
    cost: int = 0
    before: dict[str, object] | None = None
    after: dict[str, object] | None = None
    changed: list[FieldChangeDocument] = []
    output: str | None = None
    source: str | None = None
    moved_from: str | None = None
    reuse_digest: str | None = None
    reuse_of: str | None = None
    depends_on: str | None = None
    seed_derived: bool = False
    protect_update: bool | None = None


class CostDocument(_Frozen):
    """Estimated credits: the total and per model (prices from the contract, E40)."""

    total: int
    by_model: dict[str, int]


class BudgetDocument(_Frozen):
    """The specs' budget against the plan's estimate and the UTC day's spend so far."""

    per_apply: int | None
    per_day: int | None
    day: str
    spent_today: float
    left_today: int | None
    """Informational (`per_day` minus `spent_today`, floored, never negative); not read."""
    over: list[str]
    """The limits the estimate passes: `budget.per_apply`, `budget.per_day`; informational."""


class PlanDocument(_Frozen):
    """A whole plan, bound to the state (lineage, serial) and specs (digest) it came from."""

    format_version: Literal["1"]
    tool_version: str
    lineage: str | None
    serial: int
    specs_digest: str
    options: dict[str, list[str]]
    summary: dict[str, int]
    """How many images each action applies to (no-op included), plus `skipped`."""
    cost: CostDocument
    budget: BudgetDocument | None = None
    """None when the specs set no budget."""
    changes: list[ChangeDocument]


def _change_document(change: Change) -> ChangeDocument:
    return ChangeDocument(
        image=change.image,
        action=change.action,
        reason=change.reason,
        key=change.key,
        old_key=change.old_key,
        model=change.model,
        cost=change.cost,
        before=dict(change.old_inputs) if change.old_inputs is not None else None,
        after=dict(change.inputs) if change.inputs is not None else None,
        changed=[FieldChangeDocument(field=f.field, old=f.old, new=f.new) for f in change.changed],
        output=change.output,
        source=change.source,
        moved_from=change.moved_from,
        reuse_digest=change.reuse_digest,
        reuse_of=change.reuse_of,
        depends_on=change.depends_on,
        seed_derived=change.seed_derived,
        protect_update=change.protect_update,
    )


def _budget_document(plan: Plan) -> BudgetDocument | None:
    budget = plan.budget
    if budget is None:
        return None
    return BudgetDocument(
        per_apply=budget.per_apply,
        per_day=budget.per_day,
        day=budget.day,
        spent_today=budget.spent_today,
        left_today=budget.left_today,
        over=list(plan.over_budget),
    )


def from_plan(plan: Plan, *, tool_version: str) -> PlanDocument:
    """The document for `plan`."""
    summary = {action.value: plan.counts.get(action, 0) for action in Action}
    summary["skipped"] = plan.skipped
    return PlanDocument(
        format_version=FORMAT_VERSION,
        tool_version=tool_version,
        lineage=plan.lineage,
        serial=plan.serial,
        specs_digest=plan.specs_digest,
        options={k: list(v) for k, v in plan.options.items()},  # type: ignore[call-overload]
        summary=summary,
        cost=CostDocument(total=plan.total_cost, by_model=dict(plan.cost_by_model)),
        budget=_budget_document(plan),
        changes=[_change_document(c) for c in plan.changes],
    )


def to_plan(document: PlanDocument) -> Plan:
    """The in-process plan a document describes."""
    changes = tuple(
        Change(
            image=c.image,
            action=c.action,
            reason=c.reason,
            key=c.key,
            old_key=c.old_key,
            model=c.model,
            cost=c.cost,
            inputs=c.after,
            old_inputs=c.before,
            changed=tuple(FieldChange(f.field, f.old, f.new) for f in c.changed),
            output=c.output,
            source=c.source,
            moved_from=c.moved_from,
            reuse_digest=c.reuse_digest,
            reuse_of=c.reuse_of,
            depends_on=c.depends_on,
            seed_derived=c.seed_derived,
            protect_update=c.protect_update,
        )
        for c in document.changes
    )
    budget = document.budget
    return Plan(
        lineage=document.lineage,
        serial=document.serial,
        specs_digest=document.specs_digest,
        changes=changes,
        skipped=document.summary.get("skipped", 0),
        options=document.options,
        budget=None
        if budget is None
        else BudgetStatus(budget.per_apply, budget.per_day, budget.day, budget.spent_today),
    )
