"""The machine-readable plan: `plan --json`, the versioned document (markdown: test_markdown.py)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from ltx_reconcile import __version__
from ltx_reconcile.errors import ExitCode
from ltx_reconcile.plan.document import FORMAT_VERSION, PlanDocument, from_plan, to_plan


def test_plan_json_is_a_plan_document_with_reasons_inputs_and_costs(edited, capsys):
    """It validates as the format-1 document and carries everything a reviewer needs."""
    capsys.readouterr()
    assert edited.run("plan", "--json") == ExitCode.OK
    out = capsys.readouterr().out
    document = PlanDocument.model_validate_json(out)
    snapshot = edited.snapshot()
    assert (document.format_version, document.tool_version) == (FORMAT_VERSION, __version__)
    assert (document.lineage, document.serial) == (snapshot.lineage, snapshot.serial)
    assert document.summary == {
        "create": 1,
        "replace": 1,
        "no-op": 1,
        "move": 0,
        "reuse": 0,
        "resume": 0,
        "refetch": 0,
        "delete": 1,
        "blocked": 0,
        "skipped": 0,
    }
    assert (document.cost.total, document.cost.by_model) == (56, {"flux": 56})
    changes = {change.image: change for change in document.changes}
    assert [(c.image, c.action.value, c.cost) for c in document.changes] == [
        ("hero", "replace", 28),
        ("squire", "create", 28),
        ("villain", "no-op", 0),
        ("castle", "delete", 0),
    ]
    assert all(change.reason for change in document.changes)
    hero = changes["hero"]
    assert hero.before == {
        "aspectRatio": "16:9",
        "model": "flux",
        "prompt": "A knight in silver armour",
        "seed": 3,
    }
    assert hero.after == {
        "aspectRatio": "1:1",
        "model": "flux",
        "prompt": "A knight in golden armour",
        "seed": 3,
    }
    assert [(c.field, c.old, c.new) for c in hero.changed] == [
        ("aspectRatio", "16:9", "1:1"),
        ("prompt", "A knight in silver armour", "A knight in golden armour"),
    ]
    assert (hero.key, hero.old_key) == (
        edited.plan().changes[0].key,
        snapshot.images["hero"].key,
    )
    castle = changes["castle"]
    assert (castle.before, castle.after, castle.key) == (
        {
            "aspectRatio": "16:9",
            "model": "nano-banana",
            "prompt": "A castle above the clouds",
            "seed": 5,
        },
        None,
        None,
    )
    assert (changes["squire"].before, changes["squire"].source) == (None, "specs/a.yaml:4:3")


def test_plan_json_round_trips_through_the_document_model(edited, capsys):
    """Reading the JSON back and writing it again changes nothing, as saved plans rely on."""
    capsys.readouterr()
    assert edited.run("plan", "--json") == ExitCode.OK
    out = capsys.readouterr().out
    document = PlanDocument.model_validate_json(out)
    assert from_plan(to_plan(document), tool_version=__version__) == document
    assert json.loads(document.model_dump_json()) == json.loads(out)
    assert from_plan(edited.plan(), tool_version=__version__) == document


def test_the_plan_document_refuses_fields_it_does_not_know(edited):
    """extra="forbid": a document from another format is an error, not a guess."""
    data = json.loads(from_plan(edited.plan(), tool_version=__version__).model_dump_json())
    data["changes"][0]["colour"] = "red"
    with pytest.raises(ValidationError) as caught:
        PlanDocument.model_validate(data)
    assert [(e["loc"], e["msg"]) for e in caught.value.errors()] == [
        (("changes", 0, "colour"), "Extra inputs are not permitted")
    ]
