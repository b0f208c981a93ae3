"""The parse cache: a warm load equals a cold one, keys included, and bad entries are misses."""

from __future__ import annotations

from pathlib import Path

from ltx_reconcile.keys import image_key
from ltx_reconcile.spec.cache import read_entry
from ltx_reconcile.spec.loader import LoadedSpecs, load_specs

SPECS = """\
defaults:
  model: flux
images:
  hero:
    prompt: A knight in the rain
    seed: 7
  villain:
    prompt: A dragon over the castle
    reference: hero
  sketch:
    prompt: The same knight, as a sketch
    reference: ../ref.png
  lighthouse:
    prompt: A lighthouse
    grid:
      seed: [1, 2]
"""


def _load(root: Path) -> LoadedSpecs:
    return load_specs(root / "specs", root=root, cache_dir=root / "cache")


def _tree(root: Path) -> None:
    (root / "specs").mkdir()
    (root / "specs" / "a.yaml").write_text(SPECS)
    (root / "ref.png").write_bytes(b"not read by the loader")


def test_a_warm_load_equals_a_cold_one_keys_included(workspace: Path) -> None:
    _tree(workspace)
    cold = _load(workspace)
    assert len(list((workspace / "cache").iterdir())) == 1
    warm = _load(workspace)
    assert warm.images == cold.images
    keys = {image.name: image.key for image in warm.images}
    assert keys["villain"] is None  # depends on hero's digest, known only at plan time
    assert keys["sketch"] is None  # depends on the file's bytes, which may change alone
    for image in warm.images:
        if image.inputs.reference is None:
            assert image.key == image_key(image.inputs, None)


def test_a_damaged_entry_is_a_miss_and_is_rewritten(workspace: Path) -> None:
    _tree(workspace)
    cold = _load(workspace)
    (entry,) = (workspace / "cache").iterdir()
    blob = bytearray(entry.read_bytes())
    blob[-5] ^= 0xFF
    entry.write_bytes(bytes(blob))
    assert _load(workspace).images == cold.images
    assert entry.read_bytes() != bytes(blob)


def test_an_entry_is_read_only_for_its_own_content(workspace: Path) -> None:
    _tree(workspace)
    _load(workspace)
    (entry,) = (workspace / "cache").iterdir()
    assert read_entry(entry, "0" * 64) is None
