"""Build file trees in one call, so a test shows its inputs inline (dvc's `tmp_dir.gen`)."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path

__all__ = ["Tree", "gen"]

Tree = Mapping[str, "str | bytes | Tree"]
"""A folder: names map to text (dedented, UTF-8), raw bytes, or a nested folder."""


def gen(root: Path, tree: Tree) -> list[Path]:
    """Create `tree` under `root` and return the files written, in creation order.

    Text is dedented, so triple-quoted YAML can be indented with the test's code. A name
    with `/` creates the folders on its way.
    """
    written: list[Path] = []
    for name, content in tree.items():
        path = root / name
        if isinstance(content, Mapping):
            path.mkdir(parents=True, exist_ok=True)
            written.extend(gen(path, content))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip("\n"), encoding="utf-8")
        written.append(path)
    return written
