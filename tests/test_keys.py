"""Generation keys, through the real loader on real spec files: what changes a key, what not.

A key is `k1:` + sha256 of the canonical inputs after defaults and grid expansion, with a
reference standing in by its file's digest (docs/adr/0001-generation-key.md). Each example
writes a workspace under tmp_path and reads the keys off a plan against an empty state.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
from pathlib import Path

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from ltx_reconcile.settings import Settings
from ltx_reconcile.spec.fields import derive_seed
from ltx_reconcile.workspace import Workspace, WorkspacePaths
from testing.strategies import (
    KEYED_FIELDS,
    SPEC_FILES,
    Layout,
    generation_inputs,
    keyed_changes,
    layouts,
    prompts,
    with_change,
    write_image,
    written_twice,
)
from testing.tree import gen

FEW = settings(max_examples=15, deadline=None)
"""Each example loads real files: keep the file to a few seconds."""


def keys_of(root: Path) -> dict[str, str | None]:
    """Every image's key, as a plan of the workspace at `root` computes it."""
    plan = Workspace(WorkspacePaths.under(root), Settings()).plan()
    return {change.image: change.key for change in plan.changes}


def key_of(root: Path, spec: str) -> str | None:
    """The key of the image `hero` that `spec` declares, in a fresh workspace at `root`.

    The workspace has a reference file, specs/ref.png, for the spec to name.
    """
    gen(root, {"specs/a.yaml": spec, "specs/ref.png": b"\x89PNG not really"})
    return keys_of(root)["hero"]


def plain_layout(file: str, order: tuple[str, ...], **changes: object) -> Layout:
    """Block style, snake_case, decimal seed, no comments, nothing in defaults: the plainest."""
    layout = Layout(
        file=file,
        flow=False,
        order=order,
        string_styles={},
        camel=frozenset(),
        in_defaults=frozenset(),
        seed_base=10,
        comments=False,
        reference_file="ref.png",
        reference_form="short",
    )
    return dataclasses.replace(layout, **changes)  # type: ignore[arg-type]


def test_a_key_is_k1_and_the_sha256_of_the_canonical_inputs(tmp_path):
    """Defaults are filled in, keys sorted, no spaces: the scheme ADR 0001 records."""
    canonical = {"aspectRatio": "16:9", "model": "flux", "prompt": "A knight", "seed": 3}
    encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    spec = """
        images:
          hero: {prompt: A knight, seed: 3}
    """
    assert key_of(tmp_path, spec) == "k1:" + hashlib.sha256(encoded).hexdigest()


@FEW
@given(written=written_twice())
@example(  # every field in defaults: the image itself is an empty mapping
    written=(
        {"prompt": "0", "seed": 0},
        {"output": "renders/{name}-a.png", "tags": ["a"], "description": "0", "protect": False},
        plain_layout("a.yaml", ("prompt", "seed"), in_defaults=frozenset({"prompt", "seed"})),
        plain_layout("b.yml", ("description", "output", "prompt", "protect", "seed", "tags")),
    )
)
def test_a_key_ignores_yaml_style_order_comments_name_file_and_reconciler_fields(
    tmp_path_factory, written
):
    """The same inputs, written two ways under two names in two files, key alike."""
    inputs, extras, first, second = written
    root = tmp_path_factory.mktemp("keys")
    write_image(root, "hero", inputs, first)
    write_image(root, "renamed", {**inputs, **extras}, second)
    keys = keys_of(root)
    assert keys["hero"] == keys["renamed"]
    assert keys["hero"] is not None
    assert keys["hero"].startswith("k1:")
    assert len(keys["hero"]) == 3 + 64


def _reference_path(layout: Layout) -> str:
    return posixpath.join(posixpath.dirname(layout.file), layout.reference_file)


@pytest.mark.parametrize("field", KEYED_FIELDS)
@settings(max_examples=6, deadline=None)
@given(data=st.data())
def test_changing_any_keyed_input_changes_the_key(tmp_path_factory, field, data):
    """prompt, seed, model, ratio, style, location, ..., reference bytes: each one counts."""
    inputs = data.draw(generation_inputs(allowing=field), label="inputs")
    value = data.draw(keyed_changes(inputs, field), label="new value")
    changed = with_change(inputs, field, value)
    root = tmp_path_factory.mktemp("keys")
    before = data.draw(layouts(inputs, files=SPEC_FILES[:1]))
    after = data.draw(layouts(changed, files=SPEC_FILES[1:]))
    # Two spec files in one folder naming the same reference path would share one file.
    assume(_reference_path(before) != _reference_path(after))
    write_image(root, "before", inputs, before)
    write_image(root, "after", changed, after)
    keys = keys_of(root)
    assert keys["before"] != keys["after"]


@FEW
@given(inputs=generation_inputs(), word=st.from_regex(r"[a-z]{1,8}", fullmatch=True))
def test_a_grid_member_keys_like_the_plain_image_with_its_values(tmp_path_factory, inputs, word):
    """Grid expansion happens before keying: axes and {variables} resolve to plain values."""
    assume(not any(isinstance(value, str) and "{" in value for value in inputs.values()))
    prompt = str(inputs["prompt"])
    seed = inputs["seed"]
    assert isinstance(seed, int)
    other_seed = (seed + 1) % 2**32
    plain = {**inputs, "prompt": f"{prompt} {word}"}
    root = tmp_path_factory.mktemp("grid")
    write_image(root, "plain", plain, plain_layout("a.yaml", tuple(sorted(plain))))
    grid = {name: value for name, value in inputs.items() if name != "seed"}
    grid["prompt"] = f"{prompt} {{mood}}"
    gen(
        root,
        {"specs/grid.yaml": _grid_spec(grid, seeds=(other_seed, seed), moods=("some-other", word))},
    )
    if "reference" in inputs:
        reference = inputs["reference"]
        assert isinstance(reference, bytes)
        gen(root, {"specs/ref.png": reference})
    keys = keys_of(root)
    assert keys[f"g[seed={seed},mood={word}]"] == keys["plain"]
    assert keys[f"g[seed={other_seed},mood={word}]"] != keys["plain"]


def _grid_spec(fields: dict[str, object], *, seeds: tuple[int, int], moods: tuple[str, str]) -> str:
    """A spec file declaring grid `g` over a seed axis and a `mood` variable."""
    """A spec file declaring grid `g` over a seed axis and a `mood` variable."""
    lines = ["images:", "  g:"]
    for name, value in sorted(fields.items()):
        if name == "reference":
            lines.append("    reference: ref.png")
        elif isinstance(value, str):
            lines.append(f"    {name}: {json.dumps(value, ensure_ascii=False)}")
        else:
            lines.append(f"    {name}: {value}")
    lines += ["    grid:", f"      seed: [{seeds[0]}, {seeds[1]}]"]
    lines.append(f"      mood: [{moods[0]}, {moods[1]}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("spelt", "canonical"),
    [
        ("style: base", ""),
        ('location: ""', ""),
        ("aspect_ratio: '16:9'", ""),
        ("model: flux", ""),
        ("reference_strength: 80", ""),
        ("reference: {file: ref.png}\n    reference_strength: 50", "reference: ref.png"),
    ],
    ids=[
        "style base is no style",
        "an empty optional text is absent",
        "the default aspect ratio",
        "the default model",
        "a strength without a reference",
        "the default strength of a reference",
    ],
)
def test_spellings_the_api_treats_alike_key_alike(tmp_path, spelt, canonical):
    """Defaults and the API's equivalences (E4, E11, E12) are applied before keying."""
    spec = "images:\n  hero:\n    prompt: A knight\n    seed: 3\n    {}\n"
    assert key_of(tmp_path / "a", spec.format(spelt)) == key_of(
        tmp_path / "b", spec.format(canonical)
    )


def test_a_reference_keys_by_its_bytes_not_its_path(tmp_path):
    """Moving or renaming a reference file keeps the key; new bytes at the same path do not."""
    gen(
        tmp_path,
        {
            "specs/a.yaml": """
                images:
                  hero: {prompt: A knight, seed: 3, reference: ref.png}
                  copy: {prompt: A knight, seed: 3, reference: {file: art/other-name.jpg}}
                  other: {prompt: A knight, seed: 3, reference: changed.png}
            """,
            "specs/ref.png": b"the same bytes",
            "specs/art/other-name.jpg": b"the same bytes",
            "specs/changed.png": b"other bytes",
        },
    )
    keys = keys_of(tmp_path)
    assert keys["hero"] == keys["copy"] != keys["other"]


NAMES = st.from_regex(r"img-[a-z0-9]{1,10}", fullmatch=True)


@settings(max_examples=10, deadline=None)
@given(prompt=prompts(), names=st.lists(NAMES, min_size=2, max_size=2, unique=True))
def test_an_image_without_a_seed_keys_by_the_seed_derived_from_its_name(
    tmp_path_factory, prompt, names
):
    """Leaving the seed out is the one way a rename changes the key: the seed is the name's."""
    first, second = names
    root = tmp_path_factory.mktemp("seedless")
    quoted = json.dumps(prompt, ensure_ascii=False)
    gen(
        root,
        {
            "specs/a.yaml": f"""
                images:
                  {first}: {{prompt: {quoted}}}
                  {second}: {{prompt: {quoted}}}
                  explicit: {{prompt: {quoted}, seed: {derive_seed(first)}}}
            """
        },
    )
    keys = keys_of(root)
    assert keys[first] == keys["explicit"] != keys[second]
