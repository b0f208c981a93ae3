"""Apply benchmark (issue 5): N images against the emulator, each in its own process.

The emulator runs as `ltx-reconcile emulator` with a fixed job latency L (sigma 0, no
jitter) and one account whose maxJobs is the concurrency M; the client is a separate
`ltx-reconcile apply --auto-approve` process. With M slots kept full, the best possible
wall time is ceil(N / M) x L, so

    efficiency = ceil(N / M) x L / wall time of the apply process      (goal >= 0.95)
    client CPU = user + sys of the apply process only, per image        (goal <= 5 ms)

The wall time is the whole `apply` process, start-up and planning included: that is what a
user waits for. The emulator slows a job accepted while more than 10 others execute on the
account (E37), so above M = 10 the ideal is taken from the emulator's real job durations
instead (`GET /_emulator/jobs`: their sum / M, when that is larger).

Both processes share the machine: the report shows the emulator's CPU (it draws and
encodes a PNG per image), the load average and a calibration loop, to judge the figures by.

After the apply the script checks its exit code, that the emulator's ledger
(`GET /_emulator/ledger`) holds exactly N charges and no refund, and that N named files
were written; it exits 2 if any of that fails, 1 if a goal is missed, 0 otherwise.

Several runners (issue 8), `--runners 1,2,4`: for each count R in turn, R `apply` processes
started at once, each in a workspace directory of its own holding the same specs (separate
CI machines), all sharing one state and one artifact store as README's "Team setup" has
it: a fresh schema on one throwaway PostgreSQL server (testing/postgres.py) and a fresh
bucket on moto's S3 server, run as a process of its own so that its CPU shows
(testing/s3server.py); `--shared-store dir` gives them one local objects directory
instead, for when moto is the bottleneck. Each count gets a fresh emulator whose one
account takes 100 jobs at once (the API's most), so the account never refuses a job.

Every runner gets the same `--parallelism P`, by default 10 // the largest R (2 for 1,2,4).
R x P jobs then never pass the 10 executing jobs beyond which the emulator slows new ones
(E37): a job takes L however many runners there are, the ideal wall time is
ceil(N / (R x P)) x L (or the real job time / (R x P), when larger), and R runners can be R
times as fast as one. A total held at 10 would give every R the same ideal; P = 10 each
would let E37 make 4 runners' jobs 4 times as slow: neither would show what runners add.
Runners pass `--lock-timeout 600`, so that one planning while another holds the lease waits.

L = 0.1 s by default keeps 1 runner's round near a minute, but then 4 runners need 80
images/s, and every image costs CPU in the emulator (it draws a PNG), the runners, moto and
PostgreSQL: on a small machine they fill every core first. The report adds up that CPU per
round and says when the machine, not the runners, set the pace; a larger --latency (0.75 s
on 2 CPUs) takes the machine out of the comparison, at the price of longer rounds.

Per count the report gives the wall time from the first start to the last exit, the
speed-up over 1 runner, each runner's exit, time, images generated (its summary), jobs
paid (its `--json` events) and CPU, and the runners' CPU per image. It checks that every runner exited 0, that the
ledger holds N charges and no refund, that the state lists N present images and that every
runner's out/ holds N named files; it exits 2 if any of that fails, 0 otherwise.

    .venv/bin/python bench/apply_bench.py                  # 1000 images, L=0.5 s, M=10
    .venv/bin/python bench/apply_bench.py --images 200 --latency 0.2
    .venv/bin/python bench/apply_bench.py --profile apply.prof   # client under cProfile
    .venv/bin/python bench/apply_bench.py --tmp-root /dev/shm    # without fsync latency
    .venv/bin/python bench/apply_bench.py --keep   # keep the logs and emulator-jobs.json
    .venv/bin/python bench/apply_bench.py --runners 1,2,4        # 1000 images, L=0.1 s, P=2
    .venv/bin/python bench/apply_bench.py --runners 1,2 --images 100 --shared-store dir

Run it with the project's virtualenv Python: both processes are `python -m ltx_reconcile`
from the same interpreter (the `ltx-reconcile` script runs exactly that entry point).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final, TypeVar
from urllib.parse import urlsplit

import boto3
import httpx
from botocore.config import Config as BotoConfig

# Run as `python bench/apply_bench.py`, Python puts bench/ first on sys.path, not the
# checkout: the runner mode's helpers (bench/runners.py, testing/) are found from its root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.runners import Runner, RunnerResult, run_at_once
from testing import s3server
from testing.postgres import PostgresServer, PostgresUnavailable

TOKEN: Final = "apply-bench-token"  # noqa: S105 - a throwaway token for a loopback emulator
EMAIL: Final = "bench@ltx-emulator.test"
FLUX_PRICE: Final = 28
EFFICIENCY_GOAL: Final = 0.95
CPU_GOAL_MS: Final = 5.0
CALIBRATION_LOOPS: Final = 1_000_000
READY_TIMEOUT_S: Final = 30.0
E37_UNSLOWED_JOBS: Final = 10
"""Jobs executing on an account beyond which the emulator slows every new one (E37)."""
RUNNERS_MAX_JOBS: Final = 100
"""The account's maxJobs in the runner mode: the API's most, never what limits the runners."""
RUNNERS_LATENCY_S: Final = 0.1
"""The runner mode's default L: 1 runner of P=2 then takes about a minute for 1000 images."""
LOCK_TIMEOUT_S: Final = 600
"""How long a runner waits for another's state lease: longer than any whole run."""
_SUMMARY: Final = re.compile(
    r"Apply (?:complete|stopped): (?P<generated>\d+) generated"
    r".*?(?:\((?P<by_others>\d+) more made by other applies|$)",
    re.MULTILINE,
)
"""An apply's summary line: the images it generated and, on a shared state, those it took
from other runners (its `ImageDone` events do not tell the two apart)."""
BUCKET: Final = "apply-bench"
S3_BUSY_SHARE: Final = 0.9
"""moto's share of one core in a round above which it, not the runners, may set the pace."""
MACHINE_BUSY_SHARE: Final = 0.85
"""The share of all CPUs the measured processes keep busy above which the machine is full."""

_T = TypeVar("_T")

SUBJECTS: Final = (
    "lighthouse", "fox", "airship", "cathedral", "samurai", "orchard", "robot", "glacier",
    "market", "dragon", "violinist", "submarine", "desert caravan", "owl", "train station",
    "astronaut", "bonsai", "carnival", "monk", "volcano",
)  # fmt: skip
PLACES: Final = (
    "at dawn", "in the rain", "under a full moon", "in a snowstorm", "at golden hour",
    "in thick fog", "at midnight", "in spring bloom", "after a storm", "in autumn light",
)  # fmt: skip
STYLES: Final = ("cinematic", "hand_drawn", "anime", "vintage", "film_noir", "dreamy")


@dataclass(frozen=True, slots=True)
class Config:
    """The command line."""

    images: int
    latency_s: float
    concurrency: int
    poll_interval_s: float
    files: int
    profile: Path | None
    profile_cpu: bool
    keep: bool
    tmp_root: Path | None
    client_path: Path | None
    runners: tuple[int, ...]
    """The runner mode's counts of runners, in order (empty: one apply, the issue 5 mode)."""
    runner_parallelism: int
    """Every runner's `--parallelism` in the runner mode."""
    shared_store: str
    """The runner mode's store shared by the runners: "s3" (a bucket) or "dir"."""


@dataclass(slots=True)
class StderrLog:
    """The apply's stderr lines, each with the time it arrived (for the phase breakdown)."""

    lines: list[tuple[float, str]] = field(default_factory=list)

    def first(self, prefix: str) -> float | None:
        """When the first line starting with `prefix` arrived."""
        return next((t for t, line in self.lines if line.startswith(prefix)), None)

    def last(self, suffix: str) -> float | None:
        """When the last line containing `suffix` arrived."""
        return next((t for t, line in reversed(self.lines) if suffix in line), None)


@dataclass(frozen=True, slots=True)
class Round:
    """What one count of runners took, started at once on a fresh state, store and emulator."""

    count: int
    results: list[RunnerResult]
    problems: list[str]
    job_busy_s: float
    server_cpu_s: dict[str, float | None]
    """CPU each server spent while the runners ran, by name (None: unreadable)."""
    summaries: list[str]
    """Each runner's stdout: the plan and its apply summary."""

    def generated(self) -> list[tuple[int, int] | None]:
        """Per runner: images it generated, images other runners made (None: no summary)."""
        found = [_SUMMARY.search(text) for text in self.summaries]
        return [
            None if match is None else (int(match["generated"]), int(match["by_others"] or 0))
            for match in found
        ]

    @property
    def wall_s(self) -> float:
        """From the first runner's start to the last one's exit."""
        ends = [result.ended or result.started for result in self.results]
        return max(ends) - min(result.started for result in self.results)

    @property
    def cpu_s(self) -> float:
        """The runners' CPU time, all of them together."""
        return sum(result.cpu_s for result in self.results)


@dataclass(frozen=True, slots=True)
class Run:
    """What one apply process took."""

    exit_code: int
    wall_s: float
    cpu_s: float
    started: float
    stderr: StderrLog
    emulator_cpu_s: float | None
    """CPU the emulator spent while the apply ran (it competes for the same cores)."""


# -- arguments ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--images", type=int, default=1000, help="images to generate (1000)")
    parser.add_argument(
        "--latency", type=float, default=None, help="job latency L in s (0.5; runners: 0.1)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="account maxJobs M, the client's limit (10; runners: 100, the limit is P)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=None,
        help="client LTX_POLL_INTERVAL_S in s (default L/20)",
    )
    parser.add_argument("--files", type=int, default=10, help="spec files to spread images over")
    parser.add_argument(
        "--profile", type=Path, default=None, help="run the client under cProfile, write here"
    )
    parser.add_argument(
        "--profile-cpu",
        action="store_true",
        help="with --profile: time functions by process CPU time, not wall time",
    )
    parser.add_argument(
        "--tmp-root",
        type=Path,
        default=None,
        help="make the temp dir here (e.g. /dev/shm to take fsync latency out)",
    )
    parser.add_argument(
        "--client-path",
        type=Path,
        default=None,
        help="prepend DIR to the client's PYTHONPATH (A/B runs of another ltx_reconcile copy)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir, print its path")
    _add_runner_arguments(parser)
    args = parser.parse_args(argv)
    runners = _runner_counts(parser, args.runners)
    latency = _given_or(args.latency, RUNNERS_LATENCY_S if runners else 0.5)
    concurrency = _given_or(args.concurrency, RUNNERS_MAX_JOBS if runners else 10)
    parallelism = _given_or(
        args.runner_parallelism, max(1, E37_UNSLOWED_JOBS // max(runners, default=1))
    )
    if args.images < 1 or concurrency < 1 or args.files < 1 or latency <= 0 or parallelism < 1:
        parser.error("--images, --concurrency, --files, --runner-parallelism: >= 1; --latency: > 0")
    if runners and args.profile is not None:
        parser.error("--profile profiles one apply: it does not go with --runners")
    poll = args.poll_interval if args.poll_interval is not None else latency / 20
    return Config(
        images=args.images,
        latency_s=latency,
        concurrency=concurrency,
        poll_interval_s=poll,
        files=min(args.files, args.images),
        profile=args.profile.resolve() if args.profile else None,
        profile_cpu=args.profile_cpu,
        keep=args.keep,
        tmp_root=args.tmp_root,
        client_path=args.client_path.resolve() if args.client_path else None,
        runners=runners,
        runner_parallelism=parallelism,
        shared_store=args.shared_store,
    )


def _add_runner_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runners",
        default=None,
        metavar="COUNTS",
        help="runner mode: for each count R (e.g. 1,2,4), R applies at once on one state",
    )
    parser.add_argument(
        "--runner-parallelism",
        type=int,
        default=None,
        metavar="P",
        help="each runner's --parallelism (10 // the largest count: E37 slows past 10 jobs)",
    )
    parser.add_argument(
        "--shared-store",
        choices=("s3", "dir"),
        default="s3",
        help="the runners' store: a bucket on moto's S3 server, or one local directory (s3)",
    )


def _given_or(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def _runner_counts(parser: argparse.ArgumentParser, text: str | None) -> tuple[int, ...]:
    if text is None:
        return ()
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        parser.error(f"--runners takes distinct counts >= 1 separated by commas, not {text!r}")
    return counts


# -- the workspace --------------------------------------------------------------------------


def prompt_for(index: int) -> str:
    """A distinct prompt per image (the index makes it unique, the words make it plausible)."""
    subject = SUBJECTS[index % len(SUBJECTS)]
    place = PLACES[(index // len(SUBJECTS)) % len(PLACES)]
    return f"A {subject} {place}, study number {index}, detailed, wide composition"


def write_specs(specs_dir: Path, images: int, files: int) -> None:
    """`files` YAML files holding `images` flux images between them, each with its seed."""
    specs_dir.mkdir(parents=True)
    per_file = math.ceil(images / files)
    for number in range(files):
        indices = range(number * per_file, min(images, (number + 1) * per_file))
        lines = [
            f"# apply_bench: images {indices.start}..{indices.stop - 1}",
            "defaults:",
            "  model: flux",
            '  aspect_ratio: "1:1"',
            "images:",
        ]
        for index in indices:
            lines += [
                f"  img-{index:05d}:",
                f"    prompt: {json.dumps(prompt_for(index))}",
                f"    style: {STYLES[index % len(STYLES)]}",
                f"    seed: {100_000 + index}",
            ]
        (specs_dir / f"batch-{number:02d}.yaml").write_text("\n".join(lines) + "\n")


# -- the emulator ---------------------------------------------------------------------------


def cli() -> list[str]:
    """`ltx-reconcile` as this interpreter runs it."""
    return [sys.executable, "-m", "ltx_reconcile"]


def start_emulator(config: Config, log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start the emulator process; it and its API base URL once it serves."""
    balance = config.images * FLUX_PRICE * 2 + 10_000
    command = [
        *cli(), "emulator", "--port", "0", "--test-mode", "--time-scale", "1",
        "--latency-median-s", repr(config.latency_s), "--latency-sigma", "0",
        "--account", f"{EMAIL}:{config.concurrency}:{balance}",
        "--artifact-lag-reads", "0", "--token", TOKEN,
    ]  # fmt: skip
    return _serve(command, log_dir / "emulator", "Emulator serving ", "the emulator", cwd=log_dir)


def start_s3_server(log_dir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """Start moto's S3 server as a process (testing/s3server.py); it and its endpoint URL."""
    command = [sys.executable, "-m", "testing.s3server"]
    root = Path(__file__).resolve().parent.parent
    return _serve(
        command, log_dir / "s3-server", s3server.READY_PREFIX, "the S3 server", cwd=root, env=env
    )


def _serve(
    command: list[str],
    log_stem: Path,
    ready_prefix: str,
    name: str,
    *,
    cwd: Path,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start a server; it and the URL it prints after `ready_prefix` once it serves."""
    out_path, err_path = log_stem.with_suffix(".out"), log_stem.with_suffix(".err")
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=cwd, env=env
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in out_path.read_text().splitlines():
            if line.startswith(ready_prefix):
                return process, line.removeprefix(ready_prefix).strip()
        if process.poll() is not None:
            break
        time.sleep(0.02)
    stop(process)
    raise SystemExit(f"FAIL: {name} did not start:\n{err_path.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """End a process this script started: SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds_of(pid: int, *, reaped_children: bool = False) -> float | None:
    """User + sys CPU seconds of a running process (Linux /proc), or None.

    With `reaped_children`, also those of its children that have exited and been waited
    for: PostgreSQL's connections are such children of its postmaster.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = sum(int(value) for value in fields[11 : 15 if reaped_children else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def control(base_url: str, what: str) -> list[dict[str, object]]:
    """`GET /_emulator/<what>` (test-mode control surface, never under the API prefix)."""
    parts = urlsplit(base_url)
    response = httpx.get(
        f"{parts.scheme}://{parts.netloc}/_emulator/{what}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    response.raise_for_status()
    entries: list[dict[str, object]] = response.json()
    return entries


def busy_s(jobs: list[dict[str, object]]) -> float:
    """The summed duration of the emulator's jobs (acceptance to end), in seconds."""
    total_ms = 0
    for job in jobs:
        accepted, ends = job.get("acceptedMs"), job.get("endsMs")
        if isinstance(accepted, int) and isinstance(ends, int):
            total_ms += ends - accepted
    return total_ms / 1000


# -- the client -----------------------------------------------------------------------------


_CPU_PROFILE: Final = """\
import cProfile, runpy, sys, time
out = sys.argv[1]
sys.argv = ["ltx-reconcile", *sys.argv[2:]]
profile = cProfile.Profile(time.process_time)
try:
    profile.runcall(runpy.run_module, "ltx_reconcile", run_name="__main__", alter_sys=True)
finally:
    profile.dump_stats(out)
"""


def client_command(config: Config) -> list[str]:
    """`ltx-reconcile`, under cProfile when asked (by wall time, or CPU time)."""
    if config.profile is None:
        return cli()
    if config.profile_cpu:
        return [sys.executable, "-c", _CPU_PROFILE, str(config.profile)]
    return [sys.executable, "-m", "cProfile", "-o", str(config.profile), "-m", "ltx_reconcile"]


def _collect(stream: IO[bytes], log: StderrLog) -> None:
    for raw in stream:
        log.lines.append((time.perf_counter(), raw.decode(errors="replace").rstrip("\n")))


def bytecode_env(config: Config) -> dict[str, str]:
    """Our children's environment, with the package's bytecode compiled beside its sources.

    An installed copy runs from cached bytecode; a machine with PYTHONDONTWRITEBYTECODE=1
    would recompile the package at each start, which is not what a user waits for. The
    bytecode goes where Python looks by default (the package's `__pycache__/`, ignored by
    git): a PYTHONPYCACHEPREFIX would hide the dependencies' own compiled files too, and
    the measured apply would compile all of them.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE",)}
    env.pop("PYTHONPYCACHEPREFIX", None)
    if config.client_path is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(config.client_path), env.get("PYTHONPATH")])
        )
    compile_package = (
        "import compileall, os, ltx_reconcile; "
        "compileall.compile_dir(os.path.dirname(ltx_reconcile.__file__), quiet=1)"
    )
    subprocess.run([sys.executable, "-c", compile_package], env=env, check=True)
    return env


def client_env(config: Config, base_env: dict[str, str]) -> dict[str, str]:
    """An apply's environment: the emulator's token, the poll interval, no caller's choices."""
    env = {
        **base_env,
        "USEAPI_TOKEN": TOKEN,
        "LTX_POLL_INTERVAL_S": repr(config.poll_interval_s),
        "NO_COLOR": "1",
    }
    for name in ("LTX_API_URL", "LTX_EMAIL", "LTX_PARALLELISM"):
        env.pop(name, None)
    return env


def run_apply(
    config: Config, workdir: Path, base_url: str, emulator_pid: int, base_env: dict[str, str]
) -> Run:
    """Run the apply process; its exit code, wall time and CPU time (that process only)."""
    env = client_env(config, base_env)
    command = [
        *client_command(config), "-C", str(workdir), "apply",
        "--api-url", base_url, "--auto-approve",
    ]  # fmt: skip
    log = StderrLog()
    with (workdir.parent / "apply.out").open("wb") as out:
        emulator_before = cpu_seconds_of(emulator_pid)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=workdir,  # not the caller's: `-m` puts the cwd first on sys.path
        )
        assert process.stderr is not None  # noqa: S101 - stderr=PIPE
        reader = threading.Thread(target=_collect, args=(process.stderr, log), daemon=True)
        reader.start()
        exit_code = process.wait()
        wall_s = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        emulator_after = cpu_seconds_of(emulator_pid)
        reader.join(timeout=10)
    (workdir.parent / "apply.err").write_text(
        "".join(f"{at - started:9.3f} {line}\n" for at, line in log.lines)
    )
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    emulator_cpu_s = (
        emulator_after - emulator_before
        if emulator_before is not None and emulator_after is not None
        else None
    )
    return Run(exit_code, wall_s, cpu_s, started, log, emulator_cpu_s)


# -- checks and the report ------------------------------------------------------------------


def check(config: Config, run: Run, workdir: Path, base_url: str) -> list[str]:
    """Everything that makes the run invalid, as messages (empty: the run is sound)."""
    problems = []
    if run.exit_code != 0:
        tail = "\n".join(line for _, line in run.stderr.lines[-20:])
        problems.append(f"apply exited {run.exit_code}; stderr tail:\n{tail}")
    problems += ledger_problems(config.images, base_url)
    problems += named_files_problems(config.images, workdir, "")
    return problems


def ledger_problems(images: int, base_url: str) -> list[str]:
    """What is wrong with the emulator's ledger: not `images` charges, a refund, a repeat."""
    problems = []
    entries = control(base_url, "ledger")
    charges = [e for e in entries if e.get("kind") == "charge"]
    refunds = [e for e in entries if e.get("kind") == "refund"]
    jobs = {e.get("jobId") for e in charges}
    requests = {e.get("requestSha256") for e in charges}
    if len(charges) != images or len(jobs) != images:
        problems.append(
            f"the ledger shows {len(charges)} charges for {len(jobs)} jobs, "
            f"expected exactly {images}"
        )
    if len(requests) != len(charges):
        problems.append(f"{len(charges) - len(requests)} images were paid for twice")
    if refunds:
        problems.append(f"the ledger shows {len(refunds)} refunds (failed jobs)")
    return problems


def named_files_problems(images: int, workdir: Path, owner: str) -> list[str]:
    """A message unless the workspace's out/ holds `images` named files; `owner` leads it."""
    written = sum(1 for _ in (workdir / "out").glob("*.png"))
    if written != images:
        return [f"{owner}{written} named files in out/, expected {images}"]
    return []


def ideal_s(config: Config, slots: int, job_busy_s: float) -> float:
    """ceil(N / M) x L, or the emulator's real job time / M when that is larger (E37).

    M is `slots`, the jobs that may run at once: the account's limit for one apply, the
    runners' parallelism summed for several.
    """
    return max(math.ceil(config.images / slots) * config.latency_s, job_busy_s / slots)


def calibration_ms() -> float:
    """CPU milliseconds of a fixed pure-Python loop here: a yardstick for the machine."""
    started = time.process_time()
    total = 0
    for number in range(CALIBRATION_LOOPS):
        total += number
    return (time.process_time() - started) * 1000


def report(config: Config, run: Run, job_busy_s: float) -> bool:
    """Print the figures; True when both goals are met."""
    waves = math.ceil(config.images / config.concurrency)
    ideal = ideal_s(config, config.concurrency, job_busy_s)
    efficiency = ideal / run.wall_s
    cpu_ms = run.cpu_s * 1000 / config.images
    print(
        f"images            {config.images} in {config.files} spec files (flux, distinct prompts)"
    )
    print(f"job latency L     {config.latency_s:g} s (sigma 0)")
    print(f"concurrency M     {config.concurrency} (account maxJobs)")
    print(f"poll interval     {config.poll_interval_s:g} s (LTX_POLL_INTERVAL_S)")
    if config.client_path is not None:
        print(f"client code       {config.client_path}")
    print(f"ideal             {ideal:.2f} s = {waves} x {config.latency_s:g} s "
          f"(emulator job time / M: {job_busy_s / config.concurrency:.2f} s)")  # fmt: skip
    print(f"apply wall        {run.wall_s:.2f} s")
    _phases(run)
    print(f"images/s          {config.images / run.wall_s:.2f}")
    print(f"client CPU        {run.cpu_s:.2f} s = {cpu_ms:.2f} ms/image")
    _machine(config, run)
    efficiency_ok = efficiency >= EFFICIENCY_GOAL
    cpu_ok = cpu_ms <= CPU_GOAL_MS
    print(
        f"efficiency        {efficiency:.3f} (goal >= {EFFICIENCY_GOAL}) {_verdict(efficiency_ok)}"
    )
    print(f"CPU per image     {cpu_ms:.2f} ms (goal <= {CPU_GOAL_MS:g}) {_verdict(cpu_ok)}")
    if config.profile is not None:
        print(f"profile           {config.profile} (cProfile overhead inflates both figures)")
    return efficiency_ok and cpu_ok


def _phases(run: Run) -> None:
    """Where the wall time went, from when the apply's progress lines arrived."""
    applying = run.stderr.first("Applying ")
    last_done = run.stderr.last(" done -> ")
    if applying is None or last_done is None:
        return
    print(f"  start-up + plan {applying - run.started:.2f} s (until 'Applying ...')")
    print(f"  generating      {last_done - applying:.2f} s (until the last image done)")
    print(f"  summary + exit  {run.started + run.wall_s - last_done:.2f} s")


def _machine(config: Config, run: Run) -> None:
    """What else the machine was doing: the emulator's CPU, the load, a yardstick."""
    if run.emulator_cpu_s is not None:
        emulator_ms = run.emulator_cpu_s * 1000 / config.images
        share = run.emulator_cpu_s / run.wall_s
        print(f"emulator CPU      {run.emulator_cpu_s:.2f} s = {emulator_ms:.2f} ms/image "
              f"({share:.0%} of one core)")  # fmt: skip
    print(f"machine           {_machine_load()}")


def _machine_load() -> str:
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    return (f"load {load} on {os.cpu_count()} CPUs; "
            f"{CALIBRATION_LOOPS:,}-step Python loop = {calibration_ms():.0f} ms CPU")  # fmt: skip


def _verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def bench(config: Config, tmp: Path) -> int:
    """Set up, run, check and report; the exit status."""
    workdir = tmp / "workspace"
    write_specs(workdir / "specs", config.images, config.files)
    emulator, base_url = start_emulator(config, tmp)
    try:
        env = bytecode_env(config)
        run = run_apply(config, workdir, base_url, emulator.pid, env)
        problems = check(config, run, workdir, base_url)
        jobs = control(base_url, "jobs")
        (tmp / "emulator-jobs.json").write_text(json.dumps(jobs))
    finally:
        stop(emulator)
    if problems:
        print(f"apply wall        {run.wall_s:.2f} s (run invalid, no figures)")
        sys.stdout.flush()
        for problem in problems:
            print(f"FAIL: {problem}", file=sys.stderr)
        return 2
    return 0 if report(config, run, busy_s(jobs)) else 1


# -- several runners (issue 8) -------------------------------------------------------------


def bench_runners(config: Config, tmp: Path) -> int:
    """Each count of runners in turn, on one throwaway PostgreSQL server; the exit status."""
    env = bytecode_env(config)
    _runners_header(config)
    try:
        postgres = PostgresServer.start()
    except PostgresUnavailable as err:
        raise SystemExit(f"FAIL: {err}") from None
    rounds: list[Round] = []
    try:
        for count in config.runners:
            rounds.append(run_round(config, count, tmp / f"runners-{count}", postgres, env))
            report_round(config, rounds[-1], _baseline_s(rounds))
    finally:
        postgres.stop()
    report_rounds(config, rounds)
    problems = [f"{r.count} runners: {problem}" for r in rounds for problem in r.problems]
    sys.stdout.flush()
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    return 2 if problems else 0


def run_round(
    config: Config, count: int, round_dir: Path, postgres: PostgresServer, base_env: dict[str, str]
) -> Round:
    """`count` runners at once on a fresh schema, store and emulator; what they did."""
    workdirs = [round_dir / f"runner-{number}" for number in range(1, count + 1)]
    for workdir in workdirs:
        write_specs(workdir / "specs", config.images, config.files)
    with contextlib.ExitStack() as stack:
        emulator, base_url = start_emulator(config, round_dir)
        stack.callback(stop, emulator)
        s3, store_env, store_args = _shared_store(config, round_dir, base_env, stack)
        env = {
            **_without_store_or_state(client_env(config, base_env)),
            "LTX_STATE_URL": postgres.url,
            "LTX_STATE_SCHEMA": f"apply_bench_{count}_runners",
            **store_env,
        }
        command = [
            "apply", "--api-url", base_url, "--auto-approve", "--json",
            "--parallelism", str(config.runner_parallelism),
            "--lock-timeout", str(LOCK_TIMEOUT_S), *store_args,
        ]  # fmt: skip
        runners = [
            Runner([*cli(), "-C", str(workdir), *command], env, workdir,
                   round_dir / f"{workdir.name}.out", round_dir / f"{workdir.name}.err")
            for workdir in workdirs
        ]  # fmt: skip
        meters = _server_meters(emulator, s3, postgres)
        before = {name: meter() for name, meter in meters.items()}
        results = run_at_once(runners)
        spent = {name: _spent(before[name], meter()) for name, meter in meters.items()}
        problems = round_problems(config, results, workdirs, base_url, env)
        jobs = control(base_url, "jobs")
        (round_dir / "emulator-jobs.json").write_text(json.dumps(jobs))
    summaries = [runner.stdout.read_text(errors="replace") for runner in runners]
    return Round(count, results, problems, busy_s(jobs), spent, summaries)


def _server_meters(
    emulator: subprocess.Popen[bytes],
    s3: subprocess.Popen[bytes] | None,
    postgres: PostgresServer,
) -> dict[str, Callable[[], float | None]]:
    """Each server's CPU seconds so far, by the name the report gives it."""
    meters: dict[str, Callable[[], float | None]] = {
        "emulator": lambda: cpu_seconds_of(emulator.pid)
    }
    if s3 is not None:
        meters["S3 server"] = lambda: cpu_seconds_of(s3.pid)
    postmaster = int((postgres.data_dir / "postmaster.pid").read_text().split()[0])
    meters["PostgreSQL"] = lambda: cpu_seconds_of(postmaster, reaped_children=True)
    return meters


def _shared_store(
    config: Config, round_dir: Path, base_env: dict[str, str], stack: contextlib.ExitStack
) -> tuple[subprocess.Popen[bytes] | None, dict[str, str], list[str]]:
    """The runners' store: the S3 server (or None), its environment, the apply's flags."""
    if config.shared_store == "dir":
        return None, {}, ["--objects", str(round_dir / "objects")]
    server, endpoint = start_s3_server(round_dir, base_env)
    stack.callback(stop, server)
    create_bucket(endpoint, BUCKET)
    return server, {**s3server.child_env(endpoint), "LTX_STORE": f"s3://{BUCKET}/objects"}, []


def create_bucket(endpoint: str, name: str) -> None:
    """Create the bucket once, as README's team setup asks an administrator to."""
    credentials = s3server.CREDENTIALS
    client = boto3.session.Session(
        aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
        region_name=credentials["AWS_DEFAULT_REGION"],
    ).client("s3", endpoint_url=endpoint, config=BotoConfig(s3={"addressing_style": "path"}))
    client.create_bucket(Bucket=name)


def _without_store_or_state(env: dict[str, str]) -> dict[str, str]:
    # The caller's own bucket, database or AWS profile must not leak into a benchmark round.
    return {
        name: value
        for name, value in env.items()
        if not name.startswith(("AWS_", "LTX_STORE", "LTX_STATE_"))
    }


def _spent(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def round_problems(
    config: Config,
    results: list[RunnerResult],
    workdirs: list[Path],
    base_url: str,
    env: dict[str, str],
) -> list[str]:
    """Everything that makes a round invalid, as messages (empty: the round is sound)."""
    problems = []
    for number, result in enumerate(results, 1):
        if result.exit_code != 0:
            tail = "\n".join(result.lines[-20:])
            problems.append(f"runner {number} exited {result.exit_code}; stderr tail:\n{tail}")
    problems += ledger_problems(config.images, base_url)
    problems += state_problems(config.images, workdirs[0], env)
    for number, workdir in enumerate(workdirs, 1):
        problems += named_files_problems(config.images, workdir, f"runner {number}: ")
    return problems


def state_problems(images: int, workdir: Path, env: dict[str, str]) -> list[str]:
    """A message unless the shared state lists exactly `images` images, every one present."""
    listing = subprocess.run(
        [*cli(), "-C", str(workdir), "state", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=workdir,
        check=False,
    )
    if listing.returncode != 0:
        return [f"`state list` exited {listing.returncode}: {listing.stderr.strip()}"]
    statuses = Counter(str(image.get("status")) for image in json.loads(listing.stdout))
    if statuses != Counter(present=images):
        found = ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())) or "none"
        return [f"the state lists {found} images, expected {images} present"]
    return []


def _runners_header(config: Config) -> None:
    print(
        f"images            {config.images} in {config.files} spec files (flux, distinct prompts),"
        " the same in every runner's workspace"
    )
    print(f"job latency L     {config.latency_s:g} s (sigma 0)")
    print(f"account maxJobs   {config.concurrency} (one account, every runner's)")
    print(f"each runner       --parallelism {config.runner_parallelism} "
          f"--lock-timeout {LOCK_TIMEOUT_S}")  # fmt: skip
    print(f"poll interval     {config.poll_interval_s:g} s (LTX_POLL_INTERVAL_S)")
    if config.client_path is not None:
        print(f"client code       {config.client_path}")
    print("state             one throwaway PostgreSQL server, a fresh schema per round")
    if config.shared_store == "s3":
        print("store             moto's S3 server (a process), a fresh one and bucket per round")
    else:
        print("store             one local objects directory, a fresh one per round")
    sys.stdout.flush()


def _baseline_s(rounds: list[Round]) -> float | None:
    """The wall time of the round with 1 runner, if there was one."""
    return next((r.wall_s for r in rounds if r.count == 1 and not r.problems), None)


def _slots(config: Config, round_: Round) -> int:
    return round_.count * config.runner_parallelism


def report_round(config: Config, round_: Round, baseline_s: float | None) -> None:
    """Print one round's figures, as soon as it is over."""
    count, slots = round_.count, _slots(config, round_)
    ideal = ideal_s(config, slots, round_.job_busy_s)
    print(f"\n{count} runner{'s at once' if count > 1 else ''} ({slots} jobs at most)"
          f"{'' if not round_.problems else '  (checks FAILED: figures invalid)'}")  # fmt: skip
    print(f"  wall            {round_.wall_s:.2f} s, first start to last exit "
          f"(ideal {ideal:.2f} s: efficiency {ideal / round_.wall_s:.3f})")  # fmt: skip
    if baseline_s is not None:
        print(f"  speed-up        {baseline_s / round_.wall_s:.2f}x over 1 runner")
    for number, (result, made) in enumerate(
        zip(round_.results, round_.generated(), strict=True), 1
    ):
        took = (result.ended or result.started) - result.started
        print(f"  runner {number:<8} exit {result.exit_code} after {took:.2f} s: "
              f"{_made_text(made)}, {result.count('JobSubmitted')} jobs paid, "
              f"CPU {result.cpu_s:.2f} s")  # fmt: skip
    cpu_ms = round_.cpu_s * 1000 / config.images
    print(f"  runners' CPU    {round_.cpu_s:.2f} s = {cpu_ms:.2f} ms/image")
    _servers(round_)
    print(f"  machine         {_machine_load()}")
    sys.stdout.flush()


def _made_text(made: tuple[int, int] | None) -> str:
    if made is None:
        return "no summary"
    generated, by_others = made
    return f"generated {generated} (+{by_others} by others)"


def _servers(round_: Round) -> None:
    """Each server's CPU, and how much of the machine everything measured kept busy."""
    for name, cpu_s in round_.server_cpu_s.items():
        if cpu_s is not None:
            print(f"  {name + ' CPU':<16}{cpu_s:.2f} s ({cpu_s / round_.wall_s:.0%} of one core)")
    # moto serves Python under one GIL: near a whole core, it and not the runners set the pace.
    s3_cpu_s = round_.server_cpu_s.get("S3 server")
    if s3_cpu_s is not None and s3_cpu_s / round_.wall_s >= S3_BUSY_SHARE:
        print("  S3 server       may be the bottleneck (busy most of the round on one core); "
              "compare --shared-store dir")  # fmt: skip
    cpus = os.cpu_count() or 1
    busy = (
        round_.cpu_s + sum(cpu for cpu in round_.server_cpu_s.values() if cpu is not None)
    ) / round_.wall_s
    verdict = " (near all: the machine sets the pace)" if busy >= MACHINE_BUSY_SHARE * cpus else ""
    print(f"  CPU, all above  {busy:.2f} of {cpus} CPUs busy on average{verdict}")


def report_rounds(config: Config, rounds: list[Round]) -> None:
    """The figures of every round side by side."""
    baseline = _baseline_s(rounds)
    print("\nrunners  wall s  speed-up  ideal s  efficiency  CPU ms/image  generated by each")
    for round_ in rounds:
        ideal = ideal_s(config, _slots(config, round_), round_.job_busy_s)
        speed_up = f"{baseline / round_.wall_s:7.2f}x" if baseline is not None else "     n/a"
        generated = " ".join("?" if made is None else str(made[0]) for made in round_.generated())
        invalid = "  (checks FAILED)" if round_.problems else ""
        print(f"{round_.count:>7}  {round_.wall_s:6.2f}  {speed_up}  {ideal:7.2f}  "
              f"{ideal / round_.wall_s:10.3f}  {round_.cpu_s * 1000 / config.images:12.2f}  "
              f"{generated}{invalid}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    run = bench_runners if config.runners else bench
    if config.keep:
        tmp = Path(tempfile.mkdtemp(prefix="apply-bench-", dir=config.tmp_root))
        print(f"work dir          {tmp}")
        return run(config, tmp)
    with tempfile.TemporaryDirectory(prefix="apply-bench-", dir=config.tmp_root) as name:
        return run(config, Path(name))


if __name__ == "__main__":
    sys.exit(main())
