"""What every artifact store offers its callers, and `open_store`, which picks one.

Two stores implement `ArtifactStoreProtocol`: the local directory (`artifacts.ArtifactStore`)
and an S3-compatible bucket (`s3store.S3ArtifactStore`, issue 8) that keeps a local
read-through cache in the same layout, so output files are still hard links to a local
object. The executor, the importer, outputs, verify, gc, the gallery and inventory are
written against this protocol and never learn which store they were given.

The contract every store keeps (the local store's docstring has the details):
- objects are named by the bare hex sha256 of their bytes, under `sha256/ab/<62 digits>`;
- an object is never overwritten: storing bytes already present is a no-op, and a
  different object under the digest raises `IntegrityError` and is left as it is;
- bytes are verified against their digest on the way in and on the way out;
- `path_for` gives a local file path a caller may hard-link (for a remote store, the
  cache's, fetched and verified on demand).

`open_store` reads a `--store` value: a directory, or `s3://bucket/prefix`. boto3 is
imported only for the latter, so neither a plan nor a local apply pays for it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Protocol

from ltx_reconcile.artifacts import ArtifactStore, StoredObject

__all__ = ["S3_SCHEME", "ArtifactStoreProtocol", "open_store"]

S3_SCHEME = "s3://"


class ArtifactStoreProtocol(Protocol):
    """A content-addressed store of verified, never-overwritten objects."""

    @property
    def root(self) -> Path:
        """The local directory holding the objects (a remote store's cache), for messages."""
        ...

    def path_for(self, digest: str) -> Path:
        """A local path of the object (which may not exist when the object is absent)."""
        ...

    def absent_among(self, recorded: Collection[str]) -> AbstractSet[str]:
        """The digests of `recorded` whose objects are not in the store."""
        ...

    def contains(self, digest: str) -> bool:
        """Whether the object is present (without hashing it)."""
        ...

    def temp_dir(self) -> Path:
        """A local directory for downloads that `put_file(move=True)` can link from."""
        ...

    def put_bytes(self, data: bytes, *, expected_digest: str | None = None) -> StoredObject:
        """Store `data`; a no-op when present. `IntegrityError` on a digest mismatch."""
        ...

    def put_file(
        self, src: Path, *, expected_digest: str | None = None, move: bool = False
    ) -> StoredObject:
        """Store the file `src` (consumed with `move`). `IntegrityError` on a mismatch."""
        ...

    def verify(self, digest: str) -> bool:
        """Whether the object is present and its bytes hash to `digest`."""
        ...

    def iter_digests(self) -> Iterator[str]:
        """Every object's digest, sorted."""
        ...

    def size(self, digest: str) -> int:
        """The object's size in bytes; `StateError` when it is missing."""
        ...

    def remove(self, digest: str) -> bool:
        """Delete the object (for gc); True when it was there."""
        ...

    def quarantine(self, digest: str) -> Path | None:
        """Move a corrupt object aside; the local path its bytes went to, None if absent."""
        ...


def open_store(
    spec: str | Path, cache: Path, *, endpoint: str | None = None
) -> ArtifactStoreProtocol:
    """The store `spec` names: `s3://bucket/prefix`, else a local directory.

    `cache` is the local directory of a remote store's read-through cache (the local
    store's layout); `endpoint` the URL of an S3-compatible server, when not AWS's. Raises
    `UsageError` for a malformed `s3://` value; a local store needs no check.
    """
    text = str(spec)
    if text.startswith(S3_SCHEME):
        # Imported here: boto3 costs 100 ms or more of start-up, and only a team store needs it.
        from ltx_reconcile.s3store import S3ArtifactStore, S3Location

        return S3ArtifactStore(S3Location.parse(text), cache, endpoint=endpoint)
    return ArtifactStore(Path(spec))
