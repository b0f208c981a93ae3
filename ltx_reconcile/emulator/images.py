"""The pictures the emulator "generates" (E44) and their WebP thumbnails (E23).

A picture is a pure function of an `ImageSpec`: the normalised generation inputs and the
effective seed decide every pixel, and the PNG text chunks hold those inputs and nothing
else (no jobId, no time), so the same request draws the same bytes. A person can still
tell pictures apart: each shows its model, seed and the start of its prompt.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import random
import textwrap
from dataclasses import dataclass
from typing import Final

from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

__all__ = ["SIZES", "ImageSpec", "render_placeholder", "render_png", "render_thumbnail"]

SIZES: Final = {"16:9": (1280, 720), "9:16": (720, 1280), "1:1": (1024, 1024)}
_THUMBNAIL_SIDE: Final = 512
_SHAPES: Final = 12


@dataclass(frozen=True, slots=True)
class ImageSpec:
    """Everything that decides a picture's bytes."""

    inputs: tuple[tuple[str, str], ...]
    """The normalised generation inputs, as text, in a fixed order (the PNG text chunks)."""
    seed: int
    aspect_ratio: str
    noise_seed: int | None = None
    """Per-job noise for `nondeterministic_output`; None draws reproducible bytes."""

    def digest(self) -> bytes:
        """SHA-256 of the inputs and seed: the source of every drawing decision."""
        payload = json.dumps([list(self.inputs), self.seed], separators=(",", ":"))
        return hashlib.sha256(payload.encode()).digest()


def render_png(spec: ImageSpec) -> bytes:
    """The picture for `spec` as PNG bytes, sized by its aspect ratio."""
    width, height = SIZES[spec.aspect_ratio]
    # Seeded on purpose: the picture must be a function of its inputs, not a secret.
    rng = random.Random(spec.digest())  # noqa: S311
    image = _background(rng, width, height)
    draw = ImageDraw.Draw(image)
    _shapes(draw, rng, width, height)
    _caption(draw, dict(spec.inputs), spec.seed, width, height)
    if spec.noise_seed is not None:
        _noise(image, spec.noise_seed)
    info = PngImagePlugin.PngInfo()
    for key, value in spec.inputs:
        info.add_itxt(key, value)
    info.add_itxt("seed", str(spec.seed))
    out = io.BytesIO()
    # Level 1: a third of the encoding time of level 6, for files about 1.7 times larger
    # (30 KB); an apply of 1,000 images spent most of the emulator's CPU here.
    image.save(out, format="PNG", pnginfo=info, optimize=False, compress_level=1)
    return out.getvalue()


def render_thumbnail(source: bytes) -> bytes:
    """A WebP thumbnail of an image, 512 px on its long side (E23)."""
    with Image.open(io.BytesIO(source)) as image:
        thumb = image.convert("RGB")
    thumb.thumbnail((_THUMBNAIL_SIDE, _THUMBNAIL_SIDE))
    scale = _THUMBNAIL_SIDE / max(thumb.size)
    if scale > 1:
        # thumbnail() only shrinks; a small upload is grown so the long side is still 512.
        size = (round(thumb.width * scale), round(thumb.height * scale))
        thumb = thumb.resize(size)
    out = io.BytesIO()
    thumb.save(out, format="WEBP", quality=80)
    return out.getvalue()


def render_placeholder(label: str) -> bytes:
    """A 512 px WebP tile naming `label`, for uploads that are not pictures."""
    image = Image.new("RGB", (_THUMBNAIL_SIDE, _THUMBNAIL_SIDE), (90, 90, 90))
    ImageDraw.Draw(image).text((24, 240), label, fill=(240, 240, 240), font=_font(28))
    out = io.BytesIO()
    image.save(out, format="WEBP", quality=80)
    return out.getvalue()


def _background(rng: random.Random, width: int, height: int) -> Image.Image:
    top = tuple(rng.randrange(256) for _ in range(3))
    bottom = tuple(rng.randrange(256) for _ in range(3))
    return Image.composite(
        Image.new("RGB", (width, height), bottom),
        Image.new("RGB", (width, height), top),
        _gradient(width, height),
    )


@functools.cache
def _gradient(width: int, height: int) -> Image.Image:
    """The top-to-bottom blend mask of one picture size; the same for every picture."""
    return Image.linear_gradient("L").resize((width, height))


def _shapes(draw: ImageDraw.ImageDraw, rng: random.Random, width: int, height: int) -> None:
    for _ in range(_SHAPES):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1, y1 = x0 + rng.randrange(40, width // 2), y0 + rng.randrange(40, height // 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)


def _caption(
    draw: ImageDraw.ImageDraw, inputs: dict[str, str], seed: int, width: int, height: int
) -> None:
    font_size = max(24, width // 32)
    lines = [f"{inputs.get('model', '')}  seed {seed}"]
    lines += textwrap.wrap(inputs.get("prompt", "")[:160], width=width // (font_size // 2 + 1))[:4]
    box_height = (len(lines) + 1) * font_size * 5 // 4
    draw.rectangle((0, height - box_height, width, height), fill=(0, 0, 0))
    y = height - box_height + font_size // 2
    for line in lines:
        draw.text((font_size // 2, y), line, fill=(255, 255, 255), font=_font(font_size))
        y += font_size * 5 // 4


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size)


def _noise(image: Image.Image, noise_seed: int) -> None:
    # Seeded per job: different jobs get different bytes, as `nondeterministic_output` promises.
    rng = random.Random(noise_seed)  # noqa: S311
    pixels = image.load()
    assert pixels is not None  # noqa: S101  # load() returns None only for lazily opened files.
    for _ in range(64):
        x, y = rng.randrange(image.width), rng.randrange(image.height)
        pixels[x, y] = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
