"""Hypothesis strategies for spec files: generation inputs, how YAML spells them, and changes.

An image is drawn as plain data (`Fields`: canonical snake_case field names to values, a
reference as the bytes of its file), and separately a `Layout`: everything about how a spec
file may say the same thing (flow or block, quoting, key order and spelling, comments,
which fields sit in `defaults`, which file, where the reference file lies). `write_image`
turns the two into real files that the real loader reads:

    fields = draw(generation_inputs())
    write_image(root, "hero", fields, draw(layouts(fields)))
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from hypothesis import strategies as st

from ltx_reconcile.keys import DEFAULT_REFERENCE_STRENGTH
from ltx_reconcile.spec.fields import (
    ASPECT_RATIOS,
    CAMEL_SPELLINGS,
    GENERATION_FIELDS,
    MODELS,
    SEED_MAX,
    SHOT_ANGLES,
    STRENGTH_MAX,
    STYLE_NONE,
    STYLES,
)
from ltx_reconcile.spec.image import DEFAULT_ASPECT_RATIO, DEFAULT_MODEL
from testing.tree import gen

__all__ = [
    "KEYED_FIELDS",
    "SPEC_FILES",
    "UNKEYED_FIELDS",
    "Fields",
    "Layout",
    "generation_inputs",
    "keyed_changes",
    "laid_out_twice",
    "layouts",
    "prompts",
    "texts",
    "unkeyed_fields",
    "with_change",
    "write_image",
    "written_twice",
]

Fields = dict[str, object]
"""One image's spec fields by canonical name; `reference` holds the reference file's bytes."""

KEYED_FIELDS: Final = GENERATION_FIELDS
"""Every field that goes into the generation key (the reference by its file's digest)."""
UNKEYED_FIELDS: Final = ("output", "tags", "description", "protect")
"""Fields only the reconciler reads; they never change the key."""
TEXT_FIELDS: Final = ("location", "weather", "lighting", "shot_type")
"""Optional free-text generation fields."""
FLUX_ONLY: Final = ("style", "reference", "reference_strength")
REAL_STYLES: Final = tuple(s for s in STYLES if s != STYLE_NONE)
"""Styles that are a style: `base` means none and keys like an absent style."""

SPEC_FILES: Final = ("a.yaml", "b.yml", "nested/c.yaml", "nested/deeper/d.yml")
REFERENCE_FILES: Final = ("ref.png", "art/ref.jpg", "pics/old/ref.webp")
"""Where a layout puts the reference file, relative to its spec file."""

_STRING_STYLES: Final = ("plain", "single", "double", "literal")
_PLAIN_SAFE = re.compile(r"[A-Za-z]+( [A-Za-z]+)*\Z")
_PLAIN_WORDS: Final = frozenset({"true", "false", "null"})
_ENUM_FIELDS: Final = frozenset({"model", "aspect_ratio", "style", "shot_angle"})

# Every character a YAML file may hold literally inside quotes: no controls (tab and newline
# included, which fold), surrogates, unassigned code points, line separators or BOM.
_CHARACTERS = st.characters(
    blacklist_categories=("Cs", "Cc", "Cn", "Zl", "Zp"), blacklist_characters="\ufeff"
)


def texts(max_size: int = 30) -> st.SearchStrategy[str]:
    """Non-empty text a spec may hold in a text field (well under the API's 2000 units)."""
    return st.text(_CHARACTERS, min_size=1, max_size=max_size)


def prompts() -> st.SearchStrategy[str]:
    """A valid prompt: text that is not whitespace only."""
    return texts().filter(lambda text: bool(text.strip()))


_SEEDS = st.integers(0, SEED_MAX)
_STRENGTHS = st.integers(0, STRENGTH_MAX)
_REFERENCE_BYTES = st.binary(min_size=1, max_size=16)


@st.composite
def generation_inputs(draw: st.DrawFn, allowing: str | None = None) -> Fields:
    """An image's generation fields, valid together, always with an explicit seed.

    `allowing` names a keyed field that must be changeable: a flux-only field makes the
    model flux, and `reference_strength` brings a reference along.
    """
    flux = allowing in FLUX_ONLY
    model = DEFAULT_MODEL.value if flux else draw(st.sampled_from(MODELS))
    fields: Fields = {"prompt": draw(prompts()), "seed": draw(_SEEDS)}
    if model != DEFAULT_MODEL.value or draw(st.booleans()):
        fields["model"] = model
    if draw(st.booleans()):
        fields["aspect_ratio"] = draw(st.sampled_from(ASPECT_RATIOS))
    for name in TEXT_FIELDS:
        if draw(st.booleans()):
            fields[name] = draw(texts())
    if draw(st.booleans()):
        fields["shot_angle"] = draw(st.sampled_from(SHOT_ANGLES))
    if model == DEFAULT_MODEL.value and allowing != "model":
        if draw(st.booleans()):
            fields["style"] = draw(st.sampled_from(REAL_STYLES))
        if allowing == "reference_strength" or draw(st.booleans()):
            fields["reference"] = draw(_REFERENCE_BYTES)
            if draw(st.booleans()):
                fields["reference_strength"] = draw(_STRENGTHS)
    return fields


@st.composite
def unkeyed_fields(draw: st.DrawFn) -> Fields:
    """Values for every reconciler-only field: output, tags, description and protect."""
    word = st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True)
    folder = draw(st.sampled_from(["renders", "art/final", "out/sub"]))
    return {
        "output": f"{folder}/{{name}}-{draw(word)}.png",
        "tags": draw(st.lists(word, min_size=1, max_size=3, unique=True)),
        "description": draw(texts()),
        "protect": draw(st.booleans()),
    }


@st.composite
def keyed_changes(draw: st.DrawFn, fields: Fields, field: str) -> object:
    """A new value for `field` (None: remove it) that the API would treat differently.

    Equivalent spellings are avoided on purpose (style base, strength 50 with a reference,
    the default model and aspect ratio): those must keep the key, and are tested apart.
    """
    current = fields.get(field)
    if field == "prompt":
        return draw(prompts().filter(lambda text: text != current))
    if field == "seed":
        return draw(_SEEDS.filter(lambda seed: seed != current))
    if field == "model":
        if any(name in fields for name in FLUX_ONLY):
            raise ValueError("a flux-only field is set, so the model cannot change")
        effective = current or DEFAULT_MODEL.value
        return draw(st.sampled_from([m for m in MODELS if m != effective]))
    if field == "aspect_ratio":
        effective = current or DEFAULT_ASPECT_RATIO
        return draw(st.sampled_from([r for r in ASPECT_RATIOS if r != effective]))
    if field == "reference_strength":
        return draw(_strength_changes(fields))
    # An optional field: remove it, or give it another value.
    choices: list[st.SearchStrategy[object]] = [] if current is None else [st.none()]
    choices.append(_other_values(field, current))
    return draw(st.one_of(choices))


def _other_values(field: str, current: object) -> st.SearchStrategy[object]:
    if field in TEXT_FIELDS:
        return texts().filter(lambda text: text != current)
    if field == "shot_angle":
        return st.sampled_from([a for a in SHOT_ANGLES if a != current])
    if field == "style":
        return st.sampled_from([s for s in REAL_STYLES if s != current])
    if field == "reference":
        return _REFERENCE_BYTES.filter(lambda data: data != current)
    raise ValueError(f"not a keyed field: {field}")


def _strength_changes(fields: Fields) -> st.SearchStrategy[object]:
    if "reference" not in fields:
        raise ValueError("reference_strength keys only with a reference")
    current = fields.get("reference_strength")
    effective = DEFAULT_REFERENCE_STRENGTH if current is None else current
    other = _STRENGTHS.filter(lambda strength: strength != effective)
    if current is not None and current != DEFAULT_REFERENCE_STRENGTH:
        return st.one_of(other, st.none())
    return other


def with_change(fields: Fields, field: str, value: object) -> Fields:
    """`fields` with `field` set to `value`, or removed when `value` is None."""
    changed = {name: v for name, v in fields.items() if name != field}
    if value is not None:
        changed[field] = value
    return changed


@dataclass(frozen=True, slots=True)
class Layout:
    """How one spec file spells an image; nothing here may change what the image is."""

    file: str
    """The spec file, relative to specs/."""
    flow: bool
    """The image's fields as one flow mapping `{a: 1, b: 2}` rather than a block."""
    order: tuple[str, ...]
    """The order fields are written in (a permutation of the image's fields)."""
    string_styles: Mapping[str, str]
    """Per text field: plain, single, double or literal (literal falls back in flow)."""
    camel: frozenset[str]
    """Fields spelt the API's way (aspectRatio, shotType, ...)."""
    in_defaults: frozenset[str]
    """Generation fields given in the file's `defaults` rather than on the image."""
    seed_base: int
    """10, 16 or 8: the seed as 42, 0x2a or 0o52."""
    comments: bool
    reference_file: str
    """Where the reference file goes, relative to the spec file's folder."""
    reference_form: str
    """short (`reference: ref.png`), dotted (`./ref.png`) or mapping (`{file: ...}`)."""


@st.composite
def layouts(
    draw: st.DrawFn, fields: Mapping[str, object], files: tuple[str, ...] = SPEC_FILES
) -> Layout:
    """A way to write `fields` in a spec file, drawn from `files`."""
    names = sorted(fields)
    defaultable = [name for name in names if name in GENERATION_FIELDS]
    camel_capable = [name for name in names if name in CAMEL_SPELLINGS.values()]
    return Layout(
        file=draw(st.sampled_from(files)),
        flow=draw(st.booleans()),
        order=tuple(draw(st.permutations(names))),
        string_styles={name: draw(st.sampled_from(_STRING_STYLES)) for name in names},
        camel=frozenset(draw(st.lists(st.sampled_from(camel_capable), unique=True)))
        if camel_capable
        else frozenset(),
        in_defaults=frozenset(draw(st.lists(st.sampled_from(defaultable), unique=True))),
        seed_base=draw(st.sampled_from([10, 16, 8])),
        comments=draw(st.booleans()),
        reference_file=draw(st.sampled_from(REFERENCE_FILES)),
        reference_form=draw(st.sampled_from(["short", "dotted", "mapping"])),
    )


@st.composite
def written_twice(draw: st.DrawFn) -> tuple[Fields, Fields, Layout, Layout]:
    """(inputs, reconciler-only extras, a layout, a layout in another file with the extras)."""
    inputs = draw(generation_inputs())
    extras = draw(unkeyed_fields())
    first = draw(layouts(inputs), label="first")
    others = tuple(name for name in SPEC_FILES if name != first.file)
    second = draw(layouts({**inputs, **extras}, files=others), label="second")
    return inputs, extras, first, second


# -- rendering ------------------------------------------------------------------------------


def _string(text: str, style: str, *, flow: bool) -> str:
    if style == "plain" and _PLAIN_SAFE.match(text) and text.lower() not in _PLAIN_WORDS:
        return text
    if style == "single":
        return "'" + text.replace("'", "''") + "'"
    if style == "literal" and not flow and text == text.strip():
        return "|-\n" + text
    return json.dumps(text, ensure_ascii=False)


def _seed(seed: int, base: int) -> str:
    if base == 16:
        return hex(seed)
    if base == 8:
        return "0o" + format(seed, "o")
    return str(seed)


def _value(name: str, value: object, layout: Layout, *, flow: bool) -> str:
    if name == "seed":
        assert isinstance(value, int)
        return _seed(value, layout.seed_base)
    if name == "reference":
        path = layout.reference_file
        if layout.reference_form == "dotted":
            path = "./" + path
        if layout.reference_form == "mapping":
            return "{file: " + json.dumps(path) + "}"
        return json.dumps(path) if flow else path
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(json.dumps(item) for item in value) + "]"
    assert isinstance(value, str)
    style = layout.string_styles.get(name, "double")
    if name in _ENUM_FIELDS and style == "plain" and not (flow and ":" in value):
        return value  # 16:9 is a string in YAML 1.2; 3d_cartoon and eye-level are too
    return _string(value, style, flow=flow)


def _key(name: str, layout: Layout) -> str:
    if name in layout.camel:
        return next(camel for camel, snake in CAMEL_SPELLINGS.items() if snake == name)
    return name


def _block(names: list[str], fields: Mapping[str, object], layout: Layout, indent: str) -> str:
    lines: list[str] = []
    for name in names:
        if layout.comments:
            lines.append(f"{indent}# {name}: a comment that means nothing")
        value = _value(name, fields[name], layout, flow=False)
        if value.startswith("|-\n"):
            value = "|-\n" + indent + "  " + value[3:]
        trailing = "  # trailing" if layout.comments and not value.startswith("|-") else ""
        lines.append(f"{indent}{_key(name, layout)}: {value}{trailing}")
    return "\n".join(lines)


def _flow(names: list[str], fields: Mapping[str, object], layout: Layout) -> str:
    items = [f"{_key(n, layout)}: {_value(n, fields[n], layout, flow=True)}" for n in names]
    return "{" + ", ".join(items) + "}"


def spec_text(name: str, fields: Mapping[str, object], layout: Layout) -> str:
    """The YAML text of a spec file holding the one image `name` with `fields`."""
    own = [n for n in layout.order if n in fields and n not in layout.in_defaults]
    defaults = [n for n in layout.order if n in fields and n in layout.in_defaults]
    parts = ["# a spec file written by testing.strategies"] if layout.comments else []
    if defaults:
        parts += ["defaults:", _block(defaults, fields, layout, "  ")]
    parts.append("images:")
    if layout.flow or not own:
        parts.append(f"  {name}: {_flow(own, fields, layout)}")
    else:
        parts += [f"  {name}:", _block(own, fields, layout, "    ")]
    return "\n".join(parts) + "\n"


def write_image(root: Path, name: str, fields: Mapping[str, object], layout: Layout) -> None:
    """Write `name` as the only image of specs/<layout.file>, with its reference file."""
    tree: dict[str, str | bytes] = {f"specs/{layout.file}": spec_text(name, fields, layout)}
    reference = fields.get("reference")
    if isinstance(reference, bytes):
        folder = posixpath.dirname(layout.file)
        tree[posixpath.join("specs", folder, layout.reference_file)] = reference
    gen(root, tree)


# -- many images, for planner properties ---------------------------------------------------

IMAGE_NAMES: Final = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")
GONE_NAMES: Final = ("gone-1", "gone-2")
"""Names a state may track although no spec declares them."""
_POOL_PROMPTS: Final = ("A knight", "A dragon")
_POOL_SEEDS: Final = (1, 2)
_POOL_MODELS: Final = ("flux", "nano-banana")


@st.composite
def pooled_inputs(draw: st.DrawFn) -> Fields:
    """Inputs from a pool of eight, so that images often share a key."""
    return {
        "prompt": draw(st.sampled_from(_POOL_PROMPTS)),
        "seed": draw(st.sampled_from(_POOL_SEEDS)),
        "model": draw(st.sampled_from(_POOL_MODELS)),
    }


@st.composite
def image_sets(draw: st.DrawFn, max_size: int = len(IMAGE_NAMES)) -> dict[str, Fields]:
    """Images by name with pooled inputs; a flux image may reference an earlier name."""
    names = draw(st.lists(st.sampled_from(IMAGE_NAMES), min_size=1, max_size=max_size, unique=True))
    images: dict[str, Fields] = {}
    for name in sorted(names):
        fields = draw(pooled_inputs())
        earlier = [other for other in images if other < name]
        if fields["model"] == "flux" and earlier and draw(st.booleans()):
            fields["reference_image"] = draw(st.sampled_from(earlier))
        images[name] = fields
    return images


@st.composite
def placements(draw: st.DrawFn, names: list[str]) -> tuple[tuple[str, str], ...]:
    """Where each image is written: (spec file, name) in writing order, over 1 to 3 files."""
    order = draw(st.permutations(names))
    files = ("one.yaml", "two/two.yaml", "three.yml")
    return tuple((draw(st.sampled_from(files)), name) for name in order)


@st.composite
def laid_out_twice(
    draw: st.DrawFn, max_size: int = len(IMAGE_NAMES)
) -> tuple[dict[str, Fields], tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """An image set and two placements of it: (images, first, second)."""
    images = draw(image_sets(max_size))
    names = sorted(images)
    return images, draw(placements(names), label="first"), draw(placements(names), label="second")


def spec_tree(
    images: Mapping[str, Fields], placement: tuple[tuple[str, str], ...]
) -> dict[str, str]:
    """Spec files (path under the root to YAML text) declaring `images` as `placement` says."""
    files: dict[str, list[str]] = {}
    for file, name in placement:
        fields = images[name]
        items = [
            f"{field}: {json.dumps(value)}"
            for field, value in fields.items()
            if field != "reference_image"
        ]
        if "reference_image" in fields:
            items.append(f"reference: {{image: {fields['reference_image']}}}")
        files.setdefault(f"specs/{file}", ["images:"]).append(f"  {name}: {{{', '.join(items)}}}")
    return {path: "\n".join(lines) + "\n" for path, lines in files.items()}


@dataclass(frozen=True, slots=True)
class RecordDraft:
    """One image row for a state: its inputs, whether its object is stored, an open job."""

    name: str
    fields: Fields
    stored: bool
    open_job: bool


@st.composite
def record_drafts(draw: st.DrawFn) -> tuple[RecordDraft, ...]:
    """Rows a state might hold: spec names and vanished ones, stored or not, some mid-job."""
    names = draw(st.lists(st.sampled_from(IMAGE_NAMES + GONE_NAMES), max_size=5, unique=True))
    return tuple(
        RecordDraft(name, draw(pooled_inputs()), draw(st.booleans()), draw(st.booleans()))
        for name in sorted(names)
    )
