"""Four runners on one PostgreSQL state and one bucket: one is SIGKILLed, the rest finish.

Each runner is a workspace directory of its own (a CI machine with its own checkout of the
same specs), and all four run `apply` at once against one emulator. The emulator's ledger
is the judge: 200 images, 200 charges, whoever made them and whoever died on the way.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

from ltx_reconcile.emulator.ledger import LedgerKind
from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.errors import ExitCode
from ltx_reconcile.state.records import OPEN_JOURNAL_STATES
from testing.postgres import PostgresServer
from testing.workspace import CANARY_TOKEN, CliWorkspace, Spawned
from tests.s3.bucket import BucketView, use_a_bucket
from tests.s3.server import TEST_CREDENTIALS, S3Server

IMAGES: Final = 200
RUNNERS: Final = 4
PARALLELISM: Final = "10"
KILL_AFTER_SUBMISSIONS: Final = 10
EXIT_TIMEOUT_S: Final = 120.0


def many_images(count: int) -> str:
    """A spec of `count` flux images, each prompt and seed its own, so every key differs."""
    lines = ["images:"]
    for i in range(count):
        lines += [f"  tile-{i:03d}:", f"    prompt: a mosaic tile, pattern {i}", f"    seed: {i}"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def runners(
    tmp_path: Path,
    emulator: RunningEmulator,
    postgres_server: PostgresServer,
    s3_server: S3Server,
) -> Iterator[tuple[list[CliWorkspace], BucketView]]:
    """Four workspaces with identical specs, one PostgreSQL schema and one bucket; and the
    bucket, seen from outside. No file or output of any of them may hold a secret."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    workspaces = [
        CliWorkspace.create(
            tmp_path / f"runner-{i}",
            api_url=emulator.base_url,
            token=CANARY_TOKEN,
            state_url=postgres_server.url,
            state_schema=schema,
        )
        for i in range(RUNNERS)
    ]
    bucket = use_a_bucket(workspaces[0], s3_server, tmp_path / "bucket")
    spec = many_images(IMAGES)
    for ws in workspaces:
        ws.extra_env.update(s3_server.env(), LTX_STORE=bucket.location.url())
        ws.specs(spec)
    try:
        yield workspaces, bucket
    finally:
        for ws in workspaces:
            ws.wait_all()
    for ws in workspaces:
        assert ws.places_holding(CANARY_TOKEN) == [], "the API token leaked"
        assert ws.places_holding(TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]) == []
        assert not ws.state_path.exists(), "a runner used the state file, not PostgreSQL"


def submitted_jobs(child: Spawned) -> dict[str, str]:
    """Job id -> image address of every `JobSubmitted` event the child has printed so far."""
    jobs = {}
    for line in child.stderr_path.read_text(encoding="utf-8", errors="replace").splitlines():
        # Other lines (warnings, a half-written last line) are not events.
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and event.get("event") == "JobSubmitted":
            jobs[event["job_id"]] = event["image"]
    return jobs


def first_to_submit(children: list[Spawned], count: int, timeout_s: float = 60.0) -> int:
    """The index of the first child seen to have submitted `count` jobs.

    Not a fixed runner: the applies plan one at a time under the state's lease, so which
    of the four submits first is a race. AssertionError if any child exits first.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for i, child in enumerate(children):
            assert child.process.poll() is None, f"runner {i} exited before the kill"
            if len(submitted_jobs(child)) >= count:
                return i
        # Not wait_until's 2 ms: re-reading four growing logs that often takes a core
        # from the runners on a 2-core machine.
        time.sleep(0.05)
    msg = f"no runner submitted {count} jobs within {timeout_s} s"
    raise AssertionError(msg)


def assert_each_key_paid_once(reader: CliWorkspace, emulator: RunningEmulator) -> None:
    """The ledger holds one charge per image key and no refund (an image paid for twice is
    named with its count); the shared journal ties every charge to a key, and has no entry
    left open."""
    ledger = emulator.ledger()
    paid = reader.net_charges_by_key(ledger)
    assert {
        r.name: paid.get(r.key, 0) for r in reader.images().values() if paid.get(r.key) != 1
    } == {}
    assert len(paid) == len(emulator.charges()) == IMAGES
    assert [e for e in ledger if e.kind is LedgerKind.REFUND] == []
    assert [r for r in reader.journal() if r.state in OPEN_JOURNAL_STATES] == []


def assert_victims_jobs_were_finished(
    reader: CliWorkspace, emulator: RunningEmulator, victim_jobs: dict[str, str]
) -> None:
    """Every job the killed runner submitted was charged, settled by a survivor, and
    recorded as its image (which, by `assert_each_key_paid_once`, was not paid again)."""
    charged = {e.job_id for e in emulator.charges()}
    journal = {r.job_id: r for r in reader.journal() if r.job_id is not None}
    images = reader.images()
    assert len(victim_jobs) >= KILL_AFTER_SUBMISSIONS
    for job_id, image in victim_jobs.items():
        assert job_id in charged, f"{image}: job {job_id} was never charged"
        assert journal[job_id].state not in OPEN_JOURNAL_STATES, f"{image}: job {job_id}"
        assert images[image].key == journal[job_id].key


@pytest.mark.timeout(EXIT_TIMEOUT_S + 60)
def test_four_runners_one_killed_make_every_image_once_and_each_fills_its_own_outputs(
    runners: tuple[list[CliWorkspace], BucketView], emulator: RunningEmulator
) -> None:
    """Four applies on 200 images share the work; a runner SIGKILLed mid-way leaves its
    paid jobs to the others, and all 200 images end present, each paid for exactly once."""
    workspaces, bucket = runners
    # No --lock-timeout: on a shared state apply waits for the others' planning by default.
    args = ("--json", "--parallelism", PARALLELISM)

    children = [ws.spawn_apply(*args) for ws in workspaces]
    victim = first_to_submit(children, KILL_AFTER_SUBMISSIONS)
    children[victim].kill()
    # Mid-way: most of the 200 images are still to be paid for when the victim dies.
    assert len(emulator.charges()) < IMAGES // 2
    victim_jobs = submitted_jobs(children[victim])
    survivors = [i for i in range(RUNNERS) if i != victim]
    runs = {i: children[i].finished(EXIT_TIMEOUT_S) for i in survivors}

    for i, run in runs.items():
        assert run.returncode == ExitCode.OK, f"runner {i}:\n{run.stderr[-4000:]}"
    reader = workspaces[survivors[0]]
    images = reader.images()
    assert len(images) == IMAGES
    assert {(r.status, bool(r.digest)) for r in images.values()} == {("present", True)}
    assert {r.digest for r in images.values()} <= set(bucket.digests())
    assert_each_key_paid_once(reader, emulator)
    assert_victims_jobs_were_finished(reader, emulator, victim_jobs)
    problems = {i: p for i in survivors if (p := workspaces[i].output_problems())}
    assert problems == {}, {i: f"{len(p)} problems, first: {p[0]}" for i, p in problems.items()}
    submitted = {i: len(submitted_jobs(children[i])) for i in survivors}
    assert sum(1 for n in submitted.values() if n) >= 2, f"serialised: {submitted} jobs each"
