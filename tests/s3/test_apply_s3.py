"""`apply --store s3://…`: real CLI processes, the API emulator and the S3 emulator together."""

from __future__ import annotations

import hashlib
import shutil

from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.errors import ExitCode
from testing.workspace import CliWorkspace
from tests.apply.specs import THREE_IMAGES
from tests.s3.conftest import PREFIX
from tests.s3.server import TEST_CREDENTIALS, S3Server


def _bucket_objects(s3_server: S3Server, bucket: str) -> dict[str, bytes]:
    client = s3_server.client()
    listing = client.list_objects_v2(Bucket=bucket).get("Contents", ())
    return {
        item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        for item in listing
    }


def test_apply_with_an_s3_store_fills_the_bucket_and_links_the_outputs_to_its_cache(
    workspace: CliWorkspace, emulator: RunningEmulator, s3_server: S3Server, bucket: str
) -> None:
    """Every generated image is an object in the bucket and an out/ file linked to the cache."""
    workspace.specs(THREE_IMAGES)
    # The flags this time (the next test uses LTX_STORE and LTX_STORE_ENDPOINT).
    env = workspace.environment(**{**s3_server.env(), "LTX_STORE_ENDPOINT": None})
    store = f"s3://{bucket}/{PREFIX}"

    run = workspace.apply("--store", store, "--store-endpoint", s3_server.endpoint, env=env)

    assert run.returncode == ExitCode.OK, run.stderr
    images = workspace.images()
    assert len(images) == 3
    objects = _bucket_objects(s3_server, bucket)
    assert sorted(objects) == sorted(
        f"{PREFIX}/sha256/{r.digest[:2]}/{r.digest[2:]}" for r in images.values() if r.digest
    )
    for key, data in objects.items():
        assert hashlib.sha256(data).hexdigest() == key.split("/")[-2] + key.split("/")[-1]
    for record in images.values():
        assert record.digest is not None
        output = workspace.root / record.output
        assert output.samefile(workspace.store.path_for(record.digest))
    assert workspace.output_problems() == []
    plan = workspace.run("plan", "--store", store, "--store-endpoint", s3_server.endpoint, env=env)
    assert plan.returncode == ExitCode.OK, plan.stderr
    assert "No changes" in plan.stdout
    assert workspace.places_holding(TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]) == []


def test_a_runner_without_the_cache_restores_outputs_from_the_bucket_for_free(
    workspace: CliWorkspace, emulator: RunningEmulator, s3_server: S3Server, bucket: str
) -> None:
    """With the local objects and out/ gone, plan (LTX_STORE) finds the bucket's objects and
    `verify --repair` fetches them back into the cache and out/: nothing is paid again."""
    workspace.specs(THREE_IMAGES)
    env = workspace.environment(**s3_server.env(), LTX_STORE=f"s3://{bucket}/{PREFIX}")
    assert workspace.apply(env=env).returncode == ExitCode.OK
    charges = emulator.charges()
    shutil.rmtree(workspace.root / "state" / "objects")
    shutil.rmtree(workspace.root / "out")

    plan = workspace.run("plan", env=env)
    repair = workspace.run("verify", "--repair", env=env)
    again = workspace.apply(env=env)

    assert plan.returncode == ExitCode.OK, plan.stderr
    assert plan.stdout.splitlines() == ["No changes. 3 images are up to date."]
    assert repair.returncode == ExitCode.OK, repair.stderr
    assert again.returncode == ExitCode.OK, again.stderr
    assert again.stdout.splitlines() == ["No changes. 3 images are up to date."]
    assert emulator.charges() == charges
    assert workspace.output_problems() == []
    for record in workspace.images().values():
        assert record.digest is not None
        assert (workspace.root / record.output).samefile(workspace.store.path_for(record.digest))
