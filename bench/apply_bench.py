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

    .venv/bin/python bench/apply_bench.py                  # 1000 images, L=0.5 s, M=10
    .venv/bin/python bench/apply_bench.py --images 200 --latency 0.2
    .venv/bin/python bench/apply_bench.py --profile apply.prof   # client under cProfile
    .venv/bin/python bench/apply_bench.py --tmp-root /dev/shm    # without fsync latency
    .venv/bin/python bench/apply_bench.py --keep   # keep the logs and emulator-jobs.json

Run it with the project's virtualenv Python: both processes are `python -m ltx_reconcile`
from the same interpreter (the `ltx-reconcile` script runs exactly that entry point).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final
from urllib.parse import urlsplit

import httpx

TOKEN: Final = "apply-bench-token"  # noqa: S105 - a throwaway token for a loopback emulator
EMAIL: Final = "bench@ltx-emulator.test"
FLUX_PRICE: Final = 28
EFFICIENCY_GOAL: Final = 0.95
CPU_GOAL_MS: Final = 5.0
CALIBRATION_LOOPS: Final = 1_000_000
READY_TIMEOUT_S: Final = 30.0

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
    parser.add_argument("--latency", type=float, default=0.5, help="job latency L in s (0.5)")
    parser.add_argument(
        "--concurrency", type=int, default=10, help="account maxJobs M, the client's limit (10)"
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
    args = parser.parse_args(argv)
    if args.images < 1 or args.concurrency < 1 or args.files < 1 or args.latency <= 0:
        parser.error("--images, --concurrency, --files must be >= 1 and --latency > 0")
    poll = args.poll_interval if args.poll_interval is not None else args.latency / 20
    return Config(
        images=args.images,
        latency_s=args.latency,
        concurrency=args.concurrency,
        poll_interval_s=poll,
        files=min(args.files, args.images),
        profile=args.profile.resolve() if args.profile else None,
        profile_cpu=args.profile_cpu,
        keep=args.keep,
        tmp_root=args.tmp_root,
        client_path=args.client_path.resolve() if args.client_path else None,
    )


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
    out_path = log_dir / "emulator.out"
    with out_path.open("wb") as out, (log_dir / "emulator.err").open("wb") as err:
        process = subprocess.Popen(
            command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=log_dir
        )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        for line in out_path.read_text().splitlines():
            if line.startswith("Emulator serving "):
                return process, line.removeprefix("Emulator serving ").strip()
        if process.poll() is not None:
            break
        time.sleep(0.02)
    stop(process)
    err_text = (log_dir / "emulator.err").read_text()
    raise SystemExit(f"FAIL: the emulator did not start:\n{err_text}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """End a process this script started: SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def cpu_seconds_of(pid: int) -> float | None:
    """User + sys CPU seconds of a running process (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def run_apply(
    config: Config, workdir: Path, base_url: str, emulator_pid: int, base_env: dict[str, str]
) -> Run:
    """Run the apply process; its exit code, wall time and CPU time (that process only)."""
    env = {
        **base_env,
        "USEAPI_TOKEN": TOKEN,
        "LTX_POLL_INTERVAL_S": repr(config.poll_interval_s),
        "NO_COLOR": "1",
    }
    for name in ("LTX_API_URL", "LTX_EMAIL", "LTX_PARALLELISM"):
        env.pop(name, None)
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
    entries = control(base_url, "ledger")
    charges = [e for e in entries if e.get("kind") == "charge"]
    refunds = [e for e in entries if e.get("kind") == "refund"]
    jobs = {e.get("jobId") for e in charges}
    requests = {e.get("requestSha256") for e in charges}
    if len(charges) != config.images or len(jobs) != config.images:
        problems.append(
            f"the ledger shows {len(charges)} charges for {len(jobs)} jobs, "
            f"expected exactly {config.images}"
        )
    if len(requests) != len(charges):
        problems.append(f"{len(charges) - len(requests)} images were paid for twice")
    if refunds:
        problems.append(f"the ledger shows {len(refunds)} refunds (failed jobs)")
    written = sum(1 for _ in (workdir / "out").glob("*.png"))
    if written != config.images:
        problems.append(f"{written} named files in out/, expected {config.images}")
    return problems


def ideal_s(config: Config, job_busy_s: float) -> float:
    """ceil(N / M) x L, or the emulator's real job time / M when that is larger (E37)."""
    return max(math.ceil(config.images / config.concurrency) * config.latency_s,
               job_busy_s / config.concurrency)  # fmt: skip


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
    ideal = ideal_s(config, job_busy_s)
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
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"machine           load {load} on {os.cpu_count()} CPUs; "
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


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    if config.keep:
        tmp = Path(tempfile.mkdtemp(prefix="apply-bench-", dir=config.tmp_root))
        print(f"work dir          {tmp}")
        return bench(config, tmp)
    with tempfile.TemporaryDirectory(prefix="apply-bench-", dir=config.tmp_root) as name:
        return bench(config, Path(name))


if __name__ == "__main__":
    sys.exit(main())
