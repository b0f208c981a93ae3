"""The PNG check that catches corrupted downloads without knowing their digest."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from ltx_reconcile.api.download import png_problem


@pytest.fixture
def png_bytes():
    buffer = io.BytesIO()
    Image.new("RGB", (64, 32), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_valid_png_has_no_problem(tmp_path, png_bytes):
    """Pillow's own PNG passes: signature, every CRC, IEND."""
    path = tmp_path / "ok.png"
    path.write_bytes(png_bytes)
    assert png_problem(path) is None


def test_any_single_flipped_byte_is_caught(tmp_path, png_bytes):
    """Flipping any one byte, signature included, makes the check fail."""
    path = tmp_path / "bad.png"
    for index in range(len(png_bytes)):
        corrupted = bytearray(png_bytes)
        corrupted[index] ^= 0x01
        path.write_bytes(bytes(corrupted))
        assert png_problem(path) is not None, index


def test_a_truncated_png_is_caught(tmp_path, png_bytes):
    """A PNG cut short misses its IEND chunk or runs past its end."""
    path = tmp_path / "short.png"
    for cut in (8, 20, len(png_bytes) // 2, len(png_bytes) - 1):
        path.write_bytes(png_bytes[:cut])
        assert png_problem(path) is not None, cut


def test_bytes_that_are_not_a_png_are_named_as_such(tmp_path):
    """A body without the PNG signature is reported plainly."""
    path = tmp_path / "x.png"
    path.write_bytes(b"<html>denied</html>")
    assert png_problem(path) == "the PNG signature is missing"
