"""Several `ltx-reconcile apply` processes started at once, each one timed on its own (issue 8).

This module starts the runners, keeps each one's stderr (its `--json` events, one per line),
and reaps each with `wait4()`, which gives that process's own exit time and CPU time even
while the others still run. It builds no workspace and judges no result: that is
bench/apply_bench.py's business.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Runner", "RunnerResult", "run_at_once"]

_STOP_TIMEOUT_S = 10


@dataclass(frozen=True, slots=True)
class Runner:
    """One process to start: its command line, environment, and where its output goes."""

    command: list[str]
    env: dict[str, str]
    cwd: Path
    stdout: Path
    stderr: Path
    """Its stderr lines, each prefixed by the seconds since the runners started."""


@dataclass(slots=True)
class RunnerResult:
    """What one runner did: exit code, start and end (perf_counter), CPU, events."""

    started: float
    exit_code: int | None = None
    ended: float | None = None
    cpu_s: float = 0.0
    events: list[dict[str, object]] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    """Its stderr lines that are not JSON events: warnings and errors."""

    def count(self, event: str, **fields: object) -> int:
        """How many of its events are of type `event` and have these field values."""
        return sum(
            1
            for record in self.events
            if record.get("event") == event
            and all(record.get(name) == value for name, value in fields.items())
        )


def run_at_once(runners: Sequence[Runner]) -> list[RunnerResult]:
    """Start every runner, one right after the other, and wait until all have exited.

    A runner still alive when this is interrupted is terminated, so no apply outlives the
    benchmark that started it.
    """
    processes: list[subprocess.Popen[bytes]] = []
    threads = []
    results = []
    origin = time.perf_counter()
    try:
        for runner in runners:
            result = RunnerResult(started=time.perf_counter())
            process = _start(runner)
            processes.append(process)
            results.append(result)
            thread = threading.Thread(
                target=_follow, args=(process, runner, result, origin), daemon=True
            )
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
    finally:
        _stop(processes, threads)
    return results


def _start(runner: Runner) -> subprocess.Popen[bytes]:
    with runner.stdout.open("wb") as out:
        return subprocess.Popen(
            runner.command,
            stdout=out,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=runner.env,
            cwd=runner.cwd,  # not the caller's: `-m` puts the cwd first on sys.path
        )


def _follow(
    process: subprocess.Popen[bytes], runner: Runner, result: RunnerResult, origin: float
) -> None:
    """Read the runner's stderr to its end, then reap it; fill in `result`."""
    assert process.stderr is not None  # noqa: S101 - started with stderr=PIPE
    with runner.stderr.open("w") as log:
        for raw in process.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            log.write(f"{time.perf_counter() - origin:9.3f} {line}\n")
            _keep(line, result)
    # wait4, not Popen.wait: it also returns this child's own rusage, where RUSAGE_CHILDREN
    # would only give the sum over every child reaped so far.
    _, status, usage = os.wait4(process.pid, 0)
    result.ended = time.perf_counter()
    result.exit_code = os.waitstatus_to_exitcode(status)
    result.cpu_s = usage.ru_utime + usage.ru_stime
    # Popen must know the child is reaped, or it would wait for it again.
    process.returncode = result.exit_code


def _keep(line: str, result: RunnerResult) -> None:
    if line.startswith("{"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict) and "event" in record:
            result.events.append(record)
            return
    result.lines.append(line)


def _stop(processes: list[subprocess.Popen[bytes]], threads: list[threading.Thread]) -> None:
    """SIGTERM every runner not reaped yet, SIGKILL those still alive 10 s later.

    The follower threads do the reaping, so that no two callers wait for one child.
    """
    _signal(processes, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    _signal(processes, signal.SIGKILL)
    for thread in threads:
        thread.join()


def _signal(processes: list[subprocess.Popen[bytes]], number: signal.Signals) -> None:
    # os.kill, not Popen.send_signal: that polls, and a poll could reap the child before
    # the follower's wait4() does.
    for process in processes:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, number)
