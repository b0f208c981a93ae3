"""Golden diagnostics: a dozen typical mistakes in three files, all reported in one run."""

from __future__ import annotations

from pathlib import Path

import pytest

from ltx_reconcile.errors import ExitCode, SpecError
from ltx_reconcile.spec.loader import load_specs
from testing.tree import gen

# 1999 two-byte-in-UTF-8 characters and one emoji: 2000 code points, but 2001 UTF-16 units.
LONG_PROMPT = "é" * 1999 + "\N{GRINNING FACE}"

CHARACTERS = """
    defaults:
      model: flux
    images:
      hero:
        prompt: A knight
        sede: 3
      villain:
        prompt: A dragon
        style: cinematc
        seed: 4294967296
      banana:
        prompt: A banana
        model: nano-banana
        style: anime
      follower:
        prompt: Follows the hero
        reference: heor
      loop-a:
        prompt: a
        reference: loop-b
      loop-b:
        prompt: b
        reference: {image: loop-a}
      ../escape:
        prompt: nope
      no-prompt:
        seed: 1
      typed:
        prompt: typed
        seed: "12"
        protect: yes
"""

SCENES = f"""
    images:
      hero:
        prompt: Another knight
      long:
        prompt: "{LONG_PROMPT}"
      wide:
        prompt: A plain
        aspect_ratio: "16:10"
        shotAngle: low angle
      twice:
        prompt: once
        prompt: twice
      outside:
        prompt: far away
        output: ../elsewhere/outside.png
      both:
        prompt: spelt twice
        aspect_ratio: "1:1"
        aspectRatio: "1:1"
"""

BROKEN = """
    images:
      broken: {prompt: "x", seed: [1, 2}
"""

EXPECTED = """
specs/characters.yaml:4:3: images.hero: duplicate image name "hero"; also declared at specs/scenes.yaml:2:3
specs/characters.yaml:6:5: images.hero.sede: unknown key (did you mean "seed"?)
specs/characters.yaml:9:12: images.villain.style: "cinematc" is not a style; expected one of: base, cinematic, vintage, low_key, indy, y2k, pop, grunge, dreamy, hand_drawn, 2d_novel, boost, scribble, film_noir, anime, 3d_cartoon, colored (did you mean "cinematic"?)
specs/characters.yaml:10:11: images.villain.seed: must be an integer between 0 and 4294967295, got 4294967296
specs/characters.yaml:14:12: images.banana.style: style is not supported by model nano-banana; only flux takes it
specs/characters.yaml:17:16: images.follower.reference: reference to unknown image "heor" (did you mean "hero"?)
specs/characters.yaml:20:16: images.loop-a.reference: reference cycle: loop-a -> loop-b -> loop-a
specs/characters.yaml:24:3: images.../escape: an image name must not contain a path separator ("/")
specs/characters.yaml:26:3: images.no-prompt: prompt is required
specs/characters.yaml:30:11: images.typed.seed: expected an integer between 0 and 4294967295, got a string
specs/characters.yaml:31:14: images.typed.protect: expected true or false, got a string
specs/more/broken.yml:2:36: (syntax): did not find expected ',' or ']' (while parsing a flow sequence)
specs/scenes.yaml:2:3: images.hero: duplicate image name "hero"; also declared at specs/characters.yaml:4:3
specs/scenes.yaml:5:13: images.long.prompt: prompt is 2001 characters long (UTF-16 code units); the API allows at most 2000
specs/scenes.yaml:8:19: images.wide.aspect_ratio: "16:10" is not an aspect ratio; expected one of: 16:9, 9:16, 1:1 (did you mean "1:1"?)
specs/scenes.yaml:9:16: images.wide.shotAngle: "low angle" is not a shot angle; expected one of: eye-level, low-angle, over-the-shoulder, overhead, birds-eye-view (did you mean "low-angle"?)
specs/scenes.yaml:12:5: images.twice.prompt: duplicate key (first given at line 11)
specs/scenes.yaml:15:13: images.outside.output: output must stay inside the workspace (it escapes it with ..)
specs/scenes.yaml:19:5: images.both.aspectRatio: aspect_ratio is given twice, as aspect_ratio and as aspectRatio
""".strip().splitlines()


def test_every_mistake_of_every_file_is_reported_at_once_with_its_position(workspace: Path):
    """One load reports each mistake as file:line:column: key.path: message, sorted."""
    gen(
        workspace,
        {
            "specs": {
                "characters.yaml": CHARACTERS,
                "scenes.yaml": SCENES,
                "more": {"broken.yml": BROKEN},
            }
        },
    )
    with pytest.raises(SpecError) as caught:
        load_specs(Path("specs"))
    assert [str(d) for d in caught.value.diagnostics] == EXPECTED
    assert caught.value.exit_code == ExitCode.INVALID_INPUT
