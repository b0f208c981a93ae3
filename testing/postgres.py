"""A throwaway PostgreSQL server for tests: Debian's binaries, a temporary cluster, loopback.

    with PostgresServer.start() as server:
        store = PostgresStateStore.open(server.url, schema="t1")

`start()` runs `initdb` and `pg_ctl` from /usr/lib/postgresql/*/bin (the newest version)
in a fresh temporary directory, listening on 127.0.0.1 only (no Unix socket), and `stop()`
stops the server and deletes the directory. PostgreSQL refuses to run as root, so as root
both run as the `postgres` OS user that Debian's package creates, through `runuser`.
It raises `PostgresUnavailable`, saying why, when no server can be started: the tests that
need one are skipped for that reason, or fail when CI is set (tests/state/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

__all__ = ["PostgresServer", "PostgresUnavailable", "find_bin_dir"]

SUPERUSER: Final = "ltx"
"""The cluster's superuser; the cluster trusts every loopback connection, so no password."""

_START_TIMEOUT_S: Final = 60


class PostgresUnavailable(Exception):  # noqa: N818 (reads as a reason: "Postgres unavailable")
    """No PostgreSQL server could be started here; the message says why."""


def find_bin_dir(root: Path = Path("/usr/lib/postgresql")) -> Path | None:
    """The newest installed PostgreSQL's bin directory holding initdb and pg_ctl, or None."""
    candidates = [
        path / "bin"
        for path in root.glob("*")
        if (path / "bin" / "initdb").is_file() and (path / "bin" / "pg_ctl").is_file()
    ]
    versions = [path for path in candidates if path.parent.name.isdigit()]
    return max(versions, key=lambda path: int(path.parent.name), default=None)


@dataclass
class PostgresServer:
    """A running throwaway cluster; `url` connects as its superuser to database `postgres`."""

    bin_dir: Path
    root: Path
    port: int
    run_as: str | None

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.root / "data"

    @property
    def url(self) -> str:
        """A libpq URL for the superuser over loopback TCP."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"

    @classmethod
    def start(cls) -> PostgresServer:
        """initdb a new cluster in a temporary directory and start it on a free port.

        Raises `PostgresUnavailable` when the binaries are missing or a step fails.
        """
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise PostgresUnavailable(
                "no PostgreSQL binaries under /usr/lib/postgresql (apt-get install postgresql)"
            )
        run_as = _unprivileged_user()
        # Directly under /tmp, not in pytest's tmp_path: that is mode 0700, and the
        # `postgres` user must be able to reach the data directory.
        root = Path(tempfile.mkdtemp(prefix="ltx-pg-"))
        server = cls(bin_dir, root, _free_port(), run_as)
        try:
            server._init_and_start()
        except BaseException:
            server.stop()
            raise
        return server

    def _init_and_start(self) -> None:
        if self.run_as is not None:
            shutil.chown(self.root, user=self.run_as)
        self._run(
            "initdb",
            "--pgdata",
            str(self.data_dir),
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            # A throwaway cluster need not survive power loss: no fsync at initdb.
            "--no-sync",
        )
        options = " ".join(
            (
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                "-c unix_socket_directories=''",
                # Durability is the server's own business, and this one is thrown away:
                # skipping fsync keeps each test's commits fast on a shared CI disk.
                "-c fsync=off",
                "-c synchronous_commit=off",
                "-c full_page_writes=off",
            )
        )
        self._run(
            "pg_ctl",
            "start",
            "--wait",
            f"--timeout={_START_TIMEOUT_S}",
            "--pgdata",
            str(self.data_dir),
            "--log",
            str(self.root / "server.log"),
            "-o",
            options,
        )

    def stop(self) -> None:
        """Stop the server (fast shutdown) if it runs, and delete its directory."""
        if (self.data_dir / "postmaster.pid").exists():
            # The directory goes anyway: a server that will not stop loses its files.
            with contextlib.suppress(PostgresUnavailable):
                self._run(
                    "pg_ctl", "stop", "--wait", "--mode", "fast", "--pgdata", str(self.data_dir)
                )
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        """The server's log so far, for a failing test's report."""
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            cwd=self.root,
            timeout=_START_TIMEOUT_S + 30,
            check=False,
        )
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"{program} failed ({result.returncode}): {result.stderr.strip()}\n{self.log()}"
            )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _unprivileged_user() -> str | None:
    """Who runs initdb and the server: None for ourselves, `postgres` when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable(
            "running as root, and there is no `postgres` user to run the server as "
            "(Debian's postgresql package creates it)"
        ) from None
    if shutil.which("runuser") is None:
        raise PostgresUnavailable("running as root, and `runuser` is missing")
    return "postgres"


def _free_port() -> int:
    # The port is free now; the server binds it a moment later. A clash fails start()
    # with a clear message rather than a hang.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
