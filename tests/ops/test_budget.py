"""Budgets through the CLI: plan measures the estimate against them, apply stops at them.

A spec's `budget` sets `per_apply` and `per_day` (credits). `plan` prints the estimate
against each and exits 7 when it would pass one; `apply` submits nothing past the tightest
of `--max-cost`, `per_apply` and what `per_day` leaves of the UTC day, keeps everything
already paid for, and exits 7. Every command is a real child process against the emulator,
whose ledger is the proof of what was paid. Every image here is flux: 28 credits.
"""

from __future__ import annotations

import json
import time

import pytest

from ltx_reconcile.apply_result import BudgetStatus, SpendLimit, tightest_limit, utc_day
from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.errors import ExitCode
from ltx_reconcile.plan.document import PlanDocument, from_plan, to_plan
from ltx_reconcile.plan.model import Action, Change, Plan
from ltx_reconcile.state.store import StateStore
from testing.workspace import CliWorkspace

ANIMALS = ("cat", "dog", "owl", "fox", "elk", "yak")


def images(*names: str) -> str:
    """An `images` section with one distinct flux image per name."""
    lines = ["images:"]
    for seed, name in enumerate(names, start=1):
        lines += [f"  {name}:", f"    prompt: a {name} in the snow", f"    seed: {seed}"]
    return "\n".join(lines) + "\n"


def budget(**limits: int) -> str:
    """A `budget` section with the given limits."""
    return "budget:\n" + "".join(f"  {field}: {value}\n" for field, value in limits.items())


def today() -> str:
    """The UTC day budgets count now."""
    day, _start = utc_day(time.time())
    return day


def test_plan_over_the_per_apply_budget_prints_the_figures_and_exits_7(
    workspace: CliWorkspace,
) -> None:
    """Three images (84 credits) against per_apply 60: the plan is shown in full, then the
    budget lines, and the exit is 7 with or without --detailed-exitcode."""
    workspace.specs(budget(per_apply=60) + images("cat", "dog", "owl"))

    plan = workspace.run("plan")

    assert plan.returncode == ExitCode.OVER_BUDGET, plan.stderr
    assert plan.stdout.splitlines()[-3:] == [
        "Plan: 3 to create, 0 to replace, 0 to delete. Estimated cost: 84 credits (flux 84).",
        "Budget per apply: 84 of 60 credits (over by 24).",
        "Over budget (budget.per_apply): apply would submit only what fits and stop there.",
    ]
    assert workspace.run("plan", "--detailed-exitcode").returncode == ExitCode.OVER_BUDGET
    document = json.loads(workspace.run("plan", "--json").stdout)
    assert document["budget"] == {
        "per_apply": 60,
        "per_day": None,
        "day": today(),
        "spent_today": 0.0,
        "left_today": None,
        "over": ["budget.per_apply"],
    }
    assert not workspace.state_path.exists()


def test_plan_within_budget_exits_as_without_one(workspace: CliWorkspace) -> None:
    """Under both limits the figures are printed and the exit code is the usual one."""
    workspace.specs(budget(per_apply=100, per_day=1000) + images("cat", "dog"))

    plan = workspace.run("plan", "--detailed-exitcode")

    assert plan.returncode == ExitCode.CHANGES, plan.stderr
    assert plan.stdout.splitlines()[-2:] == [
        "Budget per apply: 56 of 100 credits.",
        f"Budget per day ({today()} UTC): 0 spent today + 56 planned = 56 of 1000 credits.",
    ]


def test_per_day_counts_what_the_ledger_recorded_today_and_not_before(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """56 credits spent today by an apply, and 1000 spent yesterday (a line written into the
    ledger before today's UTC midnight): two more images pass per_day 100 by 12."""
    workspace.specs(images("cat", "dog"))
    assert workspace.apply().returncode == ExitCode.OK
    _day, midnight = utc_day(time.time())
    with StateStore.open(workspace.state_path, clock=lambda: midnight - 1) as store:
        store.record_spend("job-yesterday", "k1:old", "old", "flux", 1000, "generation")
    workspace.specs(budget(per_day=100) + images("cat", "dog", "owl", "fox"))

    plan = workspace.run("plan", "--format", "markdown")
    human = workspace.run("plan")

    assert emulator.net_spend() == 56
    assert human.returncode == plan.returncode == ExitCode.OVER_BUDGET, human.stderr
    assert human.stdout.splitlines()[-2:] == [
        f"Budget per day ({today()} UTC): 56 spent today + 56 planned = 112 of 100 credits "
        "(over by 12).",
        "Over budget (budget.per_day): apply would submit only what fits and stop there.",
    ]
    assert (
        f"Budget per day ({today()} UTC): 56 spent today + 56 planned = 112 of 100 credits "
        "(over by 12)." in plan.stdout
    )


def test_a_budget_stop_mid_apply_keeps_every_paid_image_and_a_raised_budget_pays_for_the_rest(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """Six images under per_apply 84: three are paid, fetched and recorded, three are not
    sent (exit 7, the summary names the limit); after raising the budget, the next apply
    pays for exactly the other three."""
    workspace.specs(budget(per_apply=84) + images(*ANIMALS))

    stopped = workspace.apply()

    assert stopped.returncode == ExitCode.OVER_BUDGET, stopped.stdout + stopped.stderr
    assert stopped.stdout.splitlines()[-4:-1] == [
        "Apply complete: 3 generated, 0 reused, 0 moved, 0 resumed, 0 deleted, 0 failed, "
        "0 unknown. Spent 84 credits of a 84 limit.",
        "  3 images were not submitted: the budget was reached.",
        "  Stopped by budget.per_apply: 84 credits per apply.",
    ]
    assert emulator.net_spend() == 84
    # Every charge is journaled, fetched, and recorded as an image: nothing paid is lost.
    assert workspace.net_charges_by_key(emulator.ledger()) == dict.fromkeys(
        workspace.image_keys(), 1
    )
    assert [row.state for row in workspace.journal()] == ["fetched"] * 3
    assert len(workspace.images()) == 3
    assert workspace.output_problems() == []

    workspace.specs(budget(per_apply=200) + images(*ANIMALS))
    rest = workspace.apply()

    assert rest.returncode == ExitCode.OK, rest.stdout + rest.stderr
    assert "Apply complete: 3 generated" in rest.stdout
    assert emulator.net_spend() == 6 * 28
    assert sorted(workspace.images()) == sorted(ANIMALS)
    assert workspace.net_charges_by_key(emulator.ledger()) == dict.fromkeys(
        workspace.image_keys(), 1
    )


def test_apply_stops_at_what_per_day_leaves_today_and_says_so(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """56 credits already spent today under per_day 100 leave 44: one more image is paid
    for, and the summary names per_day, the day and the earlier spend."""
    workspace.specs(images("cat", "dog"))
    assert workspace.apply().returncode == ExitCode.OK
    workspace.specs(budget(per_apply=500, per_day=100) + images("cat", "dog", "owl", "fox"))

    stopped = workspace.apply("--max-cost", "1000")

    assert stopped.returncode == ExitCode.OVER_BUDGET, stopped.stdout + stopped.stderr
    assert stopped.stdout.splitlines()[-4:-1] == [
        "Apply complete: 1 generated, 0 reused, 0 moved, 0 resumed, 0 deleted, 0 failed, "
        "0 unknown. Spent 28 credits of a 44 limit.",
        "  1 image was not submitted: the budget was reached.",
        f"  Stopped by budget.per_day: 100 credits on {today()} (UTC), 56 of them spent "
        "before this apply.",
    ]
    assert emulator.net_spend() == 84 <= 100


def test_max_cost_below_the_budget_is_the_limit_apply_names(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """--max-cost tighter than every budget limit is the one that stops apply."""
    workspace.specs(budget(per_apply=500, per_day=1000) + images("cat", "dog"))

    stopped = workspace.apply("--max-cost", "30")

    assert stopped.returncode == ExitCode.OVER_BUDGET, stopped.stdout + stopped.stderr
    assert "  Stopped by --max-cost 30." in stopped.stdout.splitlines()
    assert emulator.net_spend() == 28


@pytest.mark.parametrize(
    ("max_cost", "status", "expected"),
    [
        (None, None, None),
        (90, None, SpendLimit(90, "--max-cost")),
        (None, BudgetStatus(None, None, "2023-11-14", 0.0), None),
        (90, BudgetStatus(60, 500, "2023-11-14", 0.0), SpendLimit(60, "budget.per_apply")),
        (90, BudgetStatus(60, 100, "2023-11-14", 56.0), SpendLimit(44, "budget.per_day")),
        (None, BudgetStatus(None, 100, "2023-11-14", 140.0), SpendLimit(0, "budget.per_day")),
        (60, BudgetStatus(60, 60, "2023-11-14", 0.0), SpendLimit(60, "--max-cost")),
        (None, BudgetStatus(60, 60, "2023-11-14", 0.0), SpendLimit(60, "budget.per_apply")),
    ],
)
def test_the_limit_is_the_tightest_set_and_a_tie_names_the_flag_then_per_apply(
    max_cost, status, expected
):
    """Unset limits are ignored; per_day counts only what is left today, never below 0."""
    assert tightest_limit(max_cost, status) == expected


def test_a_budget_day_is_the_utc_calendar_day():
    """Days start at 00:00 UTC: the last second before midnight is the day before."""
    assert utc_day(1_699_920_000.0) == ("2023-11-14", 1_699_920_000.0)
    assert utc_day(1_700_006_399.5) == ("2023-11-14", 1_699_920_000.0)
    assert utc_day(1_699_919_999.0) == ("2023-11-13", 1_699_833_600.0)


def test_the_plan_document_carries_the_budget_and_still_reads_documents_without_it():
    """A saved plan round-trips its budget figures; one written before `budget` and
    `protect_update` existed still reads, as no budget and no protect update."""
    change = Change("cat", Action.CREATE, "new image", "k1:" + "0" * 64, model="flux", cost=28)
    status = BudgetStatus(per_apply=20, per_day=100, day="2023-11-14", spent_today=90.0)
    plan = Plan(None, 0, "0" * 64, (change,), budget=status)
    document = from_plan(plan, tool_version="test")
    assert (document.budget and document.budget.model_dump()) == {
        "per_apply": 20,
        "per_day": 100,
        "day": "2023-11-14",
        "spent_today": 90.0,
        "left_today": 10,
        "over": ["budget.per_apply", "budget.per_day"],
    }
    assert to_plan(PlanDocument.model_validate_json(document.model_dump_json())) == plan

    older = json.loads(document.model_dump_json())
    del older["budget"], older["changes"][0]["protect_update"]
    assert to_plan(PlanDocument.model_validate(older)) == Plan(None, 0, "0" * 64, (change,))
