"""The shipped examples work as documented: specs that validate, plan and apply.

Every example spec (specs/ and examples/**) starts with the yaml-language-server comment
that points editors at the JSON Schema, and the game-assets example is planned and applied
against the emulator with the real CLI, as its README says.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from ltx_reconcile.emulator.server import RunningEmulator
from ltx_reconcile.errors import ExitCode
from testing.workspace import CliWorkspace

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "docs" / "spec.schema.json"
EXAMPLE_SPECS = sorted(
    path
    for folder in (ROOT / "specs", ROOT / "examples")
    for path in folder.rglob("*")
    if path.suffix in {".yaml", ".yml"} and ".github" not in path.parts
)
GAME_ASSETS = ROOT / "examples" / "game-assets"
CHARACTERS = ("archer", "knight", "mage")
POSES = ("attack", "idle")


def test_there_are_example_specs_in_both_places():
    """The schema test below would pass vacuously if the globs found nothing."""
    folders = {path.relative_to(ROOT).parts[0] for path in EXAMPLE_SPECS}
    assert folders == {"specs", "examples"}


@pytest.mark.parametrize("spec", EXAMPLE_SPECS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_example_spec_points_editors_at_the_schema(spec: Path):
    """Line 1 is `# yaml-language-server: $schema=<relative path to docs/spec.schema.json>`."""
    first = spec.read_text(encoding="utf-8").splitlines()[0]
    prefix = "# yaml-language-server: $schema="
    assert first.startswith(prefix), f"{spec}: line 1 is {first!r}"
    target = first.removeprefix(prefix)
    assert not Path(target).is_absolute()
    assert target == os.path.relpath(SCHEMA, spec.parent)
    assert (spec.parent / target).resolve() == SCHEMA


def test_the_game_assets_example_plans_and_applies_its_grid_and_style_chain(
    workspace: CliWorkspace, emulator: RunningEmulator
):
    """9 images: a 3 x 2 sprite grid and a chain style-key -> hero -> hero-portrait, each
    generated once, after the image it references, from that image's picture."""
    shutil.copytree(GAME_ASSETS / "specs", workspace.root / "specs")

    plan = workspace.run("plan")
    assert plan.returncode == ExitCode.OK, plan.stderr
    assert plan.stdout.splitlines()[-1] == (
        "Plan: 9 to create, 0 to replace, 0 to delete. Estimated cost: 252 credits (flux 252)."
    )
    applied = workspace.apply()
    assert applied.returncode == ExitCode.OK, applied.stderr
    assert "Apply complete: 9 generated" in applied.stdout

    sprites = {f"sprite[character={c},pose={p}]" for c in CHARACTERS for p in POSES}
    assert set(workspace.images()) == {"style-key", "hero", "hero-portrait", *sprites}
    assert workspace.output_problems() == []
    outputs = sorted(
        p.relative_to(workspace.root).as_posix() for p in (workspace.root / "out").rglob("*.png")
    )
    assert outputs == sorted(
        [
            "out/style-key.png",
            "out/hero.png",
            "out/ui/hero-portrait.png",
            *(f"out/sprites/{c}/{p}.png" for c in CHARACTERS for p in POSES),
        ]
    )
    assert workspace.net_charges_by_key(emulator.ledger()) == dict.fromkeys(
        workspace.image_keys(), 1
    )

    image_of_job = {row.job_id: row.image for row in workspace.journal()}
    references = {image_of_job[job.job_id]: job.reference_digest for job in emulator.jobs()}
    digest = {
        name: hashlib.sha256(workspace.output_bytes(name)).hexdigest()
        for name in ("style-key", "hero")
    }
    assert references["style-key"] is None
    assert references["hero"] == digest["style-key"]
    assert references["hero-portrait"] == digest["hero"]
    assert {references[name] for name in sprites} == {digest["style-key"]}

    again = workspace.run("plan")
    assert again.stdout == "No changes. 9 images are up to date.\n"
