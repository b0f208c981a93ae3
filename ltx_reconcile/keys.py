"""The generation key: which request an image is, independent of how the specs spell it.

A key is `k1:` followed by the sha256 of the canonical JSON of every input images/create
receives, after defaults, with a referenced image standing in by the sha256 of its bytes.
Two images with the same key are the same request, so the planner reuses rather than
pays twice. Pure: no I/O, no clock. The scheme is recorded in docs/adr/0001-generation-key.md;
any change to what goes in, or how it is encoded, needs a new `KEY_VERSION`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Final

from ltx_reconcile.spec.image import GenerationInputs

__all__ = ["DEFAULT_REFERENCE_STRENGTH", "KEY_VERSION", "image_key"]

KEY_VERSION: Final = "k1"

DEFAULT_REFERENCE_STRENGTH: Final = 50
"""The API's reference_strength when a reference is given without one (contract 2.1)."""

_NO_STYLE: Final = "base"
_HEX_DIGITS: Final = frozenset("0123456789abcdef")
# One stateless encoder: json.dumps with these options builds a new one on every call.
_CANONICAL_JSON: Final = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def image_key(inputs: GenerationInputs, reference_digest: str | None) -> str:
    """The versioned key of one generation: `k1:` + sha256 hex of its canonical inputs.

    `reference_digest` is the lowercase sha256 hex of the referenced image's bytes; it must
    be given exactly when `inputs.reference` is set. Requests the API treats alike get the
    same key: `style: base` is no style (E11), a reference_strength without a reference is
    dropped (E12), and a reference without one gets the API's default of 50. Raises
    ValueError when the digest and the reference disagree (a caller's bug, not user input).
    """
    has_reference = inputs.reference is not None
    if has_reference != (reference_digest is not None):
        raise ValueError("reference_digest must be given exactly when the inputs have a reference")
    canonical: dict[str, str | int] = {
        "prompt": inputs.prompt,
        "seed": inputs.seed,
        "model": inputs.model.value,
        "aspectRatio": inputs.aspect_ratio,
    }
    optional = (
        ("location", inputs.location),
        ("weather", inputs.weather),
        ("lighting", inputs.lighting),
        ("shotType", inputs.shot_type),
        ("shotAngle", inputs.shot_angle),
    )
    for field, value in optional:
        # E4: the API reads an empty string as absent, so it must key like absent.
        if value:
            canonical[field] = value
    if inputs.style and inputs.style != _NO_STYLE:
        canonical["style"] = inputs.style
    if reference_digest is not None:
        if len(reference_digest) != 64 or not _HEX_DIGITS.issuperset(reference_digest):
            raise ValueError(
                f"reference_digest is not a lowercase sha256 hex: {reference_digest!r}"
            )
        canonical["reference"] = "sha256:" + reference_digest
        strength = inputs.reference_strength
        canonical["reference_strength"] = (
            DEFAULT_REFERENCE_STRENGTH if strength is None else strength
        )
    encoded = _CANONICAL_JSON.encode(canonical)
    # surrogatepass: a lone surrogate cannot pass the loader, but the key must stay total.
    digest = hashlib.sha256(encoded.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{KEY_VERSION}:{digest}"
