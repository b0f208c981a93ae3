"""A workspace directory driven through the real CLI, in real subprocesses (crash tests).

`CliWorkspace` builds a directory of specs with `gen`, runs `python -m ltx_reconcile -C DIR`
as a child process with the token and fast client settings in its environment only, and
reads back what the children left: the state (read-only), the journal, the artifact store
and the named output files. Every output a child printed is kept, so a test can prove a
secret never appeared in any of it:

    ws = CliWorkspace.create(tmp_path, api_url=emulator.base_url, token=CANARY_TOKEN)
    ws.specs("images: {cat: {prompt: a cat}}")
    child = ws.spawn_apply()                    # python -m ltx_reconcile ... apply
    emulator.wait_for_charges(1)
    child.kill()
    assert ws.apply().returncode == ExitCode.OK

The state is the file `state/state.db`, or, given `state_url` (and a `state_schema` of the
test's own), a PostgreSQL state that every child is pointed at through `LTX_STATE_URL` and
`LTX_STATE_SCHEMA`. The readers (`snapshot`, `journal`, `integrity_check`, ...) read
whichever it is; `STATE_BACKENDS` names both for `pytest.mark.parametrize`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final
from urllib.parse import quote

from ltx_reconcile.artifacts import ArtifactStore, digest_bytes
from ltx_reconcile.emulator.config import AccountConfig, EmulatorConfig
from ltx_reconcile.emulator.ledger import LedgerEntry, LedgerKind
from ltx_reconcile.state.records import ImageRecord, StateSnapshot
from ltx_reconcile.state.store import BaseStateStore, StateStore
from testing.emulator import fast_config
from testing.tree import Tree, gen

__all__ = [
    "CANARY_TOKEN",
    "EMAIL",
    "FAST_CLIENT_ENV",
    "STATE_BACKENDS",
    "TIME_SCALE",
    "CliWorkspace",
    "Finished",
    "JournalRow",
    "Spawned",
    "crash_test_config",
]

FAST_CLIENT_ENV: Final[Mapping[str, str]] = {
    # Polls every 20 ms; a request unanswered for 1 s is lost, so recovery waits at most
    # 1 s + 50 ms after the last send before it looks a job up by its replyRef.
    "LTX_POLL_INTERVAL_S": "0.02",
    "LTX_REQUEST_TIMEOUT_S": "1.0",
    "LTX_RECOVERY_MARGIN_S": "0.05",
}
"""Client settings (`Settings.from_env`) that make an apply against a fast emulator quick."""

CANARY_TOKEN: Final = "user:31337-canary-0c4f2e9a7b1d-never-print-me"  # noqa: S105 - a test canary
"""A token to give children: no file, log or output may ever contain it."""
EMAIL: Final = "artist@example.com"
TIME_SCALE: Final = 0.02
"""Emulated seconds per real second in `crash_test_config`: an 8 s flux job takes about
160 ms (100 to 260 ms). Not smaller: artifact URLs live `url_ttl_s * TIME_SCALE` (72 s
here), and the client treats a URL as expired 30 s before its end (contract 6)."""

STATE_BACKENDS: Final = ("sqlite", "postgresql")
"""The state backends a behaviour test runs on: parametrize the `state_backend` fixture
(tests/conftest.py) indirectly with these."""

_RUN_TIMEOUT_S: Final = 45.0
_INHERITED_PREFIXES: Final = ("LTX_", "USEAPI_")


def crash_test_config(**overrides: Any) -> EmulatorConfig:
    """A test-mode emulator for CLI children: jobs take tens to hundreds of milliseconds,
    only `CANARY_TOKEN` is accepted, one account (`EMAIL`), and `Retry-After: 0`, so the
    client's retries of safe requests stay in the milliseconds."""
    settings: dict[str, Any] = {
        "time_scale": TIME_SCALE,
        "tokens": (CANARY_TOKEN,),
        "accounts": (AccountConfig(EMAIL),),
        "retry_after_s": 0,
    }
    settings.update(overrides)
    return fast_config(**settings)


@dataclass(frozen=True, slots=True)
class Finished:
    """A child that ran to its end: its exit status and everything it printed."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True, slots=True)
class JournalRow:
    """One journal entry as the state file holds it."""

    id: int
    key: str
    image: str
    attempt: int
    reply_ref: str
    job_id: str | None
    state: str
    extra_of: int | None


@dataclass(slots=True)
class Spawned:
    """A child still running (or killed): signal it, wait for it, read what it printed."""

    process: subprocess.Popen[bytes]
    argv: tuple[str, ...]
    stdout_path: Path
    stderr_path: Path
    _files: tuple[IO[bytes], ...] = field(repr=False)

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    def send_signal(self, signum: int) -> None:
        """Send `signum` to the child."""
        self.process.send_signal(signum)

    def kill(self) -> int:
        """SIGKILL the child (no cleanup of any kind runs) and reap it; its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        return self.wait()

    def running_after(self, delay_s: float) -> bool:
        """Wait up to `delay_s` for the child to exit; True if it is still running."""
        try:
            self.process.wait(timeout=delay_s)
        except subprocess.TimeoutExpired:
            return True
        return False

    def wait(self, timeout_s: float = _RUN_TIMEOUT_S) -> int:
        """Wait for the child to exit; its exit status (negative: killed by that signal)."""
        try:
            return self.process.wait(timeout=timeout_s)
        finally:
            if self.process.returncode is not None:
                for handle in self._files:
                    handle.close()

    def finished(self, timeout_s: float = _RUN_TIMEOUT_S) -> Finished:
        """Wait for the child and return its exit status and output."""
        code = self.wait(timeout_s)
        return Finished(
            self.argv,
            code,
            self.stdout_path.read_text(encoding="utf-8", errors="replace"),
            self.stderr_path.read_text(encoding="utf-8", errors="replace"),
        )


class CliWorkspace:
    """A workspace directory plus the way to run `ltx-reconcile` on it as a child process.

    `root` holds specs/, state/ and out/; `scratch` (outside the root) holds the children's
    captured output and their temporary directory, where crash logs would land.
    """

    def __init__(
        self,
        root: Path,
        *,
        scratch: Path,
        api_url: str,
        token: str,
        env: Mapping[str, str] | None = None,
        state_url: str | None = None,
        state_schema: str | None = None,
    ) -> None:
        self.root = root
        self.state_url = state_url
        """A PostgreSQL state's URL; None for the state file."""
        self.state_schema = state_schema
        self.scratch = scratch
        self.api_url = api_url
        self.token = token
        self.extra_env = dict(FAST_CLIENT_ENV if env is None else env)
        self.tmp = scratch / "tmp"
        self._logs = scratch / "logs"
        self._count = 0
        self.spawned: list[Spawned] = []
        """Every child started so far, in order."""

    @classmethod
    def create(
        cls,
        base: Path,
        *,
        api_url: str,
        token: str,
        env: Mapping[str, str] | None = None,
        state_url: str | None = None,
        state_schema: str | None = None,
    ) -> CliWorkspace:
        """A fresh workspace at `base/ws`, with its scratch space at `base/scratch`; its
        state on PostgreSQL at `state_url`, in `state_schema`, when given."""
        root, scratch = base / "ws", base / "scratch"
        for path in (root, scratch / "tmp", scratch / "logs"):
            path.mkdir(parents=True)
        return cls(
            root,
            scratch=scratch,
            api_url=api_url,
            token=token,
            env=env,
            state_url=state_url,
            state_schema=state_schema,
        )

    # -- inputs -------------------------------------------------------------------------

    def gen(self, tree: Tree) -> list[Path]:
        """Write `tree` below the root (see `testing.tree.gen`)."""
        return gen(self.root, tree)

    def specs(self, text: str, name: str = "images.yaml") -> Path:
        """Replace the spec file `specs/<name>` with `text` (dedented)."""
        (path,) = gen(self.root / "specs", {name: text})
        return path

    # -- running the CLI ----------------------------------------------------------------

    def environment(self, **changes: str | None) -> dict[str, str]:
        """The child's environment: ours without LTX_*/USEAPI_*, then the token, the fast
        settings and a private TMPDIR; `changes` set (or, with None, remove) variables."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES)}
        env.update(self.extra_env)
        if self.state_url is not None:
            env["LTX_STATE_URL"] = self.state_url
            if self.state_schema is not None:
                env["LTX_STATE_SCHEMA"] = self.state_schema
        env["USEAPI_TOKEN"] = self.token
        env["TMPDIR"] = str(self.tmp)
        env["PYTHONUNBUFFERED"] = "1"
        for name, value in changes.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def argv(self, *args: str) -> list[str]:
        """`python -m ltx_reconcile -C ROOT ARGS...`."""
        return [sys.executable, "-m", "ltx_reconcile", "-C", str(self.root), *args]

    def apply_args(self, *args: str, auto_approve: bool = True) -> tuple[str, ...]:
        """`apply --api-url URL [--auto-approve] ARGS...`."""
        approve = ("--auto-approve",) if auto_approve else ()
        return ("apply", "--api-url", self.api_url, *approve, *args)

    def spawn(self, *args: str, env: Mapping[str, str] | None = None) -> Spawned:
        """Start the CLI with `args` and return at once; stdin is /dev/null (not a TTY)."""
        self._count += 1
        stdout_path = self._logs / f"{self._count:03d}.stdout"
        stderr_path = self._logs / f"{self._count:03d}.stderr"
        out, err = stdout_path.open("wb"), stderr_path.open("wb")
        argv = self.argv(*args)
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(env) if env is not None else self.environment(),
            cwd=self.scratch,
        )
        spawned = Spawned(process, tuple(argv), stdout_path, stderr_path, (out, err))
        self.spawned.append(spawned)
        return spawned

    def run(
        self, *args: str, env: Mapping[str, str] | None = None, timeout_s: float = _RUN_TIMEOUT_S
    ) -> Finished:
        """Run the CLI with `args` to its end."""
        return self.spawn(*args, env=env).finished(timeout_s)

    def ok(self, *args: str) -> str:
        """Run a command that must exit 0; its stdout."""
        run = self.run(*args)
        assert run.returncode == 0, run.stderr
        return run.stdout

    def apply(self, *args: str, env: Mapping[str, str] | None = None) -> Finished:
        """`apply --api-url URL --auto-approve ARGS...`, run to its end."""
        return self.run(*self.apply_args(*args), env=env)

    def spawn_apply(self, *args: str, env: Mapping[str, str] | None = None) -> Spawned:
        """`apply --api-url URL --auto-approve ARGS...`, started in the background."""
        return self.spawn(*self.apply_args(*args), env=env)

    def wait_all(self) -> None:
        """Reap every child still running (each is killed first); call at teardown."""
        for spawned in self.spawned:
            spawned.kill()

    # -- reading back what the children left ---------------------------------------------

    @property
    def state_path(self) -> Path:
        """The state file (unused, and never created, with a PostgreSQL state)."""
        return self.root / "state" / "state.db"

    @property
    def is_postgres(self) -> bool:
        """Whether the state is on PostgreSQL rather than in the file."""
        return self.state_url is not None

    @property
    def state_location(self) -> str:
        """The state as lock messages name it: the file's path, or the PostgreSQL server,
        database and schema."""
        if self.state_url is None:
            return str(self.state_path)
        from ltx_reconcile.state.postgres import PostgresStateStore

        return PostgresStateStore.location_of(self.state_url, schema=self._schema)

    @property
    def state_display(self) -> str:
        """The state as "there is no state at ..." names it: the file below the root."""
        return "state/state.db" if self.state_url is None else self.state_location

    def state_exists(self) -> bool:
        """Whether a command has created the state (the file, or the PostgreSQL schema)."""
        if self.state_url is None:
            return self.state_path.exists()
        with self._pg_connect() as conn:
            row = conn.execute(
                "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self._schema,)
            ).fetchone()
        return row is not None

    def open_state(self) -> BaseStateStore:
        """The state open for writing with the product's own classes (creating it), to
        leave behind what a killed process would: an open journal entry, a held lease."""
        if self.state_url is None:
            return StateStore.open(self.state_path)
        from ltx_reconcile.state.postgres import PostgresStateStore

        return PostgresStateStore.open(self.state_url, schema=self._schema)

    @property
    def _schema(self) -> str:
        from ltx_reconcile.state.postgres import DEFAULT_SCHEMA

        return self.state_schema or DEFAULT_SCHEMA

    @property
    def store(self) -> ArtifactStore:
        """The artifact store."""
        return ArtifactStore(self.root / "state" / "objects")

    def snapshot(self) -> StateSnapshot:
        """The state, read without writing it."""
        if self.state_url is None:
            return StateStore.read_snapshot(self.state_path)
        from ltx_reconcile.state.postgres import PostgresStateStore

        snapshot = PostgresStateStore.read_snapshot(self.state_url, schema=self._schema)
        return snapshot or StateSnapshot(path=self.state_path, lineage=None, serial=0)

    def images(self) -> dict[str, ImageRecord]:
        """Image name -> its record in the state."""
        return dict(self.snapshot().images)

    def image_keys(self) -> set[str]:
        """The distinct image keys of the images the state records."""
        return {record.key for record in self.images().values()}

    def journal(self) -> list[JournalRow]:
        """Every journal entry, oldest first (none while there is no state yet)."""
        rows = self._query(
            "SELECT id, key, image, attempt, reply_ref, job_id, state, extra_of "
            "FROM journal ORDER BY id"
        )
        return [JournalRow(*row) for row in rows]

    def integrity_check(self) -> str:
        """`ok` when the state is sound: for the file, SQLite's verdict on its pages and
        its foreign keys; on PostgreSQL, which checks pages itself, that every digest the
        images and the journal name has its artifact row."""
        if self.state_url is None:
            with contextlib.closing(self._connect()) as conn:
                ((verdict,),) = conn.execute("PRAGMA integrity_check").fetchall()
                broken = conn.execute("PRAGMA foreign_key_check").fetchall()
            return f"foreign key violations: {broken}" if broken else str(verdict)
        broken = self._query(
            "SELECT 'images', name FROM images WHERE digest IS NOT NULL "
            "AND digest NOT IN (SELECT digest FROM artifacts) UNION ALL "
            "SELECT 'journal', CAST(id AS TEXT) FROM journal WHERE digest IS NOT NULL "
            "AND digest NOT IN (SELECT digest FROM artifacts)"
        )
        return f"foreign key violations: {broken}" if broken else "ok"

    def recorded_spend(self) -> dict[str, float]:
        """Job id -> credits the state's spend ledger holds for it, refunds deducted."""
        rows = self._query("SELECT job_id, COALESCE(SUM(amount), 0) FROM spend GROUP BY job_id")
        return {job_id: float(total) for job_id, total in rows if total}

    def _query(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of one read of the state, on either backend; none while there is no
        state yet, or while a child is still creating its tables."""
        if self.state_url is None:
            if not self.state_path.exists():
                return []
            with contextlib.closing(self._connect()) as conn:
                try:
                    return [tuple(row) for row in conn.execute(sql)]
                except sqlite3.OperationalError as err:
                    if "no such table" not in str(err):
                        raise
                    return []
        import psycopg
        from psycopg import sql as pg_sql

        with self._pg_connect() as conn:
            conn.execute(
                pg_sql.SQL("SET search_path TO {}").format(pg_sql.Identifier(self._schema))
            )
            try:
                return [tuple(row) for row in conn.execute(sql.encode())]
            except psycopg.errors.UndefinedTable:
                return []

    def _pg_connect(self) -> AbstractContextManager[Any]:
        import psycopg

        assert self.state_url is not None
        return psycopg.connect(self.state_url, autocommit=True)

    def _connect(self) -> sqlite3.Connection:
        # mode=rw with query_only, as the product's own reader: a read-only connection to
        # a WAL file would leave -wal and -shm files behind.
        conn = sqlite3.connect(f"file:{self.state_path}?mode=rw", uri=True, timeout=5)
        conn.execute("PRAGMA query_only = ON")
        return conn

    def output_bytes(self, name: str) -> bytes:
        """The bytes of image `name`'s named output file."""
        return (self.root / self.images()[name].output).read_bytes()

    def files(self) -> Iterator[Path]:
        """Every file below the root and the scratch space (which holds every child's
        captured output and its TMPDIR)."""
        for base in (self.root, self.scratch):
            yield from (p for p in base.rglob("*") if p.is_file())

    def places_holding(self, secret: str) -> list[str]:
        """Every file the children could write (state, store, outputs, plans, crash logs,
        captured stdout and stderr) that holds `secret`, raw or URL-encoded."""
        needles = {secret.encode(), quote(secret, safe="").encode()}
        return [
            str(path)
            for path in self.files()
            if any(needle in path.read_bytes() for needle in needles)
        ]

    # -- the invariants every apply test ends on ------------------------------------------

    @staticmethod
    def net_spend_by_job(ledger: Sequence[LedgerEntry]) -> dict[str, float]:
        """Job id -> credits the API kept for it, from the emulator's `ledger`."""
        net: dict[str, float] = {}
        for entry in ledger:
            sign = 1 if entry.kind is LedgerKind.CHARGE else -1
            net[entry.job_id] = net.get(entry.job_id, 0) + sign * entry.amount
        return {job_id: amount for job_id, amount in net.items() if amount}

    def net_charges_by_key(self, ledger: Sequence[LedgerEntry]) -> dict[str, int]:
        """Image key -> jobs charged minus jobs refunded, from the emulator's `ledger`.

        Each ledger entry is tied to a key through the journal entry with its replyRef.
        AssertionError when one has none: a create was paid for that was never journaled.
        """
        keys = {row.reply_ref: row.key for row in self.journal()}
        unjournaled = [e.job_id for e in ledger if e.reply_ref not in keys]
        assert not unjournaled, f"paid jobs with no journal entry: {unjournaled}"
        net: dict[str, int] = {}
        for entry in ledger:
            key = keys[entry.reply_ref or ""]
            net[key] = net.get(key, 0) + (1 if entry.kind is LedgerKind.CHARGE else -1)
        return {key: count for key, count in net.items() if count}

    def output_problems(self) -> list[str]:
        """What is wrong with the recorded images; empty when every one is `present`, its
        object verifies, and its named file holds exactly the object's bytes."""
        problems = []
        store = self.store
        for name, record in sorted(self.images().items()):
            output = self.root / record.output
            if record.status != "present" or record.digest is None:
                problems.append(f"{name}: status {record.status}, digest {record.digest}")
            elif not store.verify(record.digest):
                problems.append(f"{name}: object {record.digest} is missing or corrupt")
            elif not output.is_file():
                problems.append(f"{name}: {record.output} is missing")
            elif output.read_bytes() != store.path_for(record.digest).read_bytes():
                problems.append(f"{name}: {record.output} differs from its object")
            elif digest_bytes(output.read_bytes()) != record.digest:
                problems.append(f"{name}: {record.output} does not hash to its digest")
        return problems
