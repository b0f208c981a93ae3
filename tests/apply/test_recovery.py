"""Recovery of creates whose outcome was lost (contract 4.5): found by replyRef and adopted,
reported unknown when not found, sent again only when the user says so."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from ltx_reconcile.emulator.config import FaultConfig, FaultKind, FaultRule
from ltx_reconcile.emulator.server import RunningEmulator, serve_emulator
from ltx_reconcile.errors import ExitCode
from testing.emulator import auth_headers, fetch, wait_until
from testing.workspace import CANARY_TOKEN, CliWorkspace, crash_test_config
from tests.apply.specs import ONE_IMAGE, TWO_IMAGES


def test_creates_refused_with_429_are_sent_again_under_new_attempts_and_paid_once(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """A 429 proves no job was made: apply waits as long as the API's Retry-After asks (0 s
    here) and sends again with a fresh replyRef under a new journal attempt; each image is
    paid for once."""
    workspace.specs(TWO_IMAGES)
    emulator.set_faults(
        FaultConfig(
            rules=(
                FaultRule(
                    FaultKind.STATUS_BEFORE_ACCEPT, endpoint="images/create", status=429, times=2
                ),
            )
        )
    )

    run = workspace.apply()

    assert run.returncode == ExitCode.OK, run.stderr
    assert run.stderr.count("no free job slot (429), nothing charged; retrying in 0 s") == 2
    # Which image meets which 429 depends on timing; each ends fetched on its last attempt.
    journal = workspace.journal()
    assert sorted(row.state for row in journal) == ["failed", "failed", "fetched", "fetched"]
    for key in {row.key for row in journal}:
        attempts = sorted((row.attempt, row.state) for row in journal if row.key == key)
        assert [state for _, state in attempts] == ["failed"] * (len(attempts) - 1) + ["fetched"]
        assert [attempt for attempt, _ in attempts] == list(range(1, len(attempts) + 1))
    assert len(emulator.charges()) == 2
    assert workspace.output_problems() == []


def test_a_lost_create_that_made_no_job_is_unknown_until_resubmitted_by_the_user(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """A 503 to a create may hide a paid job: the image is reported unknown (exit 6) on every
    run until `--resubmit-unknown`, which sends it under a new attempt and pays once."""
    workspace.specs(TWO_IMAGES)
    emulator.set_faults(
        FaultConfig(
            rules=(FaultRule(FaultKind.STATUS_BEFORE_ACCEPT, endpoint="images/create", status=503),)
        )
    )

    first = workspace.apply()
    again = workspace.apply()
    resubmitted = workspace.apply("--resubmit-unknown")

    assert (first.returncode, again.returncode) == (ExitCode.PARTIAL, ExitCode.PARTIAL)
    for run in (first, again):
        assert "1 failed" not in run.stdout
        assert "0 failed, 1 unknown" in run.stdout
        assert "rerun with --resubmit-unknown to pay for it again" in run.stdout
    assert len(emulator.charges()) == 2
    assert resubmitted.returncode == ExitCode.OK, resubmitted.stderr
    assert "Apply complete: 1 generated" in resubmitted.stdout
    assert len(emulator.charges()) == 2
    assert workspace.output_problems() == []
    assert sorted(row.state for row in workspace.journal()) == ["abandoned", "fetched", "fetched"]


def test_two_images_of_one_unknown_key_are_resubmitted_once_and_paid_once(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """Two images with the same inputs both resume the key whose create was lost; with
    --resubmit-unknown its unknown entry is closed once (the two resumes run side by side:
    a read and a write split by an await let both close it, and apply stopped with a state
    error) and the key is paid for once."""
    workspace.specs(ONE_IMAGE)
    emulator.set_faults(
        FaultConfig(
            rules=(
                FaultRule(
                    FaultKind.STATUS_BEFORE_ACCEPT, endpoint="images/create", status=503, times=1
                ),
            )
        )
    )
    assert workspace.apply().returncode == ExitCode.PARTIAL
    workspace.specs(ONE_IMAGE + ONE_IMAGE.split("images:\n")[1].replace("cat:", "twin:"))

    resubmitted = workspace.apply("--resubmit-unknown")

    assert resubmitted.returncode == ExitCode.OK, resubmitted.stderr
    assert len(emulator.charges()) == 1
    assert sorted(row.state for row in workspace.journal()) == ["abandoned", "fetched"]
    assert workspace.output_bytes("cat") == workspace.output_bytes("twin")
    assert workspace.output_problems() == []


def test_a_paid_job_that_fails_after_a_crash_is_reported_failed_not_unknown(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """An apply killed while its job runs; the job then fails. The resume reports the API's
    failure (exit 6), not an unknown outcome, and the next apply generates the image."""
    workspace.specs(TWO_IMAGES)
    emulator.set_faults(
        FaultConfig(
            rules=(
                FaultRule(FaultKind.FAIL_JOB, message="Generation failed: upstream timeout"),
                # Status reads fail, so the child cannot learn how its jobs end before the kill.
                FaultRule(
                    FaultKind.STATUS_BEFORE_ACCEPT, endpoint="assets/status", status=503, times=999
                ),
            )
        )
    )
    child = workspace.spawn_apply()
    wait_until(lambda: [row.state for row in workspace.journal()] == ["submitted"] * 2, 15)
    child.kill()
    emulator.set_faults(FaultConfig())

    resumed = workspace.apply()

    assert resumed.returncode == ExitCode.PARTIAL, resumed.stderr
    assert "0 unknown" in resumed.stdout
    assert "1 failed" in resumed.stdout
    assert "Generation failed: upstream timeout" in resumed.stdout
    rerun = workspace.apply()
    assert rerun.returncode == ExitCode.OK, rerun.stderr
    assert "Apply complete: 1 generated" in rerun.stdout
    assert workspace.output_problems() == []
    assert workspace.net_charges_by_key(emulator.ledger()) == dict.fromkeys(
        workspace.image_keys(), 1
    )


def test_a_paid_job_whose_record_expired_is_fetched_from_the_library_not_paid_again(
    tmp_path: Path,
) -> None:
    """Killed before it learnt how its jobs ended, an apply resumes after the API dropped
    their records (E35): the images are found in the asset listing by job id (contract 6)
    and fetched, with no second charge."""
    config = crash_test_config(job_ttl_s=0.2)
    with serve_emulator(config) as emulator:
        workspace = CliWorkspace.create(tmp_path, api_url=emulator.base_url, token=CANARY_TOKEN)
        workspace.specs(TWO_IMAGES)
        emulator.set_faults(
            FaultConfig(
                rules=(
                    # Status reads fail, so the child cannot learn how its jobs end.
                    FaultRule(
                        FaultKind.STATUS_BEFORE_ACCEPT,
                        endpoint="assets/status",
                        status=503,
                        times=999,
                    ),
                )
            )
        )
        child = workspace.spawn_apply()
        wait_until(lambda: [row.state for row in workspace.journal()] == ["submitted"] * 2, 15)
        child.kill()
        emulator.set_faults(FaultConfig())
        expired = [
            f"{emulator.base_url}/assets/{quote(row.job_id or '', safe='')}"
            for row in workspace.journal()
        ]
        wait_until(
            lambda: all(
                fetch(url, headers=auth_headers(CANARY_TOKEN)).status_code == 404 for url in expired
            ),
            timeout_s=15,
        )

        resumed = workspace.apply()

        assert resumed.returncode == ExitCode.OK, resumed.stderr
        assert "Apply complete: 0 generated" in resumed.stdout
        assert workspace.output_problems() == []
        assert len(emulator.charges()) == 2
        assert workspace.recorded_spend() == workspace.net_spend_by_job(emulator.ledger())
