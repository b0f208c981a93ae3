"""`plan --format markdown`: the pull-request comment, compared whole.

The CLI's output is compared for real plans (an apply, then edited specs); the corners a
real plan rarely reaches (hostile names, a thousand changes) use hand-built plans.
"""

from __future__ import annotations

from ltx_reconcile.cli.markdown import MAX_LISTED, plan_markdown
from ltx_reconcile.errors import ExitCode
from ltx_reconcile.plan.model import Action, Change, FieldChange, Plan
from tests.plan.project import ORIGINAL, lines


def comment(project, capsys, *args: str) -> str:
    """What `plan --format markdown ARGS` prints on stdout; stderr must stay empty."""
    capsys.readouterr()
    assert project.run("plan", "--format", "markdown", *args) == ExitCode.OK
    out, err = capsys.readouterr()
    assert err == ""
    return out


EDITED_COMMENT = """
    **Plan: 1 to create, 1 to replace, 1 to delete. Estimated cost: 56 credits (flux 56).**

    | model | images | credits |
    |:--|--:|--:|
    | flux | 2 | 56 |
    | **total** | **2** | **56** |

    <details><summary>3 changes</summary>

    - `-/+` **replace** `hero` (flux, 28 credits): generation inputs changed
      - `aspectRatio`: `"16:9"` -> `"1:1"`
      - `prompt`: `"A knight in silver armour"` -> `"A knight in golden armour"`
    - `+` **create** `squire` (flux, 28 credits): new image
      - `prompt`: `"A squire carrying a shield"`
      - `seed`: `6`
    - `-` **delete** `castle`: no longer in the specs; the stored object stays until gc

    </details>
"""


def test_the_comment_leads_with_the_summary_then_costs_then_collapsed_changes(edited, capsys):
    """Summary line, cost per model, then one entry per change with its inputs old -> new."""
    assert comment(edited, capsys) == lines(EDITED_COMMENT)


BLOCKED_COMMENT = """
    **Plan: 1 to create, 1 to replace, 1 to delete, 1 blocked. Estimated cost: 56 credits (flux 56).**

    > [!CAUTION]
    > **1 change is blocked: `ltx-reconcile apply` will refuse this plan.**
    > - `villain`: protected (protect: true), but it would be replaced: generation inputs changed

    | model | images | credits |
    |:--|--:|--:|
    | flux | 2 | 56 |
    | **total** | **2** | **56** |

    <details><summary>4 changes</summary>

    - `-/+` **replace** `hero` (flux, 28 credits): generation inputs changed
      - `aspectRatio`: `"16:9"` -> `"1:1"`
      - `prompt`: `"A knight in silver armour"` -> `"A knight in golden armour"`
    - `+` **create** `squire` (flux, 28 credits): new image
      - `prompt`: `"A squire carrying a shield"`
      - `seed`: `6`
    - `!` **blocked** `villain` (flux): protected (protect: true), but it would be replaced: generation inputs changed
      - `prompt`: `"A red dragon"` -> `"A green dragon"`
    - `-` **delete** `castle`: no longer in the specs; the stored object stays until gc

    </details>
"""


def test_a_blocked_change_is_an_alert_above_the_fold(edited, capsys):
    """The one thing a reviewer must not miss comes before the costs and the details."""
    edited.specs(edited.root.joinpath("specs/a.yaml").read_text().replace("red", "green"))
    assert comment(edited, capsys) == lines(BLOCKED_COMMENT)


RESUME_COMMENT = """
    **Plan: 0 to create, 0 to replace, 1 to resume, 0 to delete. Estimated cost: 0 credits.**

    > [!WARNING]
    > **1 image has a job that may already be paid for: apply follows it, it does not pay again.**
    > - `hero`: an earlier create was sent but its answer was lost; apply recovers the job

    <details><summary>1 change</summary>

    - `>` **resume** `hero` (flux): an earlier create was sent but its answer was lost; apply recovers the job

    </details>
"""


def test_an_image_that_may_be_paid_for_is_an_alert_and_costs_nothing(applied, capsys):
    """A journaled create whose answer was lost: resumed, free, and no cost table."""
    project = applied(ORIGINAL)
    project.specs(ORIGINAL.replace("silver", "golden"))
    project.journal_intent("hero", project.changes()["hero"].key)
    assert comment(project, capsys) == lines(RESUME_COMMENT)


def test_an_up_to_date_project_is_one_line(applied, capsys):
    """No alerts, no table, no details."""
    project = applied(ORIGINAL)
    assert comment(project, capsys) == "**No changes.** 3 images are up to date.\n"


def test_a_selection_says_how_many_images_it_left_out(edited, capsys):
    """--target is easy to forget on a CI job: the comment counts what it skipped."""
    assert comment(edited, capsys, "--target", "squire") == lines(
        """
        **Plan: 1 to create, 0 to replace, 0 to delete. Estimated cost: 28 credits (flux 28).**

        | model | images | credits |
        |:--|--:|--:|
        | flux | 1 | 28 |
        | **total** | **1** | **28** |

        3 images left out by `--target`/`--exclude`.

        <details><summary>1 change</summary>

        - `+` **create** `squire` (flux, 28 credits): new image
          - `prompt`: `"A squire carrying a shield"`
          - `seed`: `6`

        </details>
        """
    )


def test_text_from_specs_cannot_break_the_layout():
    """Backticks, HTML and brackets in names, reasons and values are shown as written."""
    change = Change(
        "ranger[seed=11,mood=calm]",
        Action.REPLACE,
        "its reference <hero> is *regenerated*",
        "k1:0",
        model="flux",
        cost=28,
        changed=(
            FieldChange("prompt", "A `quoted` knight", "A <b>bold</b>\nknight | sword"),
            FieldChange("location", None, "x" * 250),
        ),
    )
    assert plan_markdown(Plan(None, 1, "0" * 64, (change,))) == lines(
        f"""
        **Plan: 0 to create, 1 to replace, 0 to delete. Estimated cost: 28 credits (flux 28).**

        | model | images | credits |
        |:--|--:|--:|
        | flux | 1 | 28 |
        | **total** | **1** | **28** |

        <details><summary>1 change</summary>

        - `-/+` **replace** `ranger[seed=11,mood=calm]` (flux, 28 credits): its reference \\<hero\\> is \\*regenerated\\*
          - `prompt`: ``"A `quoted` knight"`` -> `"A <b>bold</b>\\nknight | sword"`
          - `location`: `(none)` -> `"{"x" * 197}..."`

        </details>
        """
    )


def test_a_huge_plan_lists_the_first_changes_and_counts_the_rest():
    """A comment has a size limit: the details stop after MAX_LISTED entries."""
    changes = tuple(
        Change(f"tile-{i:04d}", Action.CREATE, "new image", f"k1:{i}", model="flux", cost=28)
        for i in range(MAX_LISTED + 5)
    )
    text = plan_markdown(Plan(None, 0, "0" * 64, changes))
    entries = [line for line in text.splitlines() if line.startswith("- ")]
    assert entries[0] == "- `+` **create** `tile-0000` (flux, 28 credits): new image"
    assert entries[MAX_LISTED - 1].startswith(f"- `+` **create** `tile-{MAX_LISTED - 1:04d}`")
    assert entries[MAX_LISTED:] == ["- … and 5 more: run `ltx-reconcile plan` to see them all"]
    assert f"<summary>{MAX_LISTED + 5} changes</summary>" in text
    assert len(text) < 65_536
