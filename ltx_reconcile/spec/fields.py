"""The vocabulary of spec files: field names, spellings, enums and the API's limits.

One place for every rule the loader checks by hand and the pydantic models
(`spec/model.py`) state for the JSON Schema, so the two cannot drift. This module must
stay cheap to import: the warm load path (all files cached) uses it without pydantic or
ruamel.yaml.
"""

from __future__ import annotations

import hashlib
from typing import Final, Literal, get_args

from ltx_reconcile.spec.image import Model

__all__ = [
    "ASPECT_RATIOS",
    "CAMEL_SPELLINGS",
    "FIELD_DOCS",
    "GENERATION_FIELDS",
    "IMAGE_FIELDS",
    "IMAGE_SUFFIXES",
    "MAX_GRID_SIZE",
    "MAX_TEXT_UNITS",
    "MODELS",
    "SEED_MAX",
    "SHOT_ANGLES",
    "SPELLINGS",
    "STRENGTH_MAX",
    "STYLES",
    "STYLE_NONE",
    "TEXT_FIELDS",
    "AspectRatioName",
    "ShotAngleName",
    "StyleName",
    "derive_seed",
    "utf16_length",
]

StyleName = Literal[
    "base",
    "cinematic",
    "vintage",
    "low_key",
    "indy",
    "y2k",
    "pop",
    "grunge",
    "dreamy",
    "hand_drawn",
    "2d_novel",
    "boost",
    "scribble",
    "film_noir",
    "anime",
    "3d_cartoon",
    "colored",
]
AspectRatioName = Literal["16:9", "9:16", "1:1"]
ShotAngleName = Literal["eye-level", "low-angle", "over-the-shoulder", "overhead", "birds-eye-view"]

STYLES: Final[tuple[str, ...]] = get_args(StyleName)
"""Contract 2.1 plus `base`, which every model accepts and which means no style (E11)."""
STYLE_NONE: Final = "base"
ASPECT_RATIOS: Final[tuple[str, ...]] = get_args(AspectRatioName)
SHOT_ANGLES: Final[tuple[str, ...]] = get_args(ShotAngleName)
MODELS: Final[tuple[str, ...]] = tuple(m.value for m in Model)

MAX_TEXT_UNITS: Final = 2000
"""Contract 2.1 and E10: text fields hold at most 2000 UTF-16 code units."""
SEED_MAX: Final = 4294967295
"""Contract E9: a seed is an integer from 0 to 2**32 - 1."""
STRENGTH_MAX: Final = 100
MAX_GRID_SIZE: Final = 100_000
"""A typo such as a 1000-value axis times another must fail fast, not hang the loader."""

TEXT_FIELDS: Final = ("prompt", "location", "weather", "lighting", "shot_type")
"""Free-text generation fields: length-checked, and where grid variables are substituted."""

GENERATION_FIELDS: Final = (
    "prompt",
    "location",
    "weather",
    "lighting",
    "aspect_ratio",
    "style",
    "shot_type",
    "shot_angle",
    "seed",
    "model",
    "reference_strength",
    "reference",
)
"""Canonical (snake case) names of every input images/create receives; `defaults` takes these."""

IMAGE_FIELDS: Final = (*GENERATION_FIELDS, "output", "protect", "tags", "description", "grid")
"""Every field an entry of `images` takes."""

CAMEL_SPELLINGS: Final[dict[str, str]] = {
    "aspectRatio": "aspect_ratio",
    "shotType": "shot_type",
    "shotAngle": "shot_angle",
    "referenceStrength": "reference_strength",
}
"""The API's camelCase spellings (contract 2.1), accepted as aliases of the snake case names."""

SPELLINGS: Final[dict[str, str]] = {
    **{name: name for name in IMAGE_FIELDS},
    **CAMEL_SPELLINGS,
}
"""Every accepted spelling of an image field, mapped to its canonical name."""

IMAGE_SUFFIXES: Final = (".png", ".jpg", ".jpeg", ".webp", ".gif")
"""A short-form `reference` string ending in one of these names a file, not an image."""

_SEED_DOMAIN: Final = b"ltx-reconcile seed v1:"

FIELD_DOCS: Final[dict[str, str]] = {
    "prompt": "What to draw. Required (here or in defaults); 1 to 2000 characters, counted in "
    "UTF-16 code units as the API does (contract 2.1, E10); not whitespace only.",
    "location": "Where the scene takes place. At most 2000 UTF-16 code units (contract 2.1, E10).",
    "weather": "The weather in the scene. At most 2000 UTF-16 code units (contract 2.1, E10).",
    "lighting": "The lighting of the scene. At most 2000 UTF-16 code units (contract 2.1, E10).",
    "aspect_ratio": "One of 16:9, 9:16, 1:1; default 16:9 (contract 2.1). Quote it in flow "
    "mappings. Also spelt aspectRatio.",
    "style": "A visual style (contract 2.1). Only the flux model takes one (E15); `base` means "
    "no style and is accepted with every model (E11).",
    "shot_type": "Free text such as `wide shot` or `close-up`; at most 2000 UTF-16 code units "
    "(contract 2.1, E9). Also spelt shotType.",
    "shot_angle": "One of eye-level, low-angle, over-the-shoulder, overhead, birds-eye-view "
    "(contract 2.1). Also spelt shotAngle.",
    "seed": "An integer from 0 to 4294967295 (contract E9). When left out it is derived from "
    "the image name (docs/spec-format.md), so every image is reproducible.",
    "model": "flux (default), flux-premium or nano-banana (contract 1.1, 2.1).",
    "reference_strength": "How strongly the reference guides the image: an integer from 0 to "
    "100, default 50 (contract 2.1). Only the flux model takes it (E15); without a reference "
    "it has no effect (E12). Also spelt referenceStrength.",
    "reference": "A reference image for flux (contract 2.1; other models refuse it, E15): "
    "`{image: NAME}` for another image of the specs, `{file: PATH}` for a local file "
    "(relative to this spec file), or a string: a path when it contains `/` or ends in "
    ".png/.jpg/.jpeg/.webp/.gif, otherwise an image name.",
    "output": "Where the named file goes, relative to the workspace; default out/<name>.png. "
    "May use {name} and grid axis placeholders such as {seed}. Must stay inside the workspace "
    "and differ from every other image's output.",
    "protect": "When true, the plan blocks any change that would give this image another picture.",
    "tags": "Free labels for selecting images; never part of the generation key.",
    "description": "Free-form notes; never part of the generation key.",
    "grid": "Declares many images at once: a mapping from an axis (a generation field, or a "
    "variable used as {variable} in the text fields) to a list of values, or to a mapping of "
    "short labels to values. Expands to the product of the axes, named "
    "NAME[axis=label,...] in the order the axes are written.",
}
"""Field descriptions with the API rule behind each: the JSON Schema and the docs use them."""


def utf16_length(text: str) -> int:
    """Length of `text` as the API counts it: UTF-16 code units (contract E10)."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def derive_seed(name: str) -> int:
    """The seed of an image that gives none: sha256 of a fixed prefix plus the name.

    The first 4 bytes of sha256(b"ltx-reconcile seed v1:" + name as UTF-8), read as a
    big-endian unsigned 32-bit integer. Documented in docs/spec-format.md; changing it
    changes every derived seed and so every such image's key.
    """
    digest = hashlib.sha256(_SEED_DOMAIN + name.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big")
