"""Spec texts the apply tests share: small sets of distinct flux images, one per animal."""

from __future__ import annotations

ONE_IMAGE = """
    images:
      cat:
        prompt: a cat on a windowsill
        seed: 1
"""

TWO_IMAGES = (
    ONE_IMAGE
    + """\
      dog:
        prompt: a dog in the snow
        seed: 2
"""
)

THREE_IMAGES = (
    TWO_IMAGES
    + """\
      owl:
        prompt: an owl at dusk
        seed: 3
"""
)

SIX_IMAGES = (
    THREE_IMAGES
    + """\
      fox:
        prompt: a fox in the ferns
        seed: 4
      hen:
        prompt: a hen on a fence
        seed: 5
      elk:
        prompt: an elk by a lake
        seed: 6
"""
)
