"""`ltx-reconcile import`: adopting an existing file or a finished job costs nothing, once.

Every test runs on the state file and on a PostgreSQL state.
"""

from __future__ import annotations

from typing import Any

import pytest

from ltx_reconcile.artifacts import digest_bytes
from ltx_reconcile.emulator.config import (
    DEFAULT_LATENCY_MEDIAN_S,
    EmulatorConfig,
    FaultConfig,
    FaultKind,
    FaultRule,
)
from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.errors import ExitCode
from testing.emulator import api_client, fetch, tiny_image, wait_for_status, wait_until
from testing.workspace import (
    CANARY_TOKEN,
    EMAIL,
    STATE_BACKENDS,
    CliWorkspace,
    crash_test_config,
)

pytestmark = pytest.mark.parametrize("state_backend", STATE_BACKENDS, indirect=True)

CAT = """
    images:
      cat:
        prompt: a cat on a windowsill
        seed: 1
"""
CAT_REQUEST: dict[str, Any] = {"prompt": "a cat on a windowsill", "seed": 1, "model": "flux"}
"""What `apply` would send for `cat` (16:9 is the default aspect ratio)."""


@pytest.fixture(scope="module")
def emulator_config_for_module() -> EmulatorConfig:
    """The ops emulator, except that nano-banana jobs run for hours: a job still running."""
    latency = {**DEFAULT_LATENCY_MEDIAN_S, "nano-banana": 1e6}
    return crash_test_config(latency_median_s=latency)


def _create_job(emulator: RunningEmulator, **fields: Any) -> str:
    """Create a job straight through the emulator's HTTP API, as another script would."""
    with api_client(emulator, token=CANARY_TOKEN) as client:
        response = client.post("/images/create", json={"email": EMAIL, **fields})
        assert response.status_code == 200, response.text
        job_id: str = response.json()["jobId"]
        return job_id


def _finished_job(emulator: RunningEmulator, **fields: Any) -> str:
    """A job created at the emulator and finished, its status not read yet.

    Waiting on the scheduler listing, not on the job's status, leaves the status read that
    still lacks the artifact's URL (E34) to the import, which must read again.
    """
    job_id = _create_job(emulator, **fields)
    with api_client(emulator, token=CANARY_TOKEN) as client:
        wait_until(
            lambda: all(entry["jobId"] != job_id for entry in client.get("/scheduler").json())
        )
    return job_id


def _picture_of(emulator: RunningEmulator, job_id: str) -> bytes:
    """The bytes of a finished job's picture, as storage serves them."""
    with api_client(emulator, token=CANARY_TOKEN) as client:
        body = wait_for_status(client, job_id)
    return fetch(body["status"]["artifact"]["assetUrl"]).content


def _write_art(workspace: CliWorkspace, name: str, data: bytes) -> str:
    path = workspace.root / "art" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return f"art/{name}"


def _error_lines(run: Any) -> list[str]:
    return [line for line in run.stderr.splitlines() if line.startswith(("Error:", "hint:"))]


def _import_job(workspace: CliWorkspace, job_id: str, *args: str) -> Any:
    return workspace.run("import", "cat", job_id, "--api-url", workspace.api_url, *args)


def _assert_up_to_date_and_free(workspace: CliWorkspace, emulator: RunningEmulator) -> None:
    """`plan` has nothing to do, and `apply` sends nothing that costs money."""
    ledger = emulator.ledger()
    plan = workspace.run("plan")
    assert plan.returncode == ExitCode.OK, plan.stderr
    assert plan.stdout.splitlines() == ["No changes. 1 image is up to date."]
    applied = workspace.apply()
    assert applied.returncode == ExitCode.OK, applied.stderr
    assert emulator.ledger() == ledger
    assert workspace.output_problems() == []


def test_an_imported_file_is_up_to_date_and_apply_pays_nothing(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """A local PNG becomes the image's picture and output file; plan and apply then do nothing."""
    workspace.specs(CAT)
    picture = tiny_image("PNG", (64, 36))
    digest = digest_bytes(picture)

    run = workspace.run("import", "cat", _write_art(workspace, "cat.png", picture))

    assert run.returncode == ExitCode.OK, run.stderr
    assert run.stdout.splitlines() == [
        f"Imported cat from art/cat.png: 64x36 image/png, sha256 {digest}. No credits spent.",
        "out/cat.png created.",
    ]
    assert (workspace.root / "out" / "cat.png").read_bytes() == picture
    artifact = workspace.snapshot().artifacts[digest]
    assert (artifact.source, artifact.cost, artifact.job_id) == ("imported", 0, None)
    assert workspace.images()["cat"].status == "present"
    _assert_up_to_date_and_free(workspace, emulator)
    assert emulator.ledger() == []
    assert workspace.journal() == []


def test_an_imported_emulator_job_is_up_to_date_and_was_paid_only_once(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """A job another script paid for is downloaded and recorded with its id, for free."""
    workspace.specs(CAT)
    job_id = _finished_job(emulator, **CAT_REQUEST)

    run = _import_job(workspace, job_id)

    picture = _picture_of(emulator, job_id)
    digest = digest_bytes(picture)

    assert run.returncode == ExitCode.OK, run.stderr
    assert run.stdout.splitlines() == [
        f"Imported cat from job {job_id}: 1280x720 image/png, sha256 {digest}. No credits spent.",
        "out/cat.png created.",
    ]
    assert run.stderr == ""
    assert workspace.output_bytes("cat") == picture
    artifact = workspace.snapshot().artifacts[digest]
    assert (artifact.source, artifact.cost, artifact.job_id, artifact.email) == (
        "imported",
        0,
        job_id,
        EMAIL,
    )
    _assert_up_to_date_and_free(workspace, emulator)
    assert [(c.job_id, c.amount) for c in emulator.charges()] == [(job_id, 28)]
    assert workspace.journal() == []


def test_importing_the_same_picture_again_changes_nothing(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """A second import of the same content for the same image says so and leaves the serial."""
    workspace.specs(CAT)
    source = _write_art(workspace, "cat.png", tiny_image("PNG", (64, 36)))
    assert workspace.run("import", "cat", source).returncode == ExitCode.OK
    serial = workspace.snapshot().serial

    again = workspace.run("import", "cat", source)

    assert again.returncode == ExitCode.OK, again.stderr
    digest = workspace.images()["cat"].digest
    assert again.stdout.splitlines() == [
        f"cat already has this picture (sha256 {digest}); nothing changed."
    ]
    assert workspace.snapshot().serial == serial


def test_importing_over_a_present_image_needs_force_and_keeps_the_old_object(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """Another picture for an image that has one is refused, then replaced with --force."""
    workspace.specs(CAT)
    first, second = tiny_image("PNG", (64, 36)), tiny_image("JPEG", (32, 18))
    assert workspace.run("import", "cat", _write_art(workspace, "a.png", first)).returncode == 0
    source = _write_art(workspace, "b.jpg", second)

    refused = workspace.run("import", "cat", source)

    assert refused.returncode == ExitCode.INVALID_INPUT
    old = digest_bytes(first)
    assert _error_lines(refused) == [
        f"Error: cat already has a picture (sha256 {old}); import would replace it",
        "hint: pass --force to replace it; the old picture stays in the store until gc",
    ]
    forced = workspace.run("import", "cat", source, "--force")
    assert forced.returncode == ExitCode.OK, forced.stderr
    assert forced.stdout.splitlines()[1:] == [
        "out/cat.png replaced.",
        f"The previous picture (sha256 {old}) stays in the store until gc.",
    ]
    assert workspace.output_bytes("cat") == second
    assert workspace.store.verify(old)
    assert workspace.snapshot().artifacts[digest_bytes(second)].mime == "image/jpeg"


def test_a_job_whose_inputs_differ_from_the_spec_needs_force(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """A job made from other inputs is refused, naming each difference; --force warns."""
    workspace.specs(CAT)
    job_id = _finished_job(
        emulator, **{**CAT_REQUEST, "prompt": "a cat in the rain", "aspectRatio": "1:1"}
    )

    refused = _import_job(workspace, job_id)

    assert refused.returncode == ExitCode.INVALID_INPUT
    differences = [
        "  aspect ratio: the picture is 1024x1024, the spec asks for 16:9",
        '  prompt: "a cat in the rain" in the job, "a cat on a windowsill" in the spec',
    ]
    assert refused.stderr.splitlines()[:3] == [
        f"Error: job {job_id} does not match the spec of cat:",
        *differences,
    ]
    assert workspace.images() == {}
    forced = _import_job(workspace, job_id, "--force")
    assert forced.returncode == ExitCode.OK, forced.stderr
    assert forced.stderr.splitlines() == [
        f"Warning: job {job_id} does not match the spec of cat; imported anyway (--force):",
        *differences,
    ]
    assert workspace.run("plan").stdout.splitlines() == ["No changes. 1 image is up to date."]


def test_an_unknown_image_name_is_refused_with_the_nearest_name(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """A name the specs do not have exits 3 with a suggestion, before the state exists."""
    workspace.specs(CAT)
    source = _write_art(workspace, "cat.png", tiny_image())

    run = workspace.run("import", "kat", source)

    assert run.returncode == ExitCode.INVALID_INPUT
    assert _error_lines(run) == [
        'Error: no image "kat" in the specs (did you mean "cat"?)',
        "hint: `ltx-reconcile plan` lists every image address",
    ]
    assert not workspace.state_exists()


@pytest.mark.parametrize(
    ("name", "data", "error"),
    [
        ("notes.txt", b"not a picture\n", "Error: art/notes.txt is not an image file"),
        (
            "cat.gif",
            tiny_image("GIF"),
            "Error: art/cat.gif is image/gif, not an image import takes",
        ),
    ],
    ids=["text", "gif"],
)
def test_a_file_that_is_not_a_png_jpeg_or_webp_image_is_refused(
    workspace: CliWorkspace, emulator: RunningEmulator, name: str, data: bytes, error: str
) -> None:
    """Text, or a picture in another format, exits 3 and changes nothing."""
    workspace.specs(CAT)

    run = workspace.run("import", "cat", _write_art(workspace, name, data))

    assert run.returncode == ExitCode.INVALID_INPUT
    assert _error_lines(run)[0] == error
    assert not workspace.state_exists()
    assert not (workspace.root / "out").exists()


def test_a_failed_job_is_refused(workspace: CliWorkspace, emulator: RunningEmulator) -> None:
    """A job that failed has no picture: exit 3, nothing recorded."""
    workspace.specs(CAT)
    rule = FaultRule(FaultKind.FAIL_JOB, endpoint="images/create", message="moderation")
    emulator.set_faults(FaultConfig(rules=(rule,)))
    job_id = _create_job(emulator, **CAT_REQUEST)
    with api_client(emulator, token=CANARY_TOKEN) as client:
        assert wait_for_status(client, job_id)["status"]["type"] == "failed"

    run = _import_job(workspace, job_id)

    assert run.returncode == ExitCode.INVALID_INPUT
    assert _error_lines(run) == [
        f"Error: job {job_id} failed (moderation); it has no picture to import",
        "hint: generate the image with `ltx-reconcile apply` instead",
    ]
    assert workspace.images() == {}


def test_a_job_still_running_is_refused(workspace: CliWorkspace, emulator: RunningEmulator) -> None:
    """A job that has not finished has no picture yet: exit 3, try again later."""
    workspace.specs(CAT)
    job_id = _create_job(emulator, **{**CAT_REQUEST, "model": "nano-banana"})

    run = _import_job(workspace, job_id)

    assert run.returncode == ExitCode.INVALID_INPUT
    assert _error_lines(run) == [
        f"Error: job {job_id} is still running (0% done); it has no picture yet",
        "hint: wait until it has finished, then run the same command again",
    ]
    assert workspace.images() == {}


def test_a_job_the_journal_already_knows_is_refused(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """A job ltx-reconcile paid for itself is the state's already: exit 3, state unchanged."""
    workspace.specs(CAT)
    assert workspace.apply().returncode == ExitCode.OK
    (entry,) = workspace.journal()
    assert entry.job_id is not None
    serial = workspace.snapshot().serial

    run = _import_job(workspace, entry.job_id)

    assert run.returncode == ExitCode.INVALID_INPUT
    assert _error_lines(run) == [
        f"Error: job {entry.job_id} is already in the journal: ltx-reconcile paid for it, "
        "so it is this state's already",
        "hint: run `ltx-reconcile apply`: it fetches journaled jobs at no further cost",
    ]
    assert workspace.snapshot().serial == serial
    assert len(emulator.charges()) == 1


def test_an_output_file_with_other_content_is_never_overwritten(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """A user's different file at the output path is left alone and the import refused."""
    workspace.specs(CAT)
    theirs = tiny_image("PNG", (10, 10))
    (workspace.root / "out").mkdir()
    (workspace.root / "out" / "cat.png").write_bytes(theirs)

    run = workspace.run("import", "cat", _write_art(workspace, "cat.png", tiny_image()))

    assert run.returncode == ExitCode.INVALID_INPUT
    assert _error_lines(run) == [
        "Error: out/cat.png already exists with other content; import never overwrites a "
        "file it did not write",
        "hint: move it away, or import that file itself: `ltx-reconcile import cat out/cat.png`",
    ]
    assert (workspace.root / "out" / "cat.png").read_bytes() == theirs
    assert workspace.images() == {}


def test_the_file_already_at_the_output_path_can_be_imported(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """Existing art at the output path is adopted in place, as the refusal above suggests."""
    workspace.specs(CAT)
    theirs = tiny_image("PNG", (16, 9))
    (workspace.root / "out").mkdir()
    (workspace.root / "out" / "cat.png").write_bytes(theirs)

    run = workspace.run("import", "cat", "out/cat.png")

    assert run.returncode == ExitCode.OK, run.stderr
    assert run.stdout.splitlines()[1:] == ["out/cat.png already held this picture."]
    assert (workspace.root / "out" / "cat.png").read_bytes() == theirs
    plan = workspace.run("plan")
    assert plan.stdout.splitlines() == ["No changes. 1 image is up to date."]
