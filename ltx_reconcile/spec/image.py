"""The resolved, desired image: what one spec entry asks for after defaults and grids.

These are the in-process values the loader produces and the planner, keys and executor
consume. They are trusted (validated once, at the spec boundary), so nothing here
re-validates; the planner's hot loop handles 10,000 of them. They are immutable
`NamedTuple`s rather than frozen dataclasses: a frozen dataclass sets each field through
`object.__setattr__`, and building three of them per image was a fifth of a warm plan.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Final, NamedTuple

__all__ = [
    "API_FIELDS",
    "DEFAULT_ASPECT_RATIO",
    "DEFAULT_MODEL",
    "PRICES",
    "GenerationInputs",
    "ImageSpec",
    "Model",
    "Reference",
    "SourceLocation",
]


class Model(StrEnum):
    """The image models of images/create (contract section 1.1)."""

    FLUX = "flux"
    FLUX_PREMIUM = "flux-premium"
    NANO_BANANA = "nano-banana"


DEFAULT_MODEL: Final = Model.FLUX
DEFAULT_ASPECT_RATIO: Final = "16:9"

PRICES: Final[dict[str, int]] = {"flux": 28, "flux-premium": 28, "nano-banana": 49}
"""Credits per image by model (contract E40); the estimate the plan shows."""

API_FIELDS: Final = (
    "prompt",
    "location",
    "weather",
    "lighting",
    "aspectRatio",
    "style",
    "shotType",
    "shotAngle",
    "seed",
    "model",
    "reference_strength",
)
"""The generation inputs of images/create, in the API's own spelling, in key order."""


class SourceLocation(NamedTuple):
    """Where an image was declared, for messages (1-based line and column)."""

    path: Path
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


class Reference(NamedTuple):
    """A reference image: another image of the specs by name, or a local file. Exactly one."""

    image: str | None = None
    file: Path | None = None
    """Resolved against the spec file's directory."""


class GenerationInputs(NamedTuple):
    """Every input images/create receives for one image, canonical and with defaults applied.

    `seed` is always set: a seed the spec leaves out is derived from the image name.
    Optional text fields are None when absent (never the empty string).
    """

    prompt: str
    model: Model = DEFAULT_MODEL
    seed: int = 0
    aspect_ratio: str = DEFAULT_ASPECT_RATIO
    location: str | None = None
    weather: str | None = None
    lighting: str | None = None
    style: str | None = None
    shot_type: str | None = None
    shot_angle: str | None = None
    reference_strength: int | None = None
    reference: Reference | None = None

    def api_fields(self) -> dict[str, str | int]:
        """The API body fields (camelCase as the API spells them), absent ones left out.

        The reference is not among them: it becomes `referenceAssetId` only at apply time.
        """
        values: dict[str, str | int | None] = {
            "prompt": self.prompt,
            "location": self.location,
            "weather": self.weather,
            "lighting": self.lighting,
            "aspectRatio": self.aspect_ratio,
            "style": self.style,
            "shotType": self.shot_type,
            "shotAngle": self.shot_angle,
            "seed": self.seed,
            "model": self.model.value,
            "reference_strength": self.reference_strength,
        }
        return {k: v for k, v in values.items() if v is not None}


class ImageSpec(NamedTuple):
    """One image the specs ask for: its address, inputs and reconciler-only settings."""

    name: str
    """The image address, unique across all spec files, safe as a file name."""
    inputs: GenerationInputs
    output: str
    """Where the named file goes, relative to the workspace root, in POSIX form (default
    `out/<name>.png`); a string, not a Path: building 100,000 Paths was a tenth of a plan."""
    source: SourceLocation
    protect: bool = False
    tags: tuple[str, ...] = ()
    description: str | None = None
    seed_derived: bool = False
    """True when the spec gave no seed and it was derived from the name."""
    grid: str | None = None
    """The grid this image was expanded from (its base name), if any."""
    key: str | None = None
    """The generation key, computed once by the loader and kept in the parse cache, when it
    depends on no reference; None when it needs a referenced image's digest first."""

    @property
    def price(self) -> int:
        """Credits one generation of this image costs (contract E40)."""
        return PRICES[self.inputs.model.value]
