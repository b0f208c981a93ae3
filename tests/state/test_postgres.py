"""What only the PostgreSQL state has: its schema's identity, connections, many writers.

The behaviour both backends share is tested once, over both, in test_store.py and
test_journal.py; these tests are about the server and the schema.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from ltx_reconcile.errors import ExitCode, SchemaTooNewError, StateError
from ltx_reconcile.state.postgres import PostgresStateStore
from ltx_reconcile.state.store import StateStore
from testing.workspace import CANARY_TOKEN, CliWorkspace
from tests.state.factories import make_artifact, make_image

# Every test here needs the server; the backend fixture's SQLite half does not apply.
pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


def _columns_of_sqlite(path) -> dict[str, set[str]]:
    conn = sqlite3.connect(path)
    try:
        tables = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        return {
            table: {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            for table in tables
        }
    finally:
        conn.close()


def test_the_postgresql_schema_has_the_tables_and_columns_of_the_sqlite_one(backend, state_path):
    """The two schemas cannot drift apart: codec.py and the shared SQL rely on the same names."""
    StateStore.open(state_path).close()
    backend.open().close()
    columns = "SELECT table_name, column_name FROM information_schema.columns"
    rows = backend.query(f"{columns} WHERE table_schema = '{backend.schema}'")
    postgres_columns: dict[str, set[str]] = {}
    for table, column in rows:
        postgres_columns.setdefault(table, set()).add(column)
    # PostgreSQL keeps its schema version in a table, and SQLite's implicit rowid explicit.
    assert postgres_columns.pop("schema_version") == {"id", "version"}
    postgres_columns["artifacts"].remove("rowid")
    assert postgres_columns == _columns_of_sqlite(state_path)


def test_a_schema_holding_other_tables_is_refused(backend):
    """Pointing the state at somebody else's schema is caught before anything is written."""
    backend.query(f"CREATE SCHEMA {backend.schema}; CREATE TABLE notes (text TEXT)")
    with pytest.raises(StateError) as caught:
        backend.open()
    assert str(caught.value) == (
        f"schema {backend.schema} of postgresql://ltx@127.0.0.1:{backend.server.port}/postgres "
        f"(schema {backend.schema}) holds tables but is not an ltx-reconcile state"
    )
    assert backend.query("SELECT count(*) FROM notes") == [(0,)]


def test_a_schema_written_by_a_newer_version_is_refused_unchanged(backend):
    """A newer tool's schema is never downgraded or written; the user is told to upgrade."""
    backend.open().close()
    backend.query("UPDATE schema_version SET version = 99")
    with pytest.raises(
        SchemaTooNewError, match="state schema 99; this version understands up to 2"
    ):
        backend.open()
    assert backend.query("SELECT version FROM schema_version") == [(99,)]


def test_a_schema_name_that_is_not_a_plain_identifier_is_refused(backend):
    """Schema names are spliced into DDL, so only plain lower-case identifiers are taken."""
    with pytest.raises(StateError, match="cannot name the state's PostgreSQL schema"):
        PostgresStateStore.open(backend.server.url, schema='x"; DROP SCHEMA public; --')


def test_the_password_never_appears_in_the_location_or_a_connection_error(backend):
    """Secrets stay out of messages: the location names user, host and database only."""
    port = backend.server.port
    with PostgresStateStore.open(
        f"postgresql://ltx:s3cret-pw@127.0.0.1:{port}/postgres", schema=backend.schema
    ) as store:
        assert (
            store.location
            == f"postgresql://ltx@127.0.0.1:{port}/postgres (schema {backend.schema})"
        )
    for url in (
        "postgresql://ltx:s3cret-pw@127.0.0.1:1/postgres",
        "postgresql://ltx:s3cret-pw@127.0.0.1:notaport/postgres",
        "host=127.0.0.1 port=1 user=ltx password=s3cret-pw",
    ):
        with pytest.raises(StateError) as caught:
            PostgresStateStore.open(url, schema=backend.schema)
        assert str(caught.value).startswith("cannot connect to the PostgreSQL state: ")
        assert "s3cret-pw" not in str(caught.value)
        assert caught.value.__cause__ is None


def test_many_processes_opening_a_new_schema_at_once_create_it_once(backend):
    """The migration runs under an advisory lock: every opener sees one lineage."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        stores = list(pool.map(lambda _: backend.open(), range(4)))
    try:
        assert len({store.lineage for store in stores}) == 1
        assert {store.serial for store in stores} == {0}
    finally:
        for store in stores:
            store.close()


def test_a_second_writer_waits_for_the_first_and_both_count(store, backend):
    """Writers are serialised on the meta row, so each commit bumps the serial exactly once."""
    second = backend.open()
    done = threading.Event()
    try:
        with store.transaction():
            store.put_image(make_image("first"))

            def write_second() -> None:
                second.put_image(make_image("second"))
                done.set()

            writer = threading.Thread(target=write_second)
            writer.start()
            _wait_for_a_writer_waiting_on_a_lock(backend)
            assert not done.is_set()
        writer.join(timeout=10)
        assert done.is_set()
        assert store.serial == second.serial == 2
        assert set(store.snapshot().images) == {"first", "second"}
    finally:
        second.close()


def _wait_for_a_writer_waiting_on_a_lock(backend, timeout_s: float = 10) -> None:
    waiting = (
        "SELECT 1 FROM pg_stat_activity "
        "WHERE application_name = 'ltx-reconcile' AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + timeout_s
    while not backend.query(waiting):
        assert time.monotonic() < deadline, "the second writer never waited for the lock"
        time.sleep(0.01)


def test_the_journal_cannot_be_truncated(store, backend):
    """TRUNCATE skips row triggers, so the journal has a statement trigger against it too."""
    with pytest.raises(psycopg.Error, match="journal rows are never deleted"):
        backend.query("TRUNCATE journal")


def test_reading_a_missing_state_finds_none_and_creates_nothing(backend):
    """plan against a new database reads no state and leaves the server as it was."""
    assert PostgresStateStore.read_snapshot(backend.server.url, schema=backend.schema) is None
    assert not backend.exists()


def test_reading_sees_the_committed_state_and_cannot_write(store, backend):
    """The read path is a read-only session: it sees what was committed, and writes fail."""
    store.put_image(make_image("hero"))
    store.record_spend("job-1", "k1:hero", "hero", "flux", 28, "generation")
    with PostgresStateStore.reading(backend.server.url, schema=backend.schema) as reader:
        assert reader is not None
        snapshot = reader.snapshot()
        assert (snapshot.lineage, snapshot.serial) == (store.lineage, 2)
        assert snapshot.images["hero"] == make_image("hero")
        assert reader.spend_since(0) == 28.0
        with pytest.raises(StateError, match="read-only transaction"):
            reader.put_image(make_image("villain"))
    assert set(store.snapshot().images) == {"hero"}


def test_reading_a_state_of_an_older_schema_asks_for_an_upgrade(backend):
    """The read path never migrates; it says which command will."""
    backend.open(migrations=backend.migrations[:1]).close()
    with pytest.raises(
        StateError, match="uses state schema 1; this ltx-reconcile reads 2"
    ) as caught:
        PostgresStateStore.read_snapshot(backend.server.url, schema=backend.schema)
    assert caught.value.hint == "run `ltx-reconcile apply` once to upgrade the state in place"


HERO_SPEC = "images:\n  hero:\n    prompt: a knight on a hill\n    model: flux\n"


@pytest.fixture
def cli(tmp_path) -> CliWorkspace:
    """A workspace driven through the real CLI; plan never calls the API, so none runs."""
    workspace = CliWorkspace.create(tmp_path, api_url="http://127.0.0.1:9", token=CANARY_TOKEN)
    workspace.specs(HERO_SPEC)
    return workspace


def _plan_document(cli, *args: str, **env: str) -> dict[str, Any]:
    run = cli.run("plan", "--json", *args, env=cli.environment(**env))
    assert run.returncode == ExitCode.OK, run.stderr
    return json.loads(run.stdout)


def test_plan_reads_a_postgresql_state_named_by_the_environment(cli, store, backend):
    """LTX_STATE_URL and LTX_STATE_SCHEMA point plan at the shared state, not the file."""
    env = {"LTX_STATE_URL": backend.server.url, "LTX_STATE_SCHEMA": backend.schema}
    first = _plan_document(cli, **env)
    assert (first["lineage"], first["serial"]) == (store.lineage, 0)
    (change,) = first["changes"]
    assert change["action"] == "create"
    # The team's state knows an artifact for the key, and the object store holds it.
    stored = cli.store.put_bytes(b"a picture of a knight")
    store.put_artifact(make_artifact(stored.digest, key=change["key"], size=stored.size))
    second = _plan_document(cli, **env)
    assert (second["serial"], second["changes"][0]["action"]) == (1, "reuse")
    assert not cli.state_path.exists()


def test_plan_with_a_postgresql_url_for_state_creates_nothing(cli, backend):
    """`--state postgresql://…` on a database without the state plans from nothing."""
    url = backend.server.url
    document = _plan_document(cli, "--state", url, LTX_STATE_SCHEMA=backend.schema)
    assert (document["lineage"], document["serial"]) == (None, 0)
    assert not backend.exists()
    assert not cli.state_path.exists()


def test_a_writing_command_uses_the_postgresql_state_never_the_file(cli, backend):
    """force-unlock on a PostgreSQL state that does not exist names it, and creates neither
    the schema nor state/state.db; validate runs."""
    env = cli.environment(LTX_STATE_URL=backend.server.url, LTX_STATE_SCHEMA=backend.schema)
    run = cli.run("force-unlock", "anything", env=env)
    assert run.returncode == ExitCode.STATE
    assert f"there is no state at postgresql://ltx@127.0.0.1:{backend.server.port}/" in run.stderr
    assert f"(schema {backend.schema})" in run.stderr
    assert not backend.exists()
    assert not (cli.root / "state").exists()
    validated = cli.run("validate", env=env)
    assert validated.returncode == ExitCode.OK, validated.stderr


def test_a_database_password_never_reaches_the_output(cli, backend):
    """A URL's password stays out of every message, even when the connection fails."""
    url = "postgresql://ltx:s3cret-pw@127.0.0.1:1/postgres"
    run = cli.run("plan", env=cli.environment(LTX_STATE_URL=url))
    assert run.returncode == ExitCode.STATE
    assert "cannot connect to the PostgreSQL state" in run.stderr
    assert cli.places_holding("s3cret-pw") == []


KEY = "a" * 64
OTHER_KEY = "b" * 64


def test_a_key_is_claimed_by_one_connection_until_it_releases_it_or_closes(store, backend):
    """The claims that divide a shared apply's keys: exclusive, re-entrant for their holder,
    and gone with the holder's connection (a SIGKILLed runner's socket closes the same way)."""
    other = backend.open()
    try:
        assert store.try_claim(KEY)
        assert store.try_claim(KEY), "a holder's second claim of its key must succeed"
        assert not other.try_claim(KEY)
        assert other.try_claim(OTHER_KEY), "claims on different keys are independent"
        store.release_claim(KEY)
        assert not other.try_claim(KEY), "one release of two claims still holds the key"
        store.release_claim(KEY)
        assert other.try_claim(KEY)
    finally:
        other.close()
    # The server lets go when it has processed the goodbye: a moment after close() returns.
    deadline = time.monotonic() + 10
    while not store.try_claim(KEY):
        assert time.monotonic() < deadline, "a closed connection's claims were never released"
        time.sleep(0.01)
    assert store.try_claim(OTHER_KEY)


def test_claims_of_two_states_on_one_database_never_meet(store, backend):
    """Each lock's name holds the schema: a key claimed in one state is free in another."""
    elsewhere = backend.open(name="elsewhere")
    try:
        assert store.try_claim(KEY)
        assert elsewhere.try_claim(KEY)
    finally:
        elsewhere.close()


def test_a_running_apply_keeps_exclusive_commands_out_until_it_ends(store, backend):
    """gc --force and state edits wait for every apply (`exclude_applies`); applies share."""
    first, second = backend.open(), backend.open()
    try:
        first.join_applies()
        second.join_applies()  # a second apply is let in at once
        assert not store.exclude_applies()
        first.close()
        assert not store.exclude_applies(), "one apply still runs"
        second.close()
        deadline = time.monotonic() + 10
        while not store.exclude_applies():
            assert time.monotonic() < deadline, "a closed apply's lock was never released"
            time.sleep(0.01)
        third = backend.open()
        try:
            assert not third.exclude_applies(), "the exclusion holds until it ends"
        finally:
            third.close()
        store.end_exclusion()
        with backend.open() as fourth:
            assert fourth.exclude_applies()
    finally:
        first.close()
        second.close()
