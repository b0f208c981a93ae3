"""Content-addressed artifact store: every image we paid for, kept once, under its sha256.

Owns the directory `root` (chosen by the caller; `state/objects` by default). With GitOps
(issue 7) it is a cache that `verify --repair` rebuilds from the committed `out/` files.

    root/sha256/ab/<other 62 hex digits>   one object: read-only (0o444), never rewritten
    root/sha256/ab/.tmp-*                   `put_bytes` staging, removed on every exit
    root/tmp/                               where downloads land (`temp_dir`)
    root/quarantine/<digest>.<random>       corrupt objects `verify --repair` moved aside

Digest format, everywhere (state rows, plan files, events, messages): the bare, lowercase,
64-hex-digit sha256 of the bytes, without a `sha256:` prefix. The algorithm is named once, by
the `sha256` directory, so another algorithm would get a directory beside it.

Guarantees:
- an object's name appears only once its bytes are hashed, verified, fsynced and read-only,
  and its directory is fsynced after: a crash leaves a whole object or none;
- nothing is ever overwritten: objects are installed with link(2), which fails rather than
  replace a name. An existing object with the right bytes makes a put a no-op; one with wrong
  bytes raises `IntegrityError` and is left as it is for `verify` (issue 6) to judge;
- two processes storing the same object at once both succeed and leave one intact object.

It must not know about images, specs, state rows or the API, print, or pick its own root.
Everything here blocks (hashing, fsync): the async executor calls it via `asyncio.to_thread`.
POSIX only: directories are fsynced through open(2), and `remove` relies on a read-only file
being removable from a writable directory.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NamedTuple

from ltx_reconcile.errors import IntegrityError, StateError

__all__ = [
    "DIGEST_ALGORITHM",
    "OBJECT_MODE",
    "ArtifactStore",
    "ImageInfo",
    "LinkFunction",
    "StoredObject",
    "digest_bytes",
    "digest_file",
    "fsync_dir",
    "image_info",
    "install_no_clobber",
    "is_digest",
]

DIGEST_ALGORITHM: Final = "sha256"
OBJECT_MODE: Final = 0o444
"""Objects are read-only, so an editor writing a hard-linked output in place fails loudly."""

_DIGEST_PATTERN: Final = re.compile(r"[0-9a-f]{64}")
_TEMP_PREFIX: Final = ".tmp-"
_QUARANTINE: Final = "quarantine"
_SHARD_CHARS: Final = 2

LinkFunction = Callable[[Path, Path], None]
"""`os.link`'s shape; a parameter so tests can stand in a filesystem without hard links."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """One object in the store: its digest, its size in bytes and where it lives."""

    digest: str
    size: int
    path: Path


class ImageInfo(NamedTuple):
    """What an image file's header says; a tuple so callers can unpack it."""

    mime: str
    width: int
    height: int


def is_digest(value: str) -> bool:
    """Whether `value` is a digest in our one format: 64 lowercase hex digits."""
    return _DIGEST_PATTERN.fullmatch(value) is not None


def digest_bytes(data: bytes) -> str:
    """The digest of `data`."""
    return hashlib.sha256(data).hexdigest()


def digest_file(path: Path) -> str:
    """The digest of the file at `path`, read in chunks (memory stays flat for any size)."""
    with path.open("rb") as file:
        return hashlib.file_digest(file, DIGEST_ALGORITHM).hexdigest()


def fsync_dir(path: Path) -> None:
    """Make the entries of directory `path` (new, renamed or removed names) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def install_no_clobber(staged: Path, final: Path, *, link: LinkFunction = os.link) -> bool:
    """Give the file `staged` the name `final` unless that name exists; True when it did.

    On True, `staged` is gone and its bytes live on as `final`; on False nothing changed and
    `staged` is the caller's to judge. `final` appears atomically: no reader sees half a file.
    Both paths must be on one filesystem.
    """
    try:
        link(staged, final)
    except FileExistsError:
        return False
    except OSError:
        # No hard links on this filesystem (FAT, some network shares). rename(2) is atomic but
        # replaces, so look first; the window is microseconds, and in the store the only rival
        # for a name is another writer of the same verified bytes.
        if final.exists():
            return False
        staged.replace(final)
        return True
    staged.unlink()
    return True


def image_info(path: Path) -> ImageInfo:
    """Read an image's type and size from its header only (Pillow opens lazily).

    Raises `IntegrityError` when the file is not an image Pillow recognises.
    """
    # Imported here: Pillow costs every plan 15 ms of start-up, and only apply reads images.
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            mime = Image.MIME.get(image.format or "", "application/octet-stream")
            return ImageInfo(mime, image.width, image.height)
    except UnidentifiedImageError as err:
        raise IntegrityError(
            f"{path} is not an image file",
            hint="the download or the stored object is damaged; fetch it again",
        ) from err


class ArtifactStore:
    """The content-addressed object directory; see the module docstring for its guarantees."""

    def __init__(self, root: Path, *, link: LinkFunction = os.link) -> None:
        self.root = root
        self._link = link

    def path_for(self, digest: str) -> Path:
        """Where the object with `digest` lives (whether or not it is there).

        Raises ValueError for a string that is not a digest: a caller's bug, and a guard
        against a name like `../x` leaving the store.
        """
        if not is_digest(digest):
            raise ValueError(f"not a sha256 digest (64 lowercase hex digits): {digest!r}")
        return self.root / DIGEST_ALGORITHM / digest[:_SHARD_CHARS] / digest[_SHARD_CHARS:]

    def absent_among(self, recorded: Collection[str]) -> AbstractSet[str]:
        """The digests of `recorded` whose objects are not in the store, found lazily.

        Each shard directory is listed once, when a digest in it is first asked about:
        one stat per object cost a tenth of a 100,000-image plan.
        """
        return _AbsentObjects(self.root, recorded)

    def contains(self, digest: str) -> bool:
        """Whether the object is present; one stat, no hashing (see `verify`)."""
        return self.path_for(digest).is_file()

    def temp_dir(self) -> Path:
        """A directory for downloads, on the store's filesystem so `put_file(move=True)` links.

        Files left here by a crash are garbage: nothing reads them back.
        """
        path = self.root / "tmp"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def put_bytes(self, data: bytes, *, expected_digest: str | None = None) -> StoredObject:
        """Store `data` and return its object; storing bytes already present is a no-op.

        Raises `IntegrityError` when `data` does not match `expected_digest` (nothing is
        written), or when the store holds a corrupt object under the digest (left as it is).
        """
        digest = digest_bytes(data)
        if expected_digest is not None and digest != expected_digest:
            raise _mismatch("the bytes to store", expected_digest, digest)
        existing = self._existing(digest)
        if existing is not None:
            return existing
        shard = self.path_for(digest).parent
        _make_dir_durable(shard)
        fd, name = tempfile.mkstemp(dir=shard, prefix=_TEMP_PREFIX)
        staged = Path(name)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
            return self._install(staged, digest)
        finally:
            staged.unlink(missing_ok=True)

    def put_file(
        self, src: Path, *, expected_digest: str | None = None, move: bool = False
    ) -> StoredObject:
        """Store the file `src` (hashed as a stream) and return its object.

        With `move`, `src` is consumed: linked into place when it is on the store's filesystem
        (download into `temp_dir()` for that), copied otherwise, and gone on success. Without
        it, `src` is copied and left alone. Raises `IntegrityError` when the bytes do not match
        `expected_digest` (nothing is stored; with `move`, `src` is deleted, since wrong bytes
        are worth nothing), or when the store holds a corrupt object under the digest (then
        `src` is kept: its bytes are the good ones).
        """
        staged = src if move and self._is_on_store_filesystem(src) else self._copy_to_temp(src)
        try:
            digest = digest_file(staged)
            if expected_digest is not None and digest != expected_digest:
                if move:
                    src.unlink(missing_ok=True)
                raise _mismatch(str(src), expected_digest, digest)
            stored = self._existing(digest) or self._install(staged, digest)
            if move:
                src.unlink(missing_ok=True)
            return stored
        finally:
            if staged != src:
                staged.unlink(missing_ok=True)

    def verify(self, digest: str) -> bool:
        """Whether the object is present and its bytes still hash to `digest`."""
        try:
            return digest_file(self.path_for(digest)) == digest
        except FileNotFoundError:
            return False

    def iter_digests(self) -> Iterator[str]:
        """Every object's digest, sorted; staging files and strays are skipped."""
        for path in sorted((self.root / DIGEST_ALGORITHM).glob("*/*")):
            digest = path.parent.name + path.name
            if len(path.parent.name) == _SHARD_CHARS and is_digest(digest):
                yield digest

    def size(self, digest: str) -> int:
        """The object's size in bytes. Raises `StateError` when it is missing."""
        path = self.path_for(digest)
        try:
            return path.stat().st_size
        except FileNotFoundError as err:
            raise StateError(
                f"artifact {digest} is missing from the store ({path})",
                hint="run `ltx-reconcile verify` to see what is missing and what can be restored",
            ) from err

    def remove(self, digest: str) -> bool:
        """Delete the object (for gc); True when it was there.

        Its read-only mode is no obstacle on POSIX: removal needs only the directory's write
        permission, so the mode, shared with any hard-linked output, is left untouched.
        """
        path = self.path_for(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        fsync_dir(path.parent)
        return True

    def quarantine(self, digest: str) -> Path | None:
        """Move the object aside into `root/quarantine/`; where it went, None if absent.

        For a corrupt object (`verify --repair`): its name is freed for a good copy, and its
        bytes are kept, not deleted, for a person to look at. The random suffix keeps an
        earlier quarantined copy from being replaced.
        """
        path = self.path_for(digest)
        target_dir = self.root / _QUARANTINE
        _make_dir_durable(target_dir)
        target = target_dir / f"{digest}.{secrets.token_hex(4)}"
        try:
            path.rename(target)
        except FileNotFoundError:
            return None
        fsync_dir(path.parent)
        fsync_dir(target_dir)
        return target

    def _existing(self, digest: str) -> StoredObject | None:
        """The object if present and intact, None if absent; corrupt raises IntegrityError."""
        if not self.contains(digest):
            return None
        return self._verified(digest)

    def _verified(self, digest: str) -> StoredObject:
        path = self.path_for(digest)
        if digest_file(path) != digest:
            raise IntegrityError(
                f"stored object {path} does not match its digest {digest}; "
                "it was left as it is, not overwritten",
                hint="run `ltx-reconcile verify --repair` to restore it",
            )
        return StoredObject(digest, path.stat().st_size, path)

    def _install(self, staged: Path, digest: str) -> StoredObject:
        """Make the verified file `staged` the object `digest`, consuming it."""
        final = self.path_for(digest)
        _make_dir_durable(final.parent)
        _fsync_file(staged)
        staged.chmod(OBJECT_MODE)
        if not install_no_clobber(staged, final, link=self._link):
            # Another process stored the same object since we looked: keep theirs if intact.
            existing = self._verified(digest)
            staged.unlink()
            return existing
        fsync_dir(final.parent)
        return StoredObject(digest, final.stat().st_size, final)

    def _is_on_store_filesystem(self, path: Path) -> bool:
        return path.stat().st_dev == self.temp_dir().stat().st_dev

    def _copy_to_temp(self, src: Path) -> Path:
        fd, name = tempfile.mkstemp(dir=self.temp_dir(), prefix=_TEMP_PREFIX)
        os.close(fd)
        staged = Path(name)
        try:
            shutil.copyfile(src, staged)
        except BaseException:
            staged.unlink()
            raise
        return staged


def _mismatch(what: str, expected: str, actual: str) -> IntegrityError:
    return IntegrityError(
        f"{what}: expected digest {expected}, got {actual}",
        hint="the download is truncated or damaged; fetch it again",
    )


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dir_durable(path: Path) -> None:
    """Create `path` and its missing parents, fsyncing each new name into its parent."""
    if path.is_dir():
        return
    _make_dir_durable(path.parent)
    # exist_ok: a concurrent put may create the same shard; fsync either way, since we cannot
    # tell whether the rival has synced its new name yet.
    path.mkdir(exist_ok=True)
    fsync_dir(path.parent)


_ABSENT_ERRNOS: Final = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP})
"""The errors that mean `no such file here`, as `Path.is_file` reads them; others propagate."""


class _AbsentObjects(AbstractSet[str]):
    """The artifacts recorded in a snapshot whose objects are absent from the store.

    Found when first asked about, one shard directory at a time: the shard is listed once
    and every recorded digest in it checked against the listing. A warm plan asks about
    every up-to-date image's own object, and one stat per object cost a tenth of a
    100,000-image plan, where 256 listings cost almost nothing. Only the absent digests
    are kept (usually none), so the listings do not add to the plan's memory either.
    """

    __slots__ = ("_absent", "_recorded", "_root", "_unchecked")

    def __init__(self, objects: Path, recorded: Collection[str]) -> None:
        self._root = objects / DIGEST_ALGORITHM
        self._recorded = recorded
        self._absent: dict[str, frozenset[str]] = {}
        """Shard (the first two hex digits) -> its recorded digests whose file is absent."""
        self._unchecked: dict[str, list[str]] | None = None
        """Shard -> its recorded digests, until the shard is checked; built on first use."""

    def __contains__(self, digest: object) -> bool:
        if not isinstance(digest, str) or digest not in self._recorded:
            return False
        shard = digest[:2]
        absent = self._absent.get(shard)
        if absent is None:
            absent = self._absent[shard] = self._check(shard)
        return digest in absent

    def _check(self, shard: str) -> frozenset[str]:
        if self._unchecked is None:
            self._unchecked = {}
            for digest in self._recorded:
                self._unchecked.setdefault(digest[:2], []).append(digest)
        files = _file_names(self._root / shard)
        return frozenset(d for d in self._unchecked.pop(shard, ()) if d[2:] not in files)

    def __iter__(self) -> Iterator[str]:
        return (digest for digest in self._recorded if digest in self)

    def __len__(self) -> int:
        return sum(1 for _digest in self)


def _file_names(directory: Path) -> frozenset[str]:
    """The regular files (symlinks followed) in `directory`; none when it is missing.

    As `Path.is_file` does for each one: a missing or non-directory path means no files,
    any other error (a permission, say) propagates.
    """
    try:
        with os.scandir(directory) as entries:
            return frozenset(entry.name for entry in entries if entry.is_file())
    except OSError as err:
        if err.errno in _ABSENT_ERRNOS:
            return frozenset()
        raise
