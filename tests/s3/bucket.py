"""The S3 store axis of the behaviour tests: a workspace whose commands use a bucket.

`STORE_BACKENDS` parametrizes the `artifact_store` fixture (tests/conftest.py) indirectly:
"local" is the workspace's objects directory, "s3" a fresh bucket on the session's S3
emulator that every later command of the workspace uses (`LTX_STORE`, with the test
credentials), its objects directory then being the read-through cache. The test inspects
the store through what the fixture returns, the same questions either way.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Final

from ltx_reconcile.artifacts import StoredObject
from ltx_reconcile.s3store import S3ArtifactStore, S3Location
from testing.workspace import CliWorkspace
from tests.s3.server import S3Server

__all__ = ["STORE_BACKENDS", "BucketView", "use_a_bucket"]

STORE_BACKENDS: Final = ("local", "s3")

PREFIX: Final = "team/objects"


class BucketView:
    """The workspace's bucket seen from outside, asking S3 afresh every time.

    A new store per question, with a cache of its own: a store remembers the objects it
    has seen (and caches their bytes), so a second question would not see a deletion.
    """

    def __init__(self, server: S3Server, location: S3Location, scratch: Path) -> None:
        self.server = server
        self.location = location
        self._scratch = scratch

    def contains(self, digest: str) -> bool:
        """Whether the bucket holds the object."""
        return self._store().contains(digest)

    def size(self, digest: str) -> int:
        """The object's size in the bucket."""
        return self._store().size(digest)

    def put_bytes(self, data: bytes) -> StoredObject:
        """Put an object in the bucket, as another runner would."""
        return self._store().put_bytes(data)

    def digests(self) -> list[str]:
        """Every object's digest in the bucket, sorted."""
        return list(self._store().iter_digests())

    def _store(self) -> S3ArtifactStore:
        self._scratch.mkdir(parents=True, exist_ok=True)
        cache = Path(tempfile.mkdtemp(dir=self._scratch))
        return S3ArtifactStore(self.location, cache, client=self.server.client())


def use_a_bucket(workspace: CliWorkspace, server: S3Server, scratch: Path) -> BucketView:
    """Point every later command of `workspace` at a new bucket of `server`; a view of it.

    `scratch` (outside the workspace) holds the view's own caches.
    """
    location = S3Location(server.new_bucket(), PREFIX)
    workspace.extra_env.update(server.env(), LTX_STORE=location.url())
    return BucketView(server, location, scratch)
