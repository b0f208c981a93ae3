"""Fetching an artifact from its pre-signed storage URL into a verified temporary file.

This module owns one download attempt: stream the body to a temp file in the destination
directory while hashing it, fsync it, and check it (size against `Content-Length` and the
caller's expectation; a PNG's chunk CRCs, which catch corrupted bytes without knowing the
digest in advance). It never sees the API token: the caller hands it a storage client that
has none (contract 6). It never moves the file into place; the artifact store does that.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final

import httpx

from ltx_reconcile.errors import DownloadError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = ["ArtifactUrlExpiredError", "Download", "PartialDownloadError", "stream_to_file"]

PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_PNG_MIME: Final = "image/png"
_CHUNK_HEADER: Final = struct.Struct(">I4s")
_CRC: Final = struct.Struct(">I")
_BATCH_BYTES: Final = 1 << 20
"""Body bytes gathered in memory before they are handed to a worker thread to write."""


class ArtifactUrlExpiredError(DownloadError):
    """Raised when storage refuses a signed URL (4xx, e.g. 403 expired): refresh it and retry.

    A fresh URL comes from `GET /assets/{jobId}`, or from the asset list once the job's
    record is gone (contract 6).
    """


class PartialDownloadError(DownloadError):
    """Raised when the connection broke mid-body, before `Content-Length` bytes arrived."""


@dataclass(frozen=True, slots=True)
class Download:
    """A downloaded, fsynced and checked artifact in a temp file the caller now owns.

    The file lies in the destination directory, so `os.replace` moves it into place
    atomically; the caller must move or delete it.
    """

    path: Path
    sha256: str
    """Hex digest of exactly the bytes in `path`."""
    size_bytes: int
    mime_type: str | None


@dataclass(frozen=True, slots=True)
class _Expectation:
    image: str | None
    url_path: str
    """The URL without its query: the signature is a credential for the object."""
    declared_size: int | None
    expected_size: int | None
    mime_type: str | None

    def error(self, detail: str, cls: type[DownloadError] = DownloadError) -> DownloadError:
        subject = f"{self.image}: " if self.image else ""
        return cls(
            f"{subject}downloading {self.url_path}: {detail}",
            image=self.image,
            hint="run `ltx-reconcile apply` again to fetch a fresh URL and download it anew",
        )


async def stream_to_file(
    response: httpx.Response,
    dest_dir: Path,
    *,
    expected_size: int | None,
    image: str | None,
) -> Download:
    """Write a 200 answer's body to a temp file in `dest_dir` and check it.

    Raises `PartialDownloadError` when the body stops early, and `DownloadError` when the
    size or the PNG structure is wrong; the temp file is deleted in both cases.
    """
    expect = _Expectation(
        image=image,
        url_path=str(response.request.url.copy_with(query=None)),
        declared_size=_content_length(response),
        expected_size=expected_size,
        mime_type=response.headers.get("Content-Type"),
    )
    if expect.declared_size is not None and expected_size not in (None, expect.declared_size):
        raise expect.error(f"storage declares {expect.declared_size} bytes, not {expected_size}")
    spool = _Spool(dest_dir)
    try:
        digest, size = await _copy(response.aiter_raw(), spool, expect)
        _check_size(size, expect)
        path, problem = await asyncio.to_thread(
            spool.finish, check_png=expect.mime_type == _PNG_MIME
        )
        if problem is not None:
            raise expect.error(f"corrupt PNG: {problem}")
    except BaseException:
        await asyncio.to_thread(spool.discard)
        raise
    return Download(path=path, sha256=digest, size_bytes=size, mime_type=expect.mime_type)


async def _copy(
    chunks: AsyncIterator[bytes], spool: _Spool, expect: _Expectation
) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    try:
        async for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            if spool.add(chunk):
                await asyncio.to_thread(spool.write, spool.take())
    except httpx.TransportError as exc:
        # httpx raises when the peer closes before Content-Length bytes: a truncation.
        of = f" of {expect.declared_size}" if expect.declared_size is not None else ""
        raise expect.error(
            f"the connection broke after {size}{of} bytes ({type(exc).__name__})",
            PartialDownloadError,
        ) from exc
    return digest.hexdigest(), size


class _Spool:
    """A body on its way to a temp file in `dest_dir`, written in batches of `_BATCH_BYTES`.

    Each worker-thread hop costs the event loop far more than copying a chunk, so the body
    is handed over a batch at a time rather than a chunk at a time; a typical artifact then
    takes a single hop, in which its file is created, written, fsynced and checked. The
    blocking methods (`write`, `finish`, `discard`) run in a worker thread, one at a time.
    """

    def __init__(self, dest_dir: Path) -> None:
        self._dest_dir = dest_dir
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._file: BinaryIO | None = None
        self.path: Path | None = None
        """The temp file, once created (it may not be, for a body that failed early)."""

    def add(self, chunk: bytes) -> bool:
        """Queue `chunk`; True when a batch is ready for `write(take())`."""
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        return self._pending_bytes >= _BATCH_BYTES

    def take(self) -> list[bytes]:
        """The queued chunks, now the caller's."""
        batch, self._pending, self._pending_bytes = self._pending, [], 0
        return batch

    def write(self, batch: list[bytes]) -> None:
        """Append `batch` to the temp file, creating it first if needed (blocking)."""
        self._open()[0].writelines(batch)

    def finish(self, *, check_png: bool) -> tuple[Path, str | None]:
        """Write what is queued, fsync and close: the file, and what is wrong with the PNG
        when asked to check it (blocking)."""
        file, path = self._open()
        file.writelines(self.take())
        with file:
            _sync(file)
        return path, png_problem(path) if check_png else None

    def _open(self) -> tuple[BinaryIO, Path]:
        if self._file is None or self.path is None:
            fd, name = tempfile.mkstemp(prefix=".download-", dir=self._dest_dir)
            self.path = Path(name)
            self._file = os.fdopen(fd, "wb")
        return self._file, self.path

    def discard(self) -> None:
        """Close and delete the temp file, if there is one (blocking)."""
        if self._file is not None:
            self._file.close()
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _sync(part: BinaryIO) -> None:
    part.flush()
    os.fsync(part.fileno())


def _check_size(size: int, expect: _Expectation) -> None:
    for wanted, source in ((expect.declared_size, "Content-Length"), (expect.expected_size, "")):
        if wanted is not None and size != wanted:
            where = f" ({source})" if source else ""
            raise expect.error(f"got {size} bytes, expected {wanted}{where}")


def _content_length(response: httpx.Response) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value is not None and value.isdigit() else None


def png_problem(path: Path) -> str | None:
    """What is wrong with the PNG at `path` (bad signature, bad CRC, no IEND), or None.

    Every PNG chunk carries a CRC-32 of its type and data, so a flipped byte anywhere after
    the signature is caught without knowing the image's digest in advance.
    """
    data = path.read_bytes()
    if not data.startswith(PNG_SIGNATURE):
        return "the PNG signature is missing"
    offset = len(PNG_SIGNATURE)
    while offset + _CHUNK_HEADER.size <= len(data):
        length, kind = _CHUNK_HEADER.unpack_from(data, offset)
        body_start = offset + _CHUNK_HEADER.size
        crc_start = body_start + length
        if crc_start + _CRC.size > len(data):
            return f"chunk {kind!r} runs past the end of the file"
        (crc,) = _CRC.unpack_from(data, crc_start)
        if zlib.crc32(data[offset + 4 : crc_start]) != crc:
            return f"chunk {kind!r} at byte {offset} fails its CRC"
        if kind == b"IEND":
            return None
        offset = crc_start + _CRC.size
    return "the IEND chunk is missing"
