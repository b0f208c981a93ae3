"""Apply is idempotent: what the state already holds is never paid for again.

Every test runs on the state file and on a PostgreSQL state.
"""

from __future__ import annotations

import shutil

import pytest

from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.errors import ExitCode
from testing.workspace import STATE_BACKENDS, CliWorkspace
from tests.s3.bucket import BucketView

pytestmark = pytest.mark.parametrize("state_backend", STATE_BACKENDS, indirect=True)

THREE_IMAGES = """
    defaults:
      aspect_ratio: "1:1"
    images:
      cat:
        prompt: a cat on a windowsill
        seed: 1
      dog:
        prompt: a dog in the snow
        seed: 2
      owl:
        prompt: an owl at dusk
        seed: 3
"""


def applied(workspace: CliWorkspace, *args: str) -> str:
    """Run one apply that must succeed; its stdout."""
    run = workspace.apply(*args)
    assert run.returncode == ExitCode.OK, run.stderr
    return run.stdout


def test_a_second_apply_does_nothing_and_pays_nothing(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """After an apply, a second one finds no changes, sends nothing and leaves files alone."""
    workspace.specs(THREE_IMAGES)
    first = applied(workspace)
    assert "Apply complete: 3 generated, 0 reused, 0 moved, 0 resumed, 0 deleted" in first
    charges = emulator.charges()
    assert len(charges) == 3
    before = {name: (workspace.root / r.output).stat() for name, r in workspace.images().items()}

    second = applied(workspace)

    assert second.splitlines() == ["No changes. 3 images are up to date."]
    assert emulator.ledger() == charges
    after = {name: (workspace.root / r.output).stat() for name, r in workspace.images().items()}
    assert {n: (s.st_ino, s.st_mtime_ns) for n, s in after.items()} == {
        n: (s.st_ino, s.st_mtime_ns) for n, s in before.items()
    }
    assert workspace.output_problems() == []
    assert workspace.net_charges_by_key(emulator.ledger()) == dict.fromkeys(
        workspace.image_keys(), 1
    )


def test_changing_one_prompt_pays_for_exactly_that_image(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """Editing one image's prompt costs one new job, for that image's new key only."""
    workspace.specs(THREE_IMAGES)
    applied(workspace)
    old = workspace.images()

    workspace.specs(THREE_IMAGES.replace("a dog in the snow", "a dog in the rain"))
    stdout = applied(workspace)

    assert "Apply complete: 1 generated, 0 reused, 0 moved" in stdout
    new = workspace.images()
    assert len(emulator.charges()) == 4
    (new_charge,) = emulator.charges()[3:]
    (dog_entry,) = [row for row in workspace.journal() if row.job_id == new_charge.job_id]
    assert (dog_entry.image, dog_entry.key) == ("dog", new["dog"].key)
    assert new["dog"].key != old["dog"].key
    assert new["dog"].digest != old["dog"].digest
    assert {n: new[n].digest for n in ("cat", "owl")} == {n: old[n].digest for n in ("cat", "owl")}
    assert workspace.output_problems() == []


def test_renaming_an_image_moves_its_file_and_pays_nothing(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """A renamed image keeps its artifact: the file moves to the new name, no job is sent."""
    workspace.specs(THREE_IMAGES)
    applied(workspace)
    cat = workspace.images()["cat"]
    cat_bytes = workspace.output_bytes("cat")

    workspace.specs(THREE_IMAGES.replace("  cat:", "  kitten:"))
    stdout = applied(workspace)

    assert "0 generated, 0 reused, 1 moved" in stdout
    assert len(emulator.charges()) == 3
    images = workspace.images()
    assert sorted(images) == ["dog", "kitten", "owl"]
    assert (images["kitten"].key, images["kitten"].digest) == (cat.key, cat.digest)
    assert workspace.output_bytes("kitten") == cat_bytes
    assert not (workspace.root / "out" / "cat.png").exists()
    assert workspace.output_problems() == []


def test_changing_an_images_output_moves_its_file_and_pays_nothing(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """A new `output` for the same inputs is a free move: plan says so (it said "No
    changes." and left the file at the old path), apply puts the file at the new path and
    removes the old one, and no job is sent."""
    workspace.specs(THREE_IMAGES)
    applied(workspace)
    cat_bytes = workspace.output_bytes("cat")
    workspace.specs(
        THREE_IMAGES.replace("seed: 1\n", "seed: 1\n        output: art/cat-on-sill.png\n")
    )

    planned = workspace.run("plan")
    stdout = applied(workspace)

    assert '~ output: "out/cat.png" -> "art/cat-on-sill.png"' in planned.stdout, planned.stdout
    assert "0 generated, 0 reused, 1 moved" in stdout
    assert len(emulator.charges()) == 3
    assert (workspace.root / "art" / "cat-on-sill.png").read_bytes() == cat_bytes
    assert not (workspace.root / "out" / "cat.png").exists()
    assert workspace.images()["cat"].output == "art/cat-on-sill.png"
    assert workspace.output_problems() == []
    assert workspace.run("plan").stdout.splitlines() == ["No changes. 3 images are up to date."]


def test_two_images_with_identical_inputs_are_paid_for_once(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """Two names for the same inputs share one job: one charge, two identical files."""
    workspace.specs(
        """
        images:
          hero:
            prompt: a lighthouse in a storm
            seed: 9
          hero-copy:
            prompt: a lighthouse in a storm
            seed: 9
        """
    )

    stdout = applied(workspace)

    assert "1 generated, 1 reused" in stdout
    assert len(emulator.charges()) == 1
    images = workspace.images()
    assert images["hero"].key == images["hero-copy"].key
    assert workspace.output_bytes("hero") == workspace.output_bytes("hero-copy")
    assert workspace.output_problems() == []
    assert workspace.net_charges_by_key(emulator.ledger()) == {images["hero"].key: 1}


def test_a_saved_plan_is_read_from_the_workspace_directory_not_the_current_one(
    workspace: CliWorkspace, emulator: RunningEmulator
) -> None:
    """`-C DIR apply FILE` reads FILE in DIR, where `-C DIR plan --out FILE` saved it, and
    applies exactly that plan without asking."""
    workspace.specs(THREE_IMAGES)
    assert workspace.run("plan", "--out", "reviewed.plan").returncode == ExitCode.OK

    run = workspace.run(*workspace.apply_args("reviewed.plan", auto_approve=False))

    assert run.returncode == ExitCode.OK, run.stderr
    assert "Apply complete: 3 generated" in run.stdout
    assert len(emulator.charges()) == 3


@pytest.mark.parametrize("artifact_store", ["s3"], indirect=True)
def test_on_an_s3_store_each_image_is_paid_once_across_reapply_rename_and_a_wiped_cache(
    workspace: CliWorkspace, emulator: RunningEmulator, artifact_store: BucketView
) -> None:
    """The bucket gets every object; a second apply, a rename, and an apply after the local
    cache is gone all find what the bucket holds and pay nothing more."""
    workspace.specs(THREE_IMAGES)
    applied(workspace)
    charges = emulator.charges()
    digests = sorted(str(record.digest) for record in workspace.images().values())

    second = applied(workspace)
    workspace.specs(THREE_IMAGES.replace("  cat:", "  kitten:"))
    renamed = applied(workspace)
    shutil.rmtree(workspace.root / "state" / "objects")
    after_wipe = applied(workspace)

    assert len(charges) == 3
    assert artifact_store.digests() == digests
    assert second.splitlines() == ["No changes. 3 images are up to date."]
    assert "0 generated, 0 reused, 1 moved" in renamed
    assert after_wipe.splitlines() == ["No changes. 3 images are up to date."]
    assert emulator.ledger() == charges
    assert workspace.net_charges_by_key(emulator.ledger()) == dict.fromkeys(
        workspace.image_keys(), 1
    )
