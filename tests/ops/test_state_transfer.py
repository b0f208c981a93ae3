"""`ltx-reconcile state pull` and `state push`: the whole state as a versioned JSON document.

Each test works on its own copy of one applied workspace (see test_state_commands.py for
why objects and outputs are hard-linked), through real `python -m ltx_reconcile` processes.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
from typing import Any

import pytest

from ltx_reconcile.errors import ExitCode
from ltx_reconcile.state.lease import ProcessIdentity, acquire, release
from ltx_reconcile.state.store import StateStore
from testing.workspace import CliWorkspace
from tests.apply.specs import TWO_IMAGES

ELSEWHERE = ProcessIdentity(pid=4242, host="build-runner-7", user="ci", start_token=None)
TABLES = ["artifacts", "images", "journal", "pins", "spend", "uploads"]


APPLIED_SPECS = TWO_IMAGES
"""What `ws` (tests/ops/conftest.py) starts from: applied once per module."""


def pull(ws: CliWorkspace) -> dict[str, Any]:
    """`state pull`, parsed."""
    document: dict[str, Any] = json.loads(ws.ok("state", "pull"))
    return document


def write(ws: CliWorkspace, document: dict[str, Any], name: str = "state.json") -> str:
    """Save a document below the root; its name, as `state push` takes it."""
    (ws.root / name).write_text(json.dumps(document), encoding="utf-8")
    return name


def refused(ws: CliWorkspace, *args: str, code: ExitCode) -> list[str]:
    """Run a command that must fail with `code`; its stderr lines."""
    run = ws.run(*args)
    assert run.returncode == code, (run.stdout, run.stderr)
    return run.stderr.splitlines()


def test_pull_prints_every_table_but_the_lease(ws: CliWorkspace) -> None:
    """The document carries the lineage, serial and schema, and every table but the lease
    (pulling is reading: it works while another process holds the lease)."""
    with StateStore.open(ws.state_path) as store:
        lease = acquire(store, "apply", timeout_s=0, identity=ELSEWHERE)
    try:
        document = pull(ws)
    finally:
        with StateStore.open(ws.state_path) as store:
            release(store, lease)

    snapshot = ws.snapshot()
    assert {k: v for k, v in document.items() if k != "tables"} == {
        "format_version": 1,
        "tool_version": document["tool_version"],
        "schema_version": 2,
        "lineage": snapshot.lineage,
        "serial": snapshot.serial,
    }
    tables = document["tables"]
    assert sorted(tables) == TABLES
    # Rows come in the order they were written, and apply writes images concurrently.
    assert sorted(row["name"] for row in tables["images"]) == ["cat", "dog"]
    assert {row["digest"] for row in tables["artifacts"]} == {
        record.digest for record in snapshot.images.values()
    }
    assert [row["id"] for row in tables["journal"]] == [row.id for row in ws.journal()]
    assert len(tables["spend"]) == 2


def test_pull_then_push_leaves_the_same_state_with_a_new_serial(ws: CliWorkspace) -> None:
    """A round trip changes nothing but the serial (one more), and plan still finds no work."""
    before = pull(ws)

    lines = ws.ok("state", "push", write(ws, before)).splitlines()

    serial = before["serial"]
    assert lines == [
        f"Pushed state.json to state/state.db: serial {serial} -> {serial + 1}.",
        "Rows now: artifacts 2, images 2, journal 2, pins 0, spend 2, uploads 0.",
    ]
    after = pull(ws)
    assert after == {**before, "serial": serial + 1}
    assert ws.ok("plan").splitlines() == ["No changes. 2 images are up to date."]
    assert ws.integrity_check() == "ok"


def test_push_refuses_a_document_older_than_the_state_unless_forced(ws: CliWorkspace) -> None:
    """Someone wrote the state since the pull: pushing would undo that, so exit 4; --force
    does it anyway."""
    old = write(ws, pull(ws))
    ws.ok("state", "rm", "cat")
    serial = ws.snapshot().serial

    assert refused(ws, "state", "push", old, code=ExitCode.STATE) == [
        f"Error: state.json was pulled at serial {serial - 1}, but the state has moved on to "
        f"serial {serial}",
        "hint: pull again and redo your edit on the new document; --force would undo the "
        "writes made since",
    ]
    assert (sorted(ws.images()), ws.snapshot().serial) == (["dog"], serial)

    ws.ok("state", "push", "--force", old)
    assert (sorted(ws.images()), ws.snapshot().serial) == (["cat", "dog"], serial + 1)


def test_push_refuses_another_lineage_unless_forced(ws: CliWorkspace) -> None:
    """A document of another state is refused (exit 4); forced, the state takes its lineage."""
    document = pull(ws)
    lineage = document["lineage"]
    foreign = write(ws, {**document, "lineage": "0d15ea5e-0000-4000-8000-000000000000"})

    assert refused(ws, "state", "push", foreign, code=ExitCode.STATE)[0] == (
        "Error: state.json belongs to another state: its lineage is "
        f"0d15ea5e-0000-4000-8000-000000000000, the state's is {lineage}"
    )
    assert ws.snapshot().lineage == lineage

    lines = ws.ok("state", "push", "--force", foreign).splitlines()
    assert lines[-1] == (
        f"Its lineage is now 0d15ea5e-0000-4000-8000-000000000000 (was {lineage}); plans "
        "saved before are stale."
    )
    assert ws.snapshot().lineage == "0d15ea5e-0000-4000-8000-000000000000"


def test_push_restores_a_state_into_a_workspace_that_has_none(ws: CliWorkspace) -> None:
    """A state never written takes any lineage: push is how a backup is restored."""
    document = pull(ws)
    shutil.rmtree(ws.root / "state")

    ws.ok("state", "push", write(ws, document))

    restored = pull(ws)
    assert restored == {**document, "serial": document["serial"] + 1}


def test_push_refuses_to_drop_journal_rows_and_says_why(ws: CliWorkspace) -> None:
    """Journal rows record paid jobs: a document without one is refused (exit 4) unless
    --force, and the schema's never-delete trigger is in place afterwards either way."""
    document = pull(ws)
    first, second = document["tables"]["journal"]
    shorter = write(ws, {**document, "tables": {**document["tables"], "journal": [first]}})

    assert refused(ws, "state", "push", shorter, code=ExitCode.STATE) == [
        f"Error: state.json lacks rows the state keeps for good, 1 row of journal (id "
        f'{second["id"]}): "journal rows are never deleted". A journal row is the only record '
        "that a job was paid for; without it, apply could pay for that image again.",
        "hint: keep those rows in the document (pull again and redo your edit), or pass "
        "--force to drop them anyway",
    ]
    assert len(ws.journal()) == 2

    lines = ws.ok("state", "push", "--force", shorter).splitlines()
    assert lines[-1] == "Dropped 1 row of journal that the state had (--force)."
    assert [row.id for row in ws.journal()] == [first["id"]]
    with contextlib.closing(sqlite3.connect(ws.state_path)) as conn:
        with pytest.raises(sqlite3.IntegrityError) as err:
            conn.execute("DELETE FROM journal")
        conn.rollback()
    assert "journal rows are never deleted" in str(err.value)


def test_push_refuses_a_document_of_an_unknown_format(ws: CliWorkspace) -> None:
    """Another format_version is bad input (exit 3), as is a file that is no document."""
    name = write(ws, {**pull(ws), "format_version": 2})
    assert refused(ws, "state", "push", name, code=ExitCode.INVALID_INPUT) == [
        "Error: state.json is a state document of format version 2; this ltx-reconcile reads "
        "format version 1",
        "hint: push it with the ltx-reconcile that pulled it, or pull the state again",
    ]
    (ws.root / "plan.json").write_text('{"changes": []}')
    assert refused(ws, "state", "push", "plan.json", code=ExitCode.INVALID_INPUT)[0] == (
        "Error: plan.json is not a state document (no format_version)"
    )


def test_push_takes_a_document_of_an_older_schema_forward(ws: CliWorkspace) -> None:
    """A schema-1 document (no pins, no protect) is migrated as the state file would be."""
    document = pull(ws)
    tables = {name: rows for name, rows in document["tables"].items() if name != "pins"}
    tables["images"] = [
        {column: value for column, value in row.items() if column != "protect"}
        for row in tables["images"]
    ]

    ws.ok("state", "push", write(ws, {**document, "schema_version": 1, "tables": tables}))

    assert pull(ws) == {**document, "serial": document["serial"] + 1}


def test_push_refuses_rows_the_schema_refuses_and_changes_nothing(ws: CliWorkspace) -> None:
    """A row breaking a CHECK or a reference is bad input (exit 3); the state is unchanged."""
    document = pull(ws)
    tables = document["tables"]
    bad_status = {**tables, "images": [{**tables["images"][0], "status": "lost"}]}
    no_artifacts = {**tables, "artifacts": []}

    assert refused(
        ws,
        "state",
        "push",
        write(ws, {**document, "tables": bad_status}),
        code=ExitCode.INVALID_INPUT,
    )[0] == (
        "Error: state.json: row 0 of table images is refused by the state's schema (CHECK "
        "constraint failed: status IN ('present', 'pending', 'failed', 'unknown'))"
    )
    assert refused(
        ws,
        "state",
        "push",
        write(ws, {**document, "tables": no_artifacts}),
        code=ExitCode.INVALID_INPUT,
    )[0].startswith("Error: state.json: 4 row(s) refer to rows it does not have")
    assert pull(ws) == document
