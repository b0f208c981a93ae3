"""The artifact store in an S3-compatible bucket, shared by a team's runners (issue 8).

Owns the keys below `s3://bucket/prefix/` and a local read-through cache directory:

    prefix/sha256/ab/<other 62 hex digits>     one object, the local store's layout
    prefix/quarantine/<digest>.<random>        corrupt objects `verify --repair` moved aside
    cache/                                     an `ArtifactStore`: what this machine has read

The bucket is the truth; the cache is a copy of some of its objects, so that `path_for`
returns a local file an output can hard-link, and a second read costs no GET.

Guarantees, as the local store's:
- nothing is ever overwritten: objects are written with a conditional put (`If-None-Match:
  *`), which the server refuses (412) when the key exists. Then the existing object is read
  and hashed: the same bytes make the put a no-op, other bytes raise `IntegrityError` and
  are left as they are for `verify` to judge;
- bytes are verified by digest on every read (a download is hashed before it enters the
  cache) and on every write (the put carries the sha256 as `ChecksumSHA256`, so the server
  refuses bytes damaged on the way);
- two runners storing the same object at once both succeed and leave one object.

Credentials, region and endpoint come from boto3's usual sources (`AWS_ACCESS_KEY_ID`,
`AWS_PROFILE`, `AWS_REGION`, `AWS_ENDPOINT_URL`, ~/.aws/config, instance roles...), which
boto3 reads itself; `endpoint` (`--store-endpoint`) overrides the URL. No secret is ever
part of a message here: errors name the bucket, the key and S3's error code.

boto3 is imported when the first request is made, never by `import ltx_reconcile`. Every
method blocks; the client is thread-safe, so the executor calls them via `asyncio.to_thread`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import secrets
import tempfile
import threading
from collections.abc import Collection, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ltx_reconcile.artifacts import (
    DIGEST_ALGORITHM,
    ArtifactStore,
    StoredObject,
    is_digest,
)
from ltx_reconcile.errors import IntegrityError, StateError, UsageError

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

__all__ = ["S3ArtifactStore", "S3Location"]

_CHUNK: Final = 1 << 20
_PUT_ATTEMPTS: Final = 3
"""A conditional put can meet a concurrent one (409 ConditionalRequestConflict): retry."""
_MAX_CONNECTIONS: Final = 32
"""Above the executor's usual parallelism, so threads do not queue for a connection."""
_MISSING_CODES: Final = frozenset({"404", "NoSuchKey", "NotFound"})
_CREDENTIALS_HINT: Final = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, for an account that "
    "may read and write the bucket"
)


@dataclass(frozen=True, slots=True)
class S3Location:
    """A bucket and a key prefix (no leading or trailing slash; may be empty)."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """Read `s3://bucket/prefix`; raises `UsageError` when there is no bucket."""
        rest = url.removeprefix("s3://")
        bucket, _, prefix = rest.partition("/")
        if not bucket or rest == url:
            raise UsageError(
                f"{url!r} is not an S3 store: expected s3://bucket or s3://bucket/prefix",
                hint="pass --store s3://BUCKET/PREFIX, or a directory for a local store",
            )
        return cls(bucket, prefix.strip("/"))

    def key(self, *parts: str) -> str:
        """The key of `parts` below the prefix."""
        return "/".join((self.prefix, *parts) if self.prefix else parts)

    def url(self, key: str | None = None) -> str:
        """`s3://bucket/key` (the prefix's, by default), for messages."""
        return f"s3://{self.bucket}/{self.prefix if key is None else key}".rstrip("/")


class S3ArtifactStore:
    """Objects in a bucket, read through a local cache; see the module docstring."""

    def __init__(
        self,
        location: S3Location,
        cache: Path,
        *,
        endpoint: str | None = None,
        client: S3Client | None = None,
    ) -> None:
        self.location = location
        self.cache = ArtifactStore(cache)
        self._endpoint = endpoint
        self._client = client
        self._lock = threading.Lock()
        self._present: set[str] = set()
        """Digests seen in the bucket by this process: objects are never rewritten, so a
        present object stays good until gc or verify --repair (which forget it here)."""
        self._sizes: dict[str, int] = {}
        self._bad: set[str] = set()
        """Digests `verify` found corrupt in the bucket: `path_for` must not fetch them."""

    @property
    def root(self) -> Path:
        """The cache directory: where output files' objects live on this machine."""
        return self.cache.root

    def __str__(self) -> str:
        return self.location.url()

    def path_for(self, digest: str) -> Path:
        """The object's path in the cache, fetched from the bucket and verified if need be.

        The path may not exist: when the bucket has no such object. Raises `IntegrityError`
        when the bucket's bytes do not match `digest` (nothing enters the cache), and
        ValueError for a string that is not a digest.
        """
        cached = self.cache.path_for(digest)
        if cached.is_file() or digest in self._bad:
            return cached
        self._fetch(digest)
        return cached

    def absent_among(self, recorded: Collection[str]) -> AbstractSet[str]:
        """The digests of `recorded` with no object in the bucket: one listing, no HEADs."""
        if not recorded:
            return frozenset()
        present = set(self._list())
        return frozenset(digest for digest in recorded if digest not in present)

    def contains(self, digest: str) -> bool:
        """Whether the bucket holds the object: a HEAD, unless this process has seen it."""
        key = self._key(digest)
        if digest in self._present:
            return True
        with self._errors("look up", key):
            try:
                head = self._s3().head_object(Bucket=self.location.bucket, Key=key)
            except self._client_error() as err:
                if _code(err) in _MISSING_CODES:
                    return False
                raise
        self._seen(digest, head["ContentLength"])
        return True

    def temp_dir(self) -> Path:
        """The cache's download directory, so `put_file(move=True)` links into the cache."""
        return self.cache.temp_dir()

    def put_bytes(self, data: bytes, *, expected_digest: str | None = None) -> StoredObject:
        """Store `data` in the cache, then in the bucket unless it is there already."""
        stored = self.cache.put_bytes(data, expected_digest=expected_digest)
        self._upload(stored)
        return stored

    def put_file(
        self, src: Path, *, expected_digest: str | None = None, move: bool = False
    ) -> StoredObject:
        """Store the file `src` in the cache (as `ArtifactStore.put_file`), then the bucket."""
        stored = self.cache.put_file(src, expected_digest=expected_digest, move=move)
        self._upload(stored)
        return stored

    def verify(self, digest: str) -> bool:
        """Whether the bucket's object hashes to `digest`, and the cached copy too, if any.

        Reads the whole object from the bucket: the cache cannot vouch for the bucket.
        """
        if not self._remote_is_intact(digest):
            return False
        return not self.cache.contains(digest) or self.cache.verify(digest)

    def iter_digests(self) -> Iterator[str]:
        """Every object's digest in the bucket, sorted; strays under the prefix skipped."""
        return iter(sorted(self._list()))

    def size(self, digest: str) -> int:
        """The object's size in bytes. Raises `StateError` when the bucket lacks it."""
        if digest not in self._sizes and not self.contains(digest):
            raise StateError(
                f"artifact {digest} is missing from the store ({self.location.url()})",
                hint="run `ltx-reconcile verify` to see what is missing and what can be restored",
            )
        return self._sizes[digest]

    def remove(self, digest: str) -> bool:
        """Delete the object from the bucket and the cache (for gc); True when it was there."""
        present = self.contains(digest)
        if present:
            key = self._key(digest)
            with self._errors("delete", key):
                self._s3().delete_object(Bucket=self.location.bucket, Key=key)
        self._forget(digest)
        return self.cache.remove(digest) or present

    def quarantine(self, digest: str) -> Path | None:
        """Move a corrupt object aside, locally and in the bucket; where its bytes went here.

        The cached copy goes to the cache's quarantine. The bucket's object is moved aside
        only when its own bytes are wrong (a good one stays, for every runner): copied to
        `prefix/quarantine/`, then deleted from its name, which frees the name for a good
        copy; when there was no cached copy, its bytes are saved to the cache's quarantine
        too, for a person to look at. None when neither place held a corrupt object.
        """
        key = self._key(digest)
        local = self.cache.quarantine(digest)
        if self._remote_is_intact(digest) or not self.contains(digest):
            return local
        aside = self.location.key("quarantine", f"{digest}.{secrets.token_hex(4)}")
        bucket = self.location.bucket
        with self._errors("move aside", key):
            if local is None:
                local = self._save_aside(key, digest)
            self._s3().copy_object(
                Bucket=bucket, Key=aside, CopySource={"Bucket": bucket, "Key": key}
            )
            self._s3().delete_object(Bucket=bucket, Key=key)
        self._forget(digest)
        self._bad.discard(digest)
        return local

    def _remote_is_intact(self, digest: str) -> bool:
        """Whether the bucket holds the object and its bytes hash to `digest` (a full GET)."""
        key = self._key(digest)
        with self._errors("read", key):
            try:
                body = self._s3().get_object(Bucket=self.location.bucket, Key=key)["Body"]
            except self._client_error() as err:
                if _code(err) in _MISSING_CODES:
                    self._forget(digest)
                    return False
                raise
            hasher = hashlib.sha256()
            for chunk in body.iter_chunks(_CHUNK):
                hasher.update(chunk)
        if hasher.hexdigest() != digest:
            self._bad.add(digest)
            return False
        self._bad.discard(digest)
        return True

    def _fetch(self, digest: str) -> None:
        """Download the object into the cache, verified; nothing when the bucket lacks it."""
        key = self._key(digest)
        fd, name = tempfile.mkstemp(dir=self.cache.temp_dir(), prefix=".tmp-")
        download = Path(name)
        try:
            with self._errors("read", key), open(fd, "wb") as file:  # noqa: PTH123 (an fd)
                try:
                    body = self._s3().get_object(Bucket=self.location.bucket, Key=key)["Body"]
                except self._client_error() as err:
                    if _code(err) in _MISSING_CODES:
                        return
                    raise
                hasher = hashlib.sha256()
                for chunk in body.iter_chunks(_CHUNK):
                    hasher.update(chunk)
                    file.write(chunk)
            if hasher.hexdigest() != digest:
                raise IntegrityError(
                    f"object {self.location.url(key)} does not match its digest {digest} "
                    f"(its bytes hash to {hasher.hexdigest()}); it was not used",
                    hint="run `ltx-reconcile verify --repair` to move it aside and restore it",
                )
            stored = self.cache.put_file(download, expected_digest=digest, move=True)
            self._seen(digest, stored.size)
        finally:
            download.unlink(missing_ok=True)

    def _save_aside(self, key: str, digest: str) -> Path:
        """Copy the bucket's (corrupt) bytes into the cache's quarantine, unverified."""
        target_dir = self.cache.root / "quarantine"
        target_dir.mkdir(parents=True, exist_ok=True)
        target = target_dir / f"{digest}.{secrets.token_hex(4)}"
        body = self._s3().get_object(Bucket=self.location.bucket, Key=key)["Body"]
        with target.open("xb") as file:
            for chunk in body.iter_chunks(_CHUNK):
                file.write(chunk)
        return target

    def _upload(self, stored: StoredObject) -> None:
        """Put the cached object into the bucket, never replacing what is there."""
        digest = stored.digest
        if digest in self._present:
            return
        key = self._key(digest)
        checksum = base64.b64encode(binascii.unhexlify(digest)).decode("ascii")
        for _attempt in range(_PUT_ATTEMPTS):
            with self._errors("write", key):
                try:
                    with stored.path.open("rb") as body:
                        self._s3().put_object(
                            Bucket=self.location.bucket,
                            Key=key,
                            Body=body,
                            IfNoneMatch="*",
                            ChecksumSHA256=checksum,
                        )
                except self._client_error() as err:
                    if _code(err) not in {"PreconditionFailed", "ConditionalRequestConflict"}:
                        raise
                    # Someone stored it first (412), or is storing it now (409): theirs
                    # stands if it holds the same bytes.
                    if self._remote_is_intact(digest):
                        self._seen(digest, stored.size)
                        return
                    if digest in self._bad:
                        raise IntegrityError(
                            f"the bucket holds other bytes under {self.location.url(key)}; "
                            "they were left as they are, not overwritten",
                            hint="run `ltx-reconcile verify --repair` to move them aside",
                        ) from None
                    continue  # the rival's put failed or is unfinished: try ours again
            self._seen(digest, stored.size)
            return
        raise StateError(
            f"cannot write {self.location.url(key)}: other writers kept conflicting",
            hint="run the command again",
        )

    def _list(self) -> Iterator[str]:
        """The digests of the objects in the bucket, in key order, recording their sizes."""
        start = self.location.key(DIGEST_ALGORITHM, "")
        paginator = self._s3().get_paginator("list_objects_v2")
        with self._errors("list", start):
            for page in paginator.paginate(Bucket=self.location.bucket, Prefix=start):
                for item in page.get("Contents", ()):
                    shard, _, rest = item["Key"][len(start) :].partition("/")
                    digest = shard + rest
                    if len(shard) == 2 and is_digest(digest):
                        self._seen(digest, item["Size"])
                        yield digest

    def _key(self, digest: str) -> str:
        if not is_digest(digest):
            raise ValueError(f"not a sha256 digest (64 lowercase hex digits): {digest!r}")
        return self.location.key(DIGEST_ALGORITHM, digest[:2], digest[2:])

    def _seen(self, digest: str, size: int) -> None:
        self._present.add(digest)
        self._sizes[digest] = size

    def _forget(self, digest: str) -> None:
        self._present.discard(digest)
        self._sizes.pop(digest, None)

    def _s3(self) -> S3Client:
        """The client, made on first use: boto3 is imported only when a request is due."""
        with self._lock:
            if self._client is None:
                self._client = _make_client(self._endpoint)
            return self._client

    @staticmethod
    def _client_error() -> type[Exception]:
        from botocore.exceptions import ClientError

        return ClientError

    @contextlib.contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """Turn boto3's failures into a `StateError` naming the object, never a secret."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        url = self.location.url(key)
        try:
            yield
        except NoCredentialsError as err:
            raise StateError(
                f"cannot {action} {url}: no AWS credentials", hint=_CREDENTIALS_HINT
            ) from err
        except ClientError as err:
            code = _code(err)
            hint = (
                f"create the bucket {self.location.bucket!r}, or check --store"
                if code == "NoSuchBucket"
                else _CREDENTIALS_HINT
                if code in {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
                else "check the bucket and --store-endpoint, then run the command again"
            )
            raise StateError(f"cannot {action} {url}: {code}", hint=hint) from err
        except BotoCoreError as err:
            raise StateError(
                f"cannot {action} {url}: {type(err).__name__}",
                hint="check --store-endpoint (or AWS_ENDPOINT_URL) and the network",
            ) from err


def _code(err: Exception) -> str:
    response = getattr(err, "response", {})
    return str(response.get("Error", {}).get("Code", ""))


def _make_client(endpoint: str | None) -> S3Client:
    import boto3
    from botocore.config import Config

    config = Config(
        max_pool_connections=_MAX_CONNECTIONS,
        retries={"mode": "standard"},
        # S3-compatible servers (MinIO, Ceph, moto) serve buckets by path, not by host name.
        s3={"addressing_style": "path"} if endpoint else None,
    )
    # A session of our own: boto3's default session is not safe to share across threads.
    return boto3.session.Session().client("s3", endpoint_url=endpoint, config=config)
