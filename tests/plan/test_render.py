"""The human plan, as a terminal shows it: whole lines, no colour, 100 columns."""

from __future__ import annotations

from io import StringIO

from ltx_reconcile.cli import render
from ltx_reconcile.errors import ExitCode
from tests.plan.project import ORIGINAL, lines


def rendered(plan) -> str:
    """`plan` as `ltx-reconcile plan` prints it, on a 100-column terminal without colour."""
    out = StringIO()
    render.plan(render.Console(file=out, width=100, color_system=None), plan)
    return out.getvalue()


EDITED_PLAN = """
    ltx-reconcile will perform the following actions:

      -/+ replace  hero  flux  28 credits
            generation inputs changed
            ~ aspectRatio: "16:9" -> "1:1"
            ~ prompt: "A knight in silver armour" -> "A knight in golden armour"
        + create   squire  flux  28 credits
            new image
            prompt: "A squire carrying a shield"
            seed: 6
        - delete   castle
            no longer in the specs; the stored object stays until gc

    Legend: + create  -/+ replace  - delete

    Plan: 1 to create, 1 to replace, 1 to delete. Estimated cost: 56 credits (flux 56).
"""


def test_a_plan_shows_each_create_replace_and_delete_with_the_summary_last(edited):
    """Symbol, action, image, model and cost; the reason; what changed, old -> new."""
    assert rendered(edited.plan()) == lines(EDITED_PLAN)


def test_plan_prints_the_same_lines_on_stdout(edited, capsys):
    """The command renders exactly that, on stdout, and nothing on stderr."""
    capsys.readouterr()
    assert edited.run("plan") == ExitCode.OK
    assert capsys.readouterr() == (lines(EDITED_PLAN), "")


def test_an_up_to_date_project_prints_one_line(applied, capsys):
    """No actions, no legend: how many images are up to date."""
    project = applied(ORIGINAL)
    capsys.readouterr()
    assert project.run("plan") == ExitCode.OK
    assert capsys.readouterr().out == "No changes. 3 images are up to date.\n"


def test_a_selection_says_how_many_images_it_left_out(edited):
    """--target and --exclude are easy to forget: the plan counts what they skipped."""
    assert rendered(edited.plan(targets=("squire",))) == lines(
        """
        ltx-reconcile will perform the following actions:

            + create   squire  flux  28 credits
                new image
                prompt: "A squire carrying a shield"
                seed: 6

        Legend: + create
        3 images left out by --target/--exclude.

        Plan: 1 to create, 0 to replace, 0 to delete. Estimated cost: 28 credits (flux 28).
        """
    )


def test_a_blocked_change_is_flagged_under_the_summary(edited):
    """A protected image that would be replaced: its change, and a closing warning line."""
    edited.specs(edited.root.joinpath("specs/a.yaml").read_text().replace("red", "green"))
    assert rendered(edited.plan(targets=("villain",))) == lines(
        """
        ltx-reconcile will perform the following actions:

            ! blocked  villain  flux
                protected (protect: true), but it would be replaced: generation inputs changed
                ~ prompt: "A red dragon" -> "A green dragon"

        Legend: ! blocked
        3 images left out by --target/--exclude.

        Plan: 0 to create, 0 to replace, 0 to delete, 1 blocked. Estimated cost: 0 credits.
        1 change(s) are blocked; apply will refuse them.
        """
    )
