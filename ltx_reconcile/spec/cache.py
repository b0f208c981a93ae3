"""The parse cache: one spec file's `FileResult`, stored by the file's content digest.

A cache, not the state: deleting it only costs a reparse. An entry is found by the sha256
of (cache format, ltx-reconcile version, content digest), so a new release or format never
reads an old entry, and it repeats all three inside, behind a sha256 of its own bytes, so a
truncated, corrupt or foreign entry reads as a miss and is rewritten. Entries are written
to a temporary file and renamed into place, so a reader never sees half an entry.
`marshal` of plain tuples is the fastest way back to Python values (issue 4, section 5);
the checksum is verified before `marshal` sees any byte.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ltx_reconcile import __version__

if TYPE_CHECKING:
    from ltx_reconcile.spec.parse import FileResult

__all__ = ["CACHE_FORMAT", "entry_path", "read_entry", "write_entry"]

CACHE_FORMAT: Final = 1
"""Bump whenever FileResult's layout or meaning changes."""
_MAGIC: Final = "ltx-reconcile spec cache"
_DIGEST_SIZE: Final = 32


def entry_path(cache_dir: Path, content_digest: str) -> Path:
    """Where the entry for a file with this content digest lives."""
    name = hashlib.sha256(f"{CACHE_FORMAT}\0{__version__}\0{content_digest}".encode()).hexdigest()
    return cache_dir / f"spec-{name}.bin"


def read_entry(path: Path, content_digest: str) -> FileResult | None:
    """The cached result for this content, or None when missing, corrupt or foreign."""
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
    expected = (_MAGIC, CACHE_FORMAT, __version__, content_digest)
    if type(entry) is not tuple or len(entry) != 5 or entry[:4] != expected:
        return None
    result = entry[4]
    if type(result) is not tuple or len(result) != 4:
        return None
    return result


def write_entry(path: Path, content_digest: str, result: FileResult) -> None:
    """Store `result` atomically; a cache that cannot be written is skipped, not an error."""
    body = marshal.dumps((_MAGIC, CACHE_FORMAT, __version__, content_digest, result))
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_bytes(hashlib.sha256(body).digest() + body)
        temporary.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
