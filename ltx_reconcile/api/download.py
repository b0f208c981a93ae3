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
    fd, name = await asyncio.to_thread(tempfile.mkstemp, prefix=".download-", dir=dest_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as part:
            digest, size = await _copy(response.aiter_raw(), part, expect)
            await asyncio.to_thread(_sync, part)
        _check_size(size, expect)
        if expect.mime_type == _PNG_MIME:
            problem = await asyncio.to_thread(png_problem, path)
            if problem is not None:
                raise expect.error(f"corrupt PNG: {problem}")
    except BaseException:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    return Download(path=path, sha256=digest, size_bytes=size, mime_type=expect.mime_type)


async def _copy(
    chunks: AsyncIterator[bytes], part: BinaryIO, expect: _Expectation
) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    try:
        async for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            await asyncio.to_thread(part.write, chunk)
    except httpx.TransportError as exc:
        # httpx raises when the peer closes before Content-Length bytes: a truncation.
        of = f" of {expect.declared_size}" if expect.declared_size is not None else ""
        raise expect.error(
            f"the connection broke after {size}{of} bytes ({type(exc).__name__})",
            PartialDownloadError,
        ) from exc
    return digest.hexdigest(), size


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
