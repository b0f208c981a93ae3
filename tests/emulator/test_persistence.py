"""`--state FILE` (E46): accounts, jobs, assets and the ledger survive an emulator restart.

Each test configures the emulator from the command's own flags (`build_config`), so the
`--state` option itself is exercised, then serves it twice on one SQLite file in tmp_path.
"""

from __future__ import annotations

from pathlib import Path

from ltx_reconcile.cli.emulator import build_config
from ltx_reconcile.cli.emulator import emulator as emulator_command
from ltx_reconcile.emulator.config import EmulatorConfig, FaultConfig, FaultKind, FaultRule
from ltx_reconcile.emulator.server import serve_emulator
from testing.emulator import (
    TEST_TOKEN,
    api_client,
    fetch,
    tiny_image,
    wait_for_status,
    wait_until,
    webhook_receiver,
)


def _config_from_flags(state: Path, *extra: str) -> EmulatorConfig:
    args = [
        *("--state", str(state), "--test-mode", "--time-scale", "0.001"),
        *("--latency-seed", "1", "--token", TEST_TOKEN, "--account", "user@example.com"),
        *extra,
    ]
    with emulator_command.make_context("emulator", args) as ctx:
        return build_config(ctx.params)


def test_everything_the_emulator_answered_for_survives_a_restart(tmp_path):
    """E46: accounts, balances, job records, assets, URLs and the ledger, all as before."""
    config = _config_from_flags(tmp_path / "emulator.sqlite")
    assert config.state_path == tmp_path / "emulator.sqlite"
    fails = FaultRule(FaultKind.FAIL_JOB, reply_ref_contains="fails")
    with serve_emulator(config) as first, api_client(first) as client:
        first.set_faults(FaultConfig(rules=(fails,)))
        done = wait_for_status(
            client,
            client.post("/images/create", json={"prompt": "p", "replyRef": "ltxr:done"}).json()[
                "jobId"
            ],
        )
        failed = wait_for_status(
            client,
            client.post("/images/create", json={"prompt": "p", "replyRef": "ltxr:fails"}).json()[
                "jobId"
            ],
        )
        reference = client.post(
            "/assets/?type=reference-image",
            content=tiny_image(),
            headers={"Content-Type": "image/png"},
        ).json()
        client.post("/accounts", json={"cookie": "lt_id=kept; lt_token=a; lt_refresh_token=b"})
        old_url = done["status"]["artifact"]["assetUrl"]
        picture = fetch(old_url).content
        before = {
            "accounts": client.get("/accounts").json(),
            "account": client.get("/accounts/user@example.com").json(),
            "listing": client.get("/assets/?email=user@example.com").json()["items"],
            "ledger": first.ledger(),
        }
    with serve_emulator(config) as second, api_client(second) as client:
        after = {
            "accounts": client.get("/accounts").json(),
            "account": client.get("/accounts/user@example.com").json(),
            "listing": client.get("/assets/?email=user@example.com").json()["items"],
            "ledger": second.ledger(),
        }
        # The count of lagging reads (E34) is not state: the first read may lag again.
        done_again = wait_for_status(client, done["jobId"])
        failed_again = client.get(f"/assets/{failed['jobId']}").json()
        # The restarted server listens on another port; the signature covers only the path.
        from_old_url = fetch(old_url.replace(first.origin, second.origin))
        guided = client.post(
            "/images/create",
            json={
                "prompt": "p",
                "email": "user@example.com",
                "referenceAssetId": reference["asset"]["fileId"],
            },
        )
    # Listings sign fresh URLs; compare what they point at.
    for listing in (before["listing"], after["listing"]):
        for item in listing:
            item["signedAsset"].pop("assetUrl")
            item["signedAsset"].pop("expirationDateString")
            item.pop("relatedAssets")
    assert after == before
    assert [(e.kind, e.reply_ref) for e in after["ledger"]] == [
        ("charge", "ltxr:done"),
        ("charge", "ltxr:fails"),
        ("refund", "ltxr:fails"),
    ]
    assert (done_again["status"]["type"], done_again["replyRef"]) == ("completed", "ltxr:done")
    assert done_again["status"]["artifact"]["asset"] == done["status"]["artifact"]["asset"]
    assert failed_again["status"] == failed["status"]
    assert (from_old_url.status_code, from_old_url.content) == (200, picture)
    assert guided.status_code == 200


def test_a_job_running_at_shutdown_finishes_and_notifies_after_the_restart(tmp_path):
    """E46, E39: the scheduler entry, the job's end and its owed webhook all carry over."""
    config = _config_from_flags(
        tmp_path / "emulator.sqlite", "--latency-median-s", "1500", "--latency-sigma", "0"
    )  # 1.5 s of wall clock: enough for a restart, short enough to wait out
    with webhook_receiver() as receiver:
        with serve_emulator(config) as first, api_client(first) as client:
            job_id = client.post(
                "/images/create",
                json={"prompt": "p", "replyUrl": receiver.url, "replyRef": "ltxr:owed"},
            ).json()["jobId"]
            running = client.get("/scheduler").json()
        with serve_emulator(config) as second, api_client(second) as client:
            still_running = client.get("/scheduler").json()
            (delivery,) = receiver.wait_for(1)
            wait_until(lambda: (job := second.state.job(job_id)) is not None and job.webhook_done)
            finished = client.get(f"/assets/{job_id}").json()
    assert [(e["jobId"], e["started"], e["replyRef"]) for e in still_running] == [
        (job_id, running[0]["started"], "ltxr:owed")
    ]
    assert (delivery.json()["jobId"], delivery.json()["replyRef"]) == (job_id, "ltxr:owed")
    assert "artifact" in delivery.json()["status"]
    assert finished["status"]["type"] == "completed"
    assert len(receiver.received()) == 1
