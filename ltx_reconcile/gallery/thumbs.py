"""Gallery thumbnails: small WebP pictures made with Pillow, cached by the picture's digest.

Owns the directory it is given (`state/cache/thumbs/` by default, beside the store):
`<digest>-256.webp`, one file per picture, written atomically (temporary file, rename) and
reused whenever present. A cache, not state: deleting it costs only the time to remake it.
It reads stored objects (or output files) and never changes them, and never reads the state.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterable, Mapping, Set
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from ltx_reconcile.artifacts import digest_file
from ltx_reconcile.store_protocol import ArtifactStoreProtocol

__all__ = ["THUMBNAIL_SIDE", "ThumbnailCache", "picture_sources"]

THUMBNAIL_SIDE: Final = 256
"""The longest side of a thumbnail, in pixels: sharp in a 256-pixel card on a 1x screen."""
_WEBP_QUALITY: Final = 80


class ThumbnailCache:
    """Thumbnails of pictures, made once per digest and read back from `root` afterwards."""

    def __init__(self, root: Path, *, side: int = THUMBNAIL_SIDE) -> None:
        self.root = root
        self.side = side

    def path_for(self, digest: str) -> Path:
        """Where the thumbnail of the picture `digest` is cached."""
        return self.root / f"{digest}-{self.side}.webp"

    def thumbnails(self, sources: Mapping[str, Path]) -> dict[str, bytes]:
        """The WebP bytes of each picture's thumbnail, by digest; made where not cached.

        `sources` maps a digest to a file holding that picture. A source that is not a
        picture Pillow can read gets no thumbnail (the page shows a placeholder); one bad
        file must not cost the whole gallery.
        """
        to_make = [(d, p) for d, p in sources.items() if not self._is_cached(d)]
        if to_make:
            self.root.mkdir(parents=True, exist_ok=True)
            # Pillow decodes and encodes without the GIL, so threads use every core.
            workers = min(len(to_make), os.cpu_count() or 1)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for future in [pool.submit(self._make, d, p) for d, p in to_make]:
                    future.result()
        return {d: self.path_for(d).read_bytes() for d in sources if self._is_cached(d)}

    def _is_cached(self, digest: str) -> bool:
        try:
            return self.path_for(digest).stat().st_size > 0
        except FileNotFoundError:
            return False

    def _make(self, digest: str, source: Path) -> None:
        data = _thumbnail_bytes(source, self.side)
        if data is None:
            return
        fd, temp = tempfile.mkstemp(prefix=".tmp-", suffix=".webp", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            Path(temp).replace(self.path_for(digest))
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


def _thumbnail_bytes(source: Path, side: int) -> bytes | None:
    # Imported here: Pillow costs every command that does not draw 15 ms of start-up.
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(source) as image:
            image.thumbnail((side, side), reducing_gap=2.0)
            picture = image if image.mode in ("RGB", "RGBA") else image.convert("RGBA")
            out = io.BytesIO()
            picture.save(out, "WEBP", quality=_WEBP_QUALITY)
            return out.getvalue()
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def picture_sources(
    digests: Iterable[str],
    store: ArtifactStoreProtocol,
    missing: Set[str],
    outputs: Mapping[str, Path],
) -> dict[str, Path]:
    """Where each picture can be read: its stored object, else an output file with its bytes.

    A fresh clone of a GitOps repository has `out/` but not the store (a cache); the output
    file is used only when it hashes to the digest, so a file a user edited is not shown as
    the recorded picture. Pictures found nowhere are left out.
    """
    sources: dict[str, Path] = {}
    for digest in digests:
        if digest not in missing:
            sources[digest] = store.path_for(digest)
            continue
        output = outputs.get(digest)
        if output is not None and output.is_file() and digest_file(output) == digest:
            sources[digest] = output
    return sources
