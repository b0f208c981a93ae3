"""The parse cache: one spec file's `FileResult` and keys, stored by its content digest.

A cache, not the state: deleting it only costs a reparse. An entry is found by the sha256
of (cache format, ltx-reconcile version, content digest), so a new release or format never
reads an old entry, and it repeats all three inside, behind a sha256 of its own bytes, so a
truncated, corrupt or foreign entry reads as a miss and is rewritten. Entries are written
to a temporary file and renamed into place, so a reader never sees half an entry.
`marshal` of plain tuples is the fastest way back to Python values (issue 4, section 5);
the checksum is verified before `marshal` sees any byte.

Beside the parse, an entry keeps each image's generation key (None for an image whose key
needs a reference's digest): hashing is the next cost of a warm plan after parsing. The key
scheme's version is part of the entry's identity, so a new scheme never reads an old key.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ltx_reconcile import __version__
from ltx_reconcile.keys import KEY_VERSION

if TYPE_CHECKING:
    from ltx_reconcile.spec.parse import FileResult

    Keys = tuple[str | None, ...]

__all__ = ["CACHE_FORMAT", "entry_path", "read_entry", "write_entry"]

CACHE_FORMAT: Final = 2
"""Bump whenever FileResult's layout or meaning changes."""
_MAGIC: Final = "ltx-reconcile spec cache"
_DIGEST_SIZE: Final = 32


def entry_path(cache_dir: Path, content_digest: str) -> Path:
    """Where the entry for a file with this content digest lives."""
    identity = f"{CACHE_FORMAT}\0{__version__}\0{KEY_VERSION}\0{content_digest}"
    name = hashlib.sha256(identity.encode()).hexdigest()
    return cache_dir / f"spec-{name}.bin"


def read_entry(path: Path, content_digest: str) -> tuple[FileResult, Keys] | None:
    """The cached result and keys for this content, or None when missing, corrupt or foreign."""
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    body = blob[_DIGEST_SIZE:]
    if hashlib.sha256(body).digest() != blob[:_DIGEST_SIZE]:
        return None
    try:
        entry = marshal.loads(body)  # noqa: S302  (checksummed, and only ever our own output)
    except (ValueError, EOFError, TypeError):
        return None
    expected = (_MAGIC, CACHE_FORMAT, __version__, KEY_VERSION, content_digest)
    if type(entry) is not tuple or len(entry) != 7 or entry[:5] != expected:
        return None
    result, keys = entry[5], entry[6]
    if type(result) is not tuple or len(result) != 4 or type(keys) is not tuple:
        return None
    if len(keys) != len(result[0]):
        return None
    return result, keys


def write_entry(path: Path, content_digest: str, result: FileResult, keys: Keys) -> None:
    """Store `result` and `keys` atomically; a cache that cannot be written is skipped."""
    header = (_MAGIC, CACHE_FORMAT, __version__, KEY_VERSION, content_digest)
    body = marshal.dumps((*header, result, keys))
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(hashlib.sha256(body).digest() + body)
        temporary.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
