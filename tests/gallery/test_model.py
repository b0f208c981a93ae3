"""The gallery model as a pure function of specs and state, without processes or files."""

from __future__ import annotations

from pathlib import Path

from ltx_reconcile.gallery.model import build_gallery, grid_labels
from ltx_reconcile.spec.image import GenerationInputs, ImageSpec, Reference, SourceLocation
from ltx_reconcile.state.records import StateSnapshot

ROOT = Path("/work/repo")


def _spec(name: str, inputs: GenerationInputs, grid: str | None = None) -> ImageSpec:
    source = SourceLocation(ROOT / "specs" / "images.yaml", 3, 3)
    return ImageSpec(name, inputs, f"out/{name}.png", source, grid=grid)


def _gallery(*images: ImageSpec):
    snapshot = StateSnapshot(path=ROOT / "state" / "state.db", lineage=None, serial=0)
    return build_gallery(images, snapshot, attempts={}, missing=frozenset(), root=ROOT)


def test_a_reference_file_and_the_source_are_named_relative_to_the_workspace():
    """A page may be committed: it names files as the repository does, not by host paths."""
    inputs = GenerationInputs("a fox", seed=1, reference=Reference(file=ROOT / "art" / "fox.png"))
    (card,) = _gallery(_spec("fox", inputs)).images
    assert card.inputs == (
        ("model", "flux"),
        ("seed", "1"),
        ("aspectRatio", "16:9"),
        ("reference", "art/fox.png"),
    )
    assert card.source == "specs/images.yaml:3:3"


def test_grid_members_are_grouped_under_their_grid_with_their_axes():
    """Members of one grid form one group whose axes are read from the members' names."""
    gallery = _gallery(
        _spec("a", GenerationInputs("a")),
        _spec("g[seed=1,mood=calm]", GenerationInputs("g", seed=1), grid="g"),
        _spec("g[seed=2,mood=calm]", GenerationInputs("g", seed=2), grid="g"),
    )
    assert [(g.name, g.axes, len(g.images)) for g in gallery.groups] == [
        ("a", (), 1),
        ("g", ("seed", "mood"), 2),
    ]
    assert gallery.status_counts == {"pending": 3}


def test_grid_labels_come_back_from_a_name_in_the_order_written():
    """`base[axis=label,...]` splits into its pairs; a name off the grid has none."""
    assert grid_labels("ranger[seed=11,aspect_ratio=16:9]", "ranger") == (
        ("seed", "11"),
        ("aspect_ratio", "16:9"),
    )
    assert grid_labels("ranger", "ranger") == ()
