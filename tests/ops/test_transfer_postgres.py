"""`state pull` / `state push` across backends: a state file moved to PostgreSQL and back.

The library functions (transfer.py) against a real state file, made by a real apply
(tests/ops/conftest.py's `ws`), and a real PostgreSQL server on loopback (`postgres_server`,
tests/conftest.py), each test in a schema of its own. The refusals are the SQLite ones of
test_state_transfer.py, pinned here on PostgreSQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from ltx_reconcile.errors import StateError, UsageError
from ltx_reconcile.state.journal import Journal
from ltx_reconcile.state.postgres import PostgresStateStore
from ltx_reconcile.state.store import BaseStateStore, StateStore
from ltx_reconcile.state.transfer import (
    StateDocument,
    parse_document,
    pull_document,
    push_document,
    read_document,
    read_postgres_document,
)
from testing.postgres import PostgresServer
from testing.workspace import CliWorkspace
from tests.apply.specs import TWO_IMAGES

APPLIED_SPECS = TWO_IMAGES
"""What `ws` (tests/ops/conftest.py) starts from: applied once per module."""

FOREIGN_LINEAGE = "0d15ea5e-0000-4000-8000-000000000000"


@pytest.fixture
def schema() -> str:
    """A PostgreSQL schema of this test's own, not created yet."""
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def postgres(postgres_server: PostgresServer, schema: str) -> Iterator[PostgresStateStore]:
    """A new, empty PostgreSQL state (serial 0), closed after the test."""
    store = PostgresStateStore.open(postgres_server.url, schema=schema)
    yield store
    store.close()


@pytest.fixture
def document(ws: CliWorkspace) -> StateDocument:
    """The applied workspace's state file, pulled: two images, two paid journal rows."""
    pulled = read_document(ws.state_path)
    assert pulled is not None
    return pulled


def with_tables(document: StateDocument, **tables: list[dict[str, Any]]) -> StateDocument:
    """`document` with some tables' rows replaced."""
    return document.model_copy(update={"tables": {**document.tables, **tables}})


def rows_by_table(document: StateDocument) -> dict[str, Any]:
    """Every table's rows; artifacts in order (it breaks ties), the others as a set."""
    return {
        table: rows if table == "artifacts" else sorted(rows, key=repr)
        for table, rows in document.tables.items()
    }


def column(document: StateDocument, table: str, name: str) -> list[Any]:
    """One column of a table's rows, in order."""
    return [row[name] for row in document.tables[table]]


def moved(document: StateDocument, store: BaseStateStore) -> StateDocument:
    """Push `document` into `store`, and pull it back from there."""
    push_document(store, document, source="state.json")
    return pull_document(store)


def test_a_state_file_moved_to_postgresql_and_back_keeps_every_row(
    ws: CliWorkspace, document: StateDocument, postgres: PostgresStateStore, tmp_path
) -> None:
    """SQLite -> PostgreSQL -> SQLite leaves the same rows, lineage and snapshot; only the
    serial moves, one past the document's at each push."""
    on_postgres = moved(document, postgres)
    with StateStore.open(tmp_path / "back" / "state.db") as back:
        on_sqlite = moved(on_postgres, back)
        back_snapshot = back.snapshot()

    assert rows_by_table(on_postgres) == rows_by_table(document)
    assert rows_by_table(on_sqlite) == rows_by_table(document)
    assert (on_postgres.lineage, on_sqlite.lineage) == (document.lineage, document.lineage)
    assert (on_postgres.serial, on_sqlite.serial) == (document.serial + 1, document.serial + 2)
    assert sorted(document.tables) == ["artifacts", "images", "journal", "pins", "spend", "uploads"]
    original, on_server = ws.snapshot(), postgres.snapshot()
    for snapshot in (on_server, back_snapshot):
        assert snapshot.images == original.images
        assert snapshot.artifacts == original.artifacts
        assert snapshot.artifacts_by_key == original.artifacts_by_key
        assert snapshot.open_jobs == original.open_jobs
    assert postgres.total_spend() == pytest.approx(sum(column(document, "spend", "amount")))


def test_the_journal_after_a_push_to_postgresql_numbers_on_and_keeps_its_rows(
    postgres_server: PostgresServer,
    schema: str,
    document: StateDocument,
    postgres: PostgresStateStore,
) -> None:
    """The next journal row takes the next id (the identity follows the pushed ids), and
    the never-delete trigger is back in place."""
    push_document(postgres, document, source="state.json")

    entry = Journal(postgres).record_intent("k" * 64, "owl", "a@b.c", {"prompt": "owl"}, "d" * 64)

    assert entry.id == max(column(document, "journal", "id")) + 1
    with psycopg.connect(postgres_server.url, autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}".encode())
        with pytest.raises(psycopg.errors.RaiseException, match="journal rows are never deleted"):
            conn.execute("DELETE FROM journal")
        with pytest.raises(psycopg.errors.RaiseException, match="journal rows are never deleted"):
            conn.execute("TRUNCATE journal")


def test_a_pull_from_postgresql_reads_only_and_finds_no_state_in_a_new_schema(
    postgres_server: PostgresServer, schema: str, document: StateDocument
) -> None:
    """`read_postgres_document` creates nothing; once the state is there it reads the
    same document as a pull through the open store."""
    assert read_postgres_document(postgres_server.url, schema=schema) is None
    with psycopg.connect(postgres_server.url) as conn:
        found = conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,))
        assert found.fetchone() is None

    with PostgresStateStore.open(postgres_server.url, schema=schema) as store:
        push_document(store, document, source="state.json")
        pulled = pull_document(store)

    assert read_postgres_document(postgres_server.url, schema=schema) == pulled


def test_postgresql_refuses_an_older_document_or_another_lineage_unless_forced(
    document: StateDocument, postgres: PostgresStateStore
) -> None:
    """As on SQLite: a document pulled before the last write, or of another state, is
    refused and changes nothing; forced, it replaces the state, lineage included."""
    push_document(postgres, document, source="state.json")
    postgres.remove_image("cat")
    current = pull_document(postgres)

    with pytest.raises(StateError) as older:
        push_document(postgres, document, source="state.json")
    foreign = document.model_copy(update={"lineage": FOREIGN_LINEAGE, "serial": 99})
    with pytest.raises(StateError) as other:
        push_document(postgres, foreign, source="state.json")

    assert str(older.value) == (
        f"state.json was pulled at serial {document.serial}, but the state has moved on to "
        f"serial {current.serial}"
    )
    assert str(other.value) == (
        f"state.json belongs to another state: its lineage is {FOREIGN_LINEAGE}, the "
        f"state's is {document.lineage}"
    )
    assert pull_document(postgres) == current
    result = push_document(postgres, foreign, source="state.json", force=True)
    assert (result.lineage, result.previous_lineage) == (FOREIGN_LINEAGE, document.lineage)
    assert (postgres.lineage, sorted(postgres.snapshot().images)) == (
        FOREIGN_LINEAGE,
        ["cat", "dog"],
    )


def test_postgresql_refuses_to_drop_journal_rows_unless_forced(
    document: StateDocument, postgres: PostgresStateStore
) -> None:
    """A document without a journal row the state has is refused with SQLite's words;
    forced, the row goes, and the trigger still guards the others."""
    before = moved(document, postgres)
    first, second = before.tables["journal"]
    shorter = with_tables(before, journal=[first])

    with pytest.raises(StateError) as refused:
        push_document(postgres, shorter, source="state.json")

    assert str(refused.value) == (
        f"state.json lacks rows the state keeps for good, 1 row of journal (id "
        f'{second["id"]}): "journal rows are never deleted". A journal row is the only record '
        "that a job was paid for; without it, apply could pay for that image again."
    )
    assert pull_document(postgres) == before
    result = push_document(postgres, shorter, source="state.json", force=True)
    assert result.dropped == {"journal": 1}
    assert column(pull_document(postgres), "journal", "id") == [first["id"]]
    with pytest.raises(StateError, match="journal rows are never deleted"):
        postgres._write("DELETE FROM journal")


def test_postgresql_refuses_rows_its_schema_refuses_and_changes_nothing(
    document: StateDocument, postgres: PostgresStateStore
) -> None:
    """A row breaking a CHECK, a value of the wrong type, a missing reference: bad input
    (UsageError), and the state stays as it was."""
    before = moved(document, postgres)
    images = before.tables["images"]
    bad_status = with_tables(before, images=[{**images[0], "status": "lost"}, *images[1:]])
    bad_size = with_tables(before, images=[{**images[0], "output_size": "big"}, *images[1:]])
    no_artifacts = with_tables(before, artifacts=[])

    with pytest.raises(UsageError) as status:
        push_document(postgres, bad_status, source="state.json")
    with pytest.raises(UsageError) as size:
        push_document(postgres, bad_size, source="state.json")
    with pytest.raises(UsageError) as references:
        push_document(postgres, no_artifacts, source="state.json")

    assert str(status.value) == (
        "state.json: row 0 of table images is refused by the state's schema (new row for "
        'relation "images" violates check constraint "images_status_check")'
    )
    assert str(size.value).startswith(
        "state.json: row 0 of table images is refused by the state's schema (invalid input "
        "syntax for type bigint"
    )
    assert str(references.value) == (
        "state.json: 4 row(s) refer to rows it does not have (the first: a row of images "
        "names a missing row of artifacts)"
    )
    assert pull_document(postgres) == before


def test_postgresql_takes_a_document_of_an_older_schema_forward(
    document: StateDocument, postgres: PostgresStateStore
) -> None:
    """A schema-1 document (no pins, no protect) is migrated before it lands on PostgreSQL."""
    tables = {name: rows for name, rows in document.tables.items() if name != "pins"}
    tables["images"] = [
        {column: value for column, value in row.items() if column != "protect"}
        for row in tables["images"]
    ]
    old = document.model_copy(update={"schema_version": 1, "tables": tables})

    pulled = moved(old, postgres)

    assert rows_by_table(pulled) == rows_by_table(document)
    assert pulled.schema_version == document.schema_version == 2


def test_the_cli_moves_a_state_file_to_postgresql_and_plans_against_it(
    ws: CliWorkspace, postgres_server: PostgresServer, schema: str
) -> None:
    """`state pull` of the file, `state push` to a PostgreSQL URL: the team's state, with
    nothing left to do and the password nowhere in what the commands print."""
    pulled = ws.ok("state", "pull", "--state", "state/state.db")
    (ws.root / "s.json").write_text(pulled)
    env = ws.environment(LTX_STATE_SCHEMA=schema)
    pushed = ws.spawn("state", "push", "s.json", "--state", postgres_server.url, env=env).finished()
    assert pushed.returncode == 0, pushed.stderr
    assert pushed.stdout.startswith("Pushed s.json to postgresql://"), pushed.stdout
    planned = ws.spawn("plan", "--state", postgres_server.url, env=env).finished()
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.splitlines() == ["No changes. 2 images are up to date."]
    again = ws.spawn("state", "pull", "--state", postgres_server.url, env=env).finished()
    assert again.returncode == 0, again.stderr
    assert rows_by_table(parse_document(again.stdout, "again")) == rows_by_table(
        parse_document(pulled, "pulled")
    )
