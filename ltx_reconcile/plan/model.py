"""What a plan is: one change per image, each with an action, a reason and a cost.

In-process values are frozen dataclasses, built 10,000 at a time by the planner's hot loop
without re-validation. The pydantic document that crosses the process boundary (`--json`,
saved plan files) lives in `plan/document.py` and is built from these.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, NamedTuple

from ltx_reconcile.apply_result import BudgetStatus, LimitSource

__all__ = [
    "COSTED_ACTIONS",
    "SYMBOLS",
    "Action",
    "Change",
    "FieldChange",
    "Plan",
]


class Action(StrEnum):
    """What apply will do for one image."""

    CREATE = "create"
    """New key, nothing stored for it: generate (costed)."""
    REPLACE = "replace"
    """The image's key changed, or `--replace` asked for a new attempt: generate (costed)."""
    NOOP = "no-op"
    """Up to date: nothing to do."""
    MOVE = "move"
    """Same key under a new name: re-point and re-materialise (free)."""
    REUSE = "reuse"
    """An artifact for this key is already stored, or made earlier in this apply (free)."""
    RESUME = "resume"
    """A job already paid for is still open in the journal: follow it (free)."""
    REFETCH = "refetch"
    """The recorded artifact is missing from the store: generate again (costed)."""
    DELETE = "delete"
    """No longer in the specs: stop tracking, remove the named file; the object stays until gc."""
    BLOCKED = "blocked"
    """The change is needed but not allowed (e.g. a protected image would be replaced)."""


SYMBOLS: Final[Mapping[Action, str]] = {
    Action.CREATE: "+",
    Action.REPLACE: "-/+",
    Action.NOOP: " ",
    Action.MOVE: "~>",
    Action.REUSE: "=",
    Action.RESUME: ">",
    Action.REFETCH: "<=",
    Action.DELETE: "-",
    Action.BLOCKED: "!",
}
"""The display symbol of each action, Terraform's where Terraform has one."""

COSTED_ACTIONS: Final = frozenset({Action.CREATE, Action.REPLACE, Action.REFETCH})


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One generation input that differs between the state and the specs."""

    field: str
    old: object
    new: object


class Change(NamedTuple):
    """The planned action for one image address, with everything needed to show and run it.

    An immutable `NamedTuple`, not a frozen dataclass: a plan builds one per image, and a
    frozen dataclass's field-by-field `object.__setattr__` made that a tenth of a warm plan.
    """

    image: str
    action: Action
    reason: str
    key: str | None
    """The new generation key; None while it depends on an image generated in this apply."""
    old_key: str | None = None
    model: str | None = None
    cost: int = 0
    """Credits this change is expected to spend (0 for free actions)."""
    inputs: Mapping[str, object] | None = None
    """The generation inputs after the change (None for a delete)."""
    old_inputs: Mapping[str, object] | None = None
    changed: tuple[FieldChange, ...] = ()
    output: str | None = None
    source: str | None = None
    """Where the image is declared (file:line:column)."""
    moved_from: str | None = None
    reuse_digest: str | None = None
    """For reuse and move: the stored artifact the image will point at."""
    reuse_of: str | None = None
    """For reuse within this apply: the image whose generation is shared."""
    depends_on: str | None = None
    """The image this one's reference names, when that image is generated in this apply."""
    seed_derived: bool = False
    protect_update: bool | None = None
    """For a no-op whose spec's `protect` differs from the state's: the value apply records
    (free, no generation). None otherwise: other actions record the spec's value anyway."""


@dataclass(frozen=True, slots=True)
class Plan:
    """The diff between the specs and the state, bound to both by digest and serial."""

    lineage: str | None
    serial: int
    specs_digest: str
    changes: tuple[Change, ...]
    """Every image's change, no-ops included, by image address; deletes last, by address."""
    skipped: int = 0
    """Images left out by --target/--exclude."""
    options: Mapping[str, object] = field(default_factory=dict)
    """The options the plan was made with (targets, excludes, replace), for saved plans."""
    budget: BudgetStatus | None = None
    """The specs' budget and the day's spend so far; None when the specs set no budget."""
    restorable: int = 0
    """Objects refetches would pay for that `verify --repair` restores free from output
    files; counted by the workspace, which reads files (the planner reads none)."""

    @property
    def pending(self) -> tuple[Change, ...]:
        """The changes that make apply do something (a protect update included)."""
        return tuple(c for c in self.changes if _is_pending(c))

    @property
    def has_changes(self) -> bool:
        """True when apply would do anything at all."""
        return any(_is_pending(c) for c in self.changes)

    @property
    def over_budget(self) -> tuple[LimitSource, ...]:
        """The budget limits the estimated cost would pass (empty: within budget, or none)."""
        return () if self.budget is None else self.budget.passed_by(self.total_cost)

    @property
    def counts(self) -> Mapping[Action, int]:
        """How many images each action applies to."""
        return Counter(c.action for c in self.changes)

    @property
    def cost_by_model(self) -> Mapping[str, int]:
        """Estimated credits per model, for costed actions only."""
        totals: Counter[str] = Counter()
        for change in self.changes:
            if change.cost and change.model is not None:
                totals[change.model] += change.cost
        return dict(sorted(totals.items()))

    @property
    def total_cost(self) -> int:
        """Estimated credits for the whole plan."""
        return sum(c.cost for c in self.changes)

    @property
    def blocked(self) -> tuple[Change, ...]:
        """Changes apply will refuse."""
        return tuple(c for c in self.changes if c.action is Action.BLOCKED)


def _is_pending(change: Change) -> bool:
    return change.action is not Action.NOOP or change.protect_update is not None
