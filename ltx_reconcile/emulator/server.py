"""Serving the emulator over real HTTP: in a background thread, or in the foreground.

`serve_emulator` is how tests and the demo run an emulator in-process: it binds a socket
on loopback itself (port 0 picks a free port), runs uvicorn on it in a thread (uvicorn
installs signal handlers only on the main thread, so a thread leaves the test runner's
alone), waits until the server has started, and stops it cleanly on exit. The
`RunningEmulator` it yields reaches into the same state the routes use: the ledger, jobs,
faults, balances. `run_emulator` serves in the foreground for the CLI, where Ctrl-C stops it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Final

import uvicorn

from ltx_reconcile.emulator.accounts import Account
from ltx_reconcile.emulator.app import create_app, open_state
from ltx_reconcile.emulator.config import EmulatorConfig, FaultConfig
from ltx_reconcile.emulator.jobs import Job
from ltx_reconcile.emulator.ledger import LedgerEntry, LedgerKind
from ltx_reconcile.emulator.state import EmulatorState

__all__ = ["RunningEmulator", "bind_socket", "run_emulator", "serve_emulator"]

_START_TIMEOUT_S: Final = 10.0
_STOP_TIMEOUT_S: Final = 10.0
_GRACEFUL_SHUTDOWN_S: Final = 1


class RunningEmulator:
    """An emulator serving on loopback, with direct access to its state for tests."""

    def __init__(self, state: EmulatorState, origin: str) -> None:
        self.state = state
        self.origin = origin
        """`http://127.0.0.1:<port>`: where storage URLs and `/_emulator/` live."""
        self.base_url = origin + state.config.base_path.rstrip("/")
        """The API's base URL, `origin + /v1/ltxstudio`."""

    def __repr__(self) -> str:
        return f"RunningEmulator(base_url={self.base_url!r})"

    @property
    def config(self) -> EmulatorConfig:
        """The configuration it was started with."""
        return self.state.config

    def ledger(self) -> list[LedgerEntry]:
        """Every charge and refund so far, in order."""
        return self.state.ledger()

    def charges(self) -> list[LedgerEntry]:
        """Only the charges."""
        return [e for e in self.ledger() if e.kind is LedgerKind.CHARGE]

    def charges_by_reply_ref(self) -> dict[str | None, int]:
        """How many jobs were charged for each replyRef (None for jobs sent without one)."""
        return dict(Counter(e.reply_ref for e in self.charges()))

    def charges_by_request(self) -> dict[str, int]:
        """How many jobs were charged for each normalised request digest."""
        return dict(Counter(e.request_sha256 for e in self.charges()))

    def net_spend(self, email: str | None = None) -> int:
        """Credits charged minus credits refunded, for one account or all."""
        total = 0
        for entry in self.ledger():
            if email is None or entry.email == email.lower():
                total += entry.amount if entry.kind is LedgerKind.CHARGE else -entry.amount
        return total

    def jobs(self) -> list[Job]:
        """Every retained job, oldest first."""
        return self.state.jobs()

    def account(self, email: str) -> Account | None:
        """One account with its current balance."""
        return self.state.account(email)

    def set_faults(self, faults: FaultConfig) -> None:
        """Replace the fault configuration now (rules restart their counts)."""
        self.state.faults.replace(faults)

    def set_balance(self, email: str, balance: int) -> Account:
        """Set an account's credits; KeyError for an unknown email."""
        return self.state.set_balance(email, balance)

    def reset(self) -> None:
        """Forget all jobs, assets and ledger entries; restore the configured accounts."""
        self.state.reset()

    def wait_for_charges(self, count: int, timeout_s: float = 10.0) -> list[LedgerEntry]:
        """Poll until at least `count` charges exist; TimeoutError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while True:
            charges = self.charges()
            if len(charges) >= count:
                return charges
            if time.monotonic() >= deadline:
                msg = f"expected {count} charges within {timeout_s} s, saw {len(charges)}"
                raise TimeoutError(msg)
            time.sleep(0.005)


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A TCP socket bound to `host:port`, ready to hand to uvicorn."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio enables TCP_NODELAY only on accepted sockets whose proto
    # is IPPROTO_TCP, and without it every request on a reused connection stalls ~40 ms
    # (the response's body segment waits for the ACK the client delays).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _origin_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class _Server(uvicorn.Server):
    """uvicorn's server, telling someone once it is accepting connections."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_ready()


def _uvicorn_config(config: EmulatorConfig, state: EmulatorState, http: str) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(config, state=state),
        http=http,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
    )


@contextlib.contextmanager
def serve_emulator(
    config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", http: str = "auto"
) -> Iterator[RunningEmulator]:
    """Serve an emulator on a free loopback port in a thread for the `with` block.

    `http` picks uvicorn's HTTP implementation (`auto`, `h11`, `httptools`). Raises
    RuntimeError if the server does not start within 10 s.
    """
    config = config or EmulatorConfig()
    state = open_state(config)
    sock = bind_socket(host, 0)
    ready = threading.Event()
    server = _Server(_uvicorn_config(config, state, http), ready.set)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="ltx-emulator", daemon=True
    )
    thread.start()
    try:
        if not _wait_started(ready, thread):
            msg = "the emulator did not start within 10 s"
            raise RuntimeError(msg)
        yield RunningEmulator(state, _origin_of(sock))
    finally:
        server.should_exit = True
        thread.join(_STOP_TIMEOUT_S)
        sock.close()
        state.close()


def _wait_started(ready: threading.Event, thread: threading.Thread) -> bool:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready.wait(0.01):
            return True
        if not thread.is_alive():
            return False
    return False


def run_emulator(
    config: EmulatorConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve in the foreground until SIGINT/SIGTERM; `on_ready` gets the API base URL."""
    state = open_state(config)
    sock = bind_socket(host, port)
    base_url = _origin_of(sock) + config.base_path.rstrip("/")

    def ready() -> None:
        if on_ready is not None:
            on_ready(base_url)

    try:
        _Server(_uvicorn_config(config, state, "auto"), ready).run(sockets=[sock])
    finally:
        sock.close()
        state.close()
