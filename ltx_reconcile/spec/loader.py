"""Load a directory of spec files into validated, resolved images, or every error at once.

`load_specs` reads `**/*.yaml` and `**/*.yml` under the specs directory in sorted order,
parses each file (or takes its parse from the cache, `spec/cache.py`), then runs the checks
that span files: unique names, references (known, acyclic, existing files), outputs that
collide, one budget. It reads the spec files and stats reference files; it writes nothing
but cache entries, and those only when every file is valid (invalid input writes nothing
anywhere, issue 4). ruamel.yaml and pydantic are never imported on the warm path.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ltx_reconcile.errors import Diagnostic, SpecError, UsageError
from ltx_reconcile.keys import image_key
from ltx_reconcile.spec.cache import entry_path, read_entry, write_entry
from ltx_reconcile.spec.image import GenerationInputs, ImageSpec, Model, Reference, SourceLocation

if TYPE_CHECKING:
    from ltx_reconcile.spec.cache import Keys
    from ltx_reconcile.spec.parse import FileResult, ImageRow

__all__ = ["Budget", "LoadedSpecs", "load_specs"]

SPEC_SUFFIXES: Final = (".yaml", ".yml")
_DIGEST_DOMAIN: Final = b"ltx-reconcile specs v1\0"
_MODELS: Final = {model.value: model for model in Model}
_LISTED: Final = 3
"""How many other places a message names before it says `and N more`."""


@dataclass(frozen=True, slots=True)
class Budget:
    """Spending limits in credits from the specs' `budget` section; None means no limit."""

    per_apply: int | None = None
    per_day: int | None = None


@dataclass(frozen=True, slots=True)
class LoadedSpecs:
    """Every image the specs ask for, valid and resolved, and what they were read from."""

    images: tuple[ImageSpec, ...]
    """Sorted by name; names are unique."""
    budget: Budget | None
    """None when no file has a `budget` section."""
    files: tuple[Path, ...]
    """The spec files read, in sorted order, as paths under the specs directory given."""
    digest: str
    """sha256 hex over every file's relative path and content: binds a saved plan to them."""


class _Placed:
    """An image with the places its cross-file checks point at.

    A plain slotted class that keeps its row: a warm load builds one per image, and the
    places are only read when a check finds a problem or follows a reference.
    """

    __slots__ = ("output", "path", "row", "spec")

    def __init__(self, spec: ImageSpec, output: str, path: Path, row: ImageRow) -> None:
        self.spec = spec
        self.output = output
        """The normalised output as text: compared (case-folded) for collisions."""
        self.path = path
        self.row = row

    @property
    def output_at(self) -> tuple[Path, int, int, str]:
        row = self.row  # output_line, output_column, output_key_path (ROW_FIELDS order)
        return (self.path, row[5], row[6], row[7])

    @property
    def reference_at(self) -> tuple[Path, int, int, str]:
        row = self.row  # reference_line, reference_column, reference_key_path
        return (self.path, row[25], row[26], row[27])


@dataclass(slots=True)
class _Collected:
    placed: list[_Placed]
    names: list[tuple[str, bool, Path, int, int]]
    budgets: list[tuple[str, int, Path, int, int, str]]
    diagnostics: list[Diagnostic]
    has_budget: bool = False


def load_specs(
    specs_dir: Path, *, root: Path | None = None, cache_dir: Path | None = None
) -> LoadedSpecs:
    """Load, validate and resolve every spec file under `specs_dir`.

    Diagnostics and each image's `source` name files as `specs_dir / relative path`, shown
    relative to `root` (the workspace) when given and the file lies below it; so pass the
    directory as the user named it. `files` and reference file paths stay usable as they
    are (under `specs_dir`). With `cache_dir`, each file's parse is cached by content digest,
    written only when every file is valid. Raises SpecError with every diagnostic of every
    file, sorted by file, line and column; UsageError when `specs_dir` is not a directory.
    """
    if not specs_dir.is_dir():
        raise UsageError(
            f"spec directory {specs_dir} does not exist or is not a directory",
            hint="create it, or point to your specs with the specs directory option",
        )
    collected = _Collected([], [], [], [])
    digest = hashlib.sha256(_DIGEST_DOMAIN)
    files: list[Path] = []
    pending: list[tuple[Path, str, FileResult, Keys]] = []
    for relative in _spec_files(specs_dir):
        path = specs_dir / relative
        files.append(path)
        shown = _shown(path, root)
        try:
            data = path.read_bytes()
        except OSError as err:
            message = f"cannot read: {err.strerror}"
            collected.diagnostics.append(Diagnostic(shown, 1, 1, "(file)", message))
            continue
        digest.update(f"{relative}\0{len(data)}\0".encode())
        digest.update(data)
        base = specs_dir / posixpath.dirname(relative)
        _load_file(shown, base, data, cache_dir, collected, pending)
    collected.diagnostics.extend(_cross_file_diagnostics(collected))
    if collected.diagnostics:
        collected.diagnostics.sort(key=lambda d: (str(d.path), d.line, d.column))
        raise SpecError(collected.diagnostics)
    for entry, content_digest, result, keys in pending:
        write_entry(entry, content_digest, result, keys)
    images = sorted((placed.spec for placed in collected.placed), key=lambda spec: spec.name)
    return LoadedSpecs(
        images=tuple(images),
        budget=_budget(collected) if collected.has_budget else None,
        files=tuple(files),
        digest=digest.hexdigest(),
    )


def _shown(path: Path, root: Path | None) -> Path:
    if root is None:
        return path
    try:
        return path.relative_to(root)
    except ValueError:
        return path


def _spec_files(specs_dir: Path) -> list[str]:
    """Relative POSIX paths of the spec files, sorted; hidden files and folders are skipped."""
    found: list[str] = []
    for directory, folders, names in os.walk(specs_dir):
        folders[:] = [folder for folder in folders if not folder.startswith(".")]
        relative_dir = Path(directory).relative_to(specs_dir).as_posix()
        for name in names:
            if name.endswith(SPEC_SUFFIXES) and not name.startswith("."):
                found.append(name if relative_dir == "." else f"{relative_dir}/{name}")
    return sorted(found)


def _load_file(
    path: Path,
    base: Path,
    data: bytes,
    cache_dir: Path | None,
    collected: _Collected,
    pending: list[tuple[Path, str, FileResult, Keys]],
) -> None:
    """Parse (or take from the cache) one file shown as `path`, its folder being `base`."""
    content_digest = hashlib.sha256(data).hexdigest()
    entry = None if cache_dir is None else entry_path(cache_dir, content_digest)
    if entry is not None:
        cached = read_entry(entry, content_digest)
        try:
            placed = None if cached is None else _place(cached[0], path, base, cached[1])
        except (ValueError, TypeError, KeyError, IndexError):
            placed = None  # a damaged entry that passed its checksum: reparse, rewrite
        if cached is not None and placed is not None:
            _collect(cached[0], path, placed, collected)
            return
    # Imported here: parsing pulls in ruamel.yaml, which a fully cached load never needs.
    from ltx_reconcile.spec.parse import parse_spec_file

    result = parse_spec_file(data)
    placed = _place(result, path, base, None)
    if entry is not None:
        keys = tuple(p.spec.key for p in placed)
        pending.append((entry, content_digest, result, keys))
    _collect(result, path, placed, collected)


def _collect(result: FileResult, path: Path, placed: list[_Placed], collected: _Collected) -> None:
    _rows, names, budget, diagnostics = result
    collected.placed.extend(placed)
    collected.names.extend(
        (name, is_grid, path, line, column) for name, line, column, is_grid in names
    )
    if budget is not None:
        collected.has_budget = True
        collected.budgets.extend(
            (f, v, path, line, column, kp) for f, v, line, column, kp in budget
        )
    collected.diagnostics.extend(
        Diagnostic(path, line, column, key_path, message, suggestion)
        for line, column, key_path, message, suggestion in diagnostics
    )


def _place(result: FileResult, path: Path, base: Path, keys: Keys | None) -> list[_Placed]:
    """ImageSpecs from a file's rows; the hot loop of a warm load, so kept flat.

    `keys` are the cached keys of the rows; without them (a fresh parse) each image that
    depends on no reference gets its key computed here, once, to be cached with the parse.
    """
    placed: list[_Placed] = []
    models = _MODELS
    for index, row in enumerate(result[0]):
        (name, grid, line, column, output, _output_line, _output_column, _output_key_path,
         protect, tags, description, seed_derived,
         prompt, model, seed, aspect_ratio, location, weather, lighting, style,
         shot_type, shot_angle, reference_strength,
         reference_kind, reference_value, _reference_line, _reference_column,
         _reference_key_path) = row  # fmt: skip
        reference = None
        if reference_kind == "image":
            reference = Reference(image=reference_value)
        elif reference_kind is not None:
            reference = Reference(file=Path(os.path.normpath(base / reference_value)))
        inputs = GenerationInputs(
            prompt, models[model], seed, aspect_ratio, location, weather, lighting, style,
            shot_type, shot_angle, reference_strength, reference,
        )  # fmt: skip
        if keys is not None:
            key = keys[index]
            if (key is None) != (reference is not None):
                raise ValueError("a cached key disagrees with its row's reference")
        else:
            key = None if reference is not None else image_key(inputs, None)
        spec = ImageSpec(
            name, inputs, output, SourceLocation(path, line, column),
            protect, tags, description, seed_derived, grid, key,
        )  # fmt: skip
        placed.append(_Placed(spec, output, path, row))
    return placed


# -- checks across files ---------------------------------------------------------------


def _cross_file_diagnostics(collected: _Collected) -> list[Diagnostic]:
    diagnostics = _duplicate_names(collected.names)
    referencing = [p for p in collected.placed if p.spec.inputs.reference is not None]
    if referencing:
        by_name = {placed.spec.name: placed for placed in collected.placed}
        grids = {name: path for name, is_grid, path, _l, _c in collected.names if is_grid}
        diagnostics.extend(_reference_problems(referencing, by_name, grids))
        diagnostics.extend(_cycles(referencing, by_name))
    diagnostics.extend(_output_collisions(collected.placed))
    diagnostics.extend(_budget_conflicts(collected.budgets))
    return diagnostics


def _places(places: Iterable[tuple[str, Path, int, int]]) -> str:
    listed = [f'"{name}" ({path}:{line}:{column})' for name, path, line, column in places]
    if len(listed) > _LISTED:
        return ", ".join(listed[:_LISTED]) + f" and {len(listed) - _LISTED} more"
    return ", ".join(listed)


def _duplicate_names(names: list[tuple[str, bool, Path, int, int]]) -> list[Diagnostic]:
    if len({entry[0] for entry in names}) == len(names):
        return []  # the usual case, found without building every name's list of places
    seen: dict[str, list[tuple[Path, int, int]]] = {}
    for name, _is_grid, path, line, column in names:
        seen.setdefault(name, []).append((path, line, column))
    diagnostics: list[Diagnostic] = []
    for name, places in seen.items():
        if len(places) < 2:
            continue
        for place in places:
            others = ", ".join(f"{p}:{ln}:{c}" for p, ln, c in places if (p, ln, c) != place)
            message = f'duplicate image name "{name}"; also declared at {others}'
            diagnostics.append(Diagnostic(place[0], place[1], place[2], f"images.{name}", message))
    return diagnostics


def _reference_problems(
    placed: list[_Placed], by_name: dict[str, _Placed], grids: dict[str, Path]
) -> list[Diagnostic]:
    diagnostics: list[Diagnostic] = []
    for image in placed:
        reference = image.spec.inputs.reference
        if reference is None:
            continue
        path, line, column, key_path = image.reference_at
        if reference.file is not None:
            if not reference.file.is_file():
                message = f"reference file {reference.file} does not exist"
                diagnostics.append(Diagnostic(path, line, column, key_path, message))
            continue
        target = reference.image or ""
        if target in by_name:
            continue
        if target in grids:
            members = sorted(n for n in by_name if by_name[n].spec.grid == target)
            message = f'"{target}" is a grid; a reference names one of its images'
            suggestion = members[0] if members else None
        else:
            message = f'reference to unknown image "{target}"'
            suggestion = _closest(target, by_name)
        diagnostics.append(Diagnostic(path, line, column, key_path, message, suggestion))
    return diagnostics


def _closest(word: str, names: Iterable[str]) -> str | None:
    import difflib  # only on the error path

    matches = difflib.get_close_matches(word, list(names), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _cycles(placed: list[_Placed], by_name: dict[str, _Placed]) -> list[Diagnostic]:
    """One diagnostic per reference cycle, at its alphabetically first member."""
    edges: dict[str, str] = {}
    for image in placed:
        reference = image.spec.inputs.reference
        if reference is not None and reference.image in by_name:
            edges[image.spec.name] = reference.image
    done: set[str] = set()
    diagnostics: list[Diagnostic] = []
    for start in sorted(edges):
        walk: dict[str, int] = {}
        node: str | None = start
        while node is not None and node not in done and node not in walk:
            walk[node] = len(walk)
            node = edges.get(node)
        if node is not None and node in walk:
            cycle = list(walk)[walk[node] :]
            first = cycle.index(min(cycle))
            cycle = cycle[first:] + cycle[:first]
            path, line, column, key_path = by_name[cycle[0]].reference_at
            message = "reference cycle: " + " -> ".join([*cycle, cycle[0]])
            diagnostics.append(Diagnostic(path, line, column, key_path, message))
        done.update(walk)
    return diagnostics


def _output_collisions(placed: list[_Placed]) -> list[Diagnostic]:
    # Case-folded: on macOS and Windows out/Hero.png and out/hero.png are one file.
    if len({image.output.casefold() for image in placed}) == len(placed):
        return []  # the usual case: no two outputs alike, so no groups to build
    groups: dict[str, list[_Placed]] = {}
    names: set[str] = set()
    for image in placed:
        if image.spec.name in names:
            continue  # a duplicate name is reported as such; its output adds nothing
        names.add(image.spec.name)
        groups.setdefault(image.output.casefold(), []).append(image)
    diagnostics: list[Diagnostic] = []
    for group in groups.values():
        if len(group) > 1:
            diagnostics.extend(_collision(group))
    return diagnostics


def _collision(group: list[_Placed]) -> list[Diagnostic]:
    diagnostics: list[Diagnostic] = []
    output = group[0].output
    locations = dict.fromkeys(image.output_at for image in group)
    for path, line, column, key_path in locations:
        others = [
            (image.spec.name, *image.output_at[:3])
            for image in group
            if image.output_at[:3] != (path, line, column)
        ]
        if others:
            message = f'output "{output}" is also the output of {_places(others)}'
        else:
            message = (
                f'output "{output}" is the same for all {len(group)} images of this grid; '
                "use placeholders such as {seed} or {name}"
            )
        diagnostics.append(Diagnostic(path, line, column, key_path, message))
    return diagnostics


def _budget_conflicts(budgets: list[tuple[str, int, Path, int, int, str]]) -> list[Diagnostic]:
    seen: dict[str, list[tuple[Path, int, int, str]]] = {}
    for field, _value, path, line, column, key_path in budgets:
        seen.setdefault(field, []).append((path, line, column, key_path))
    diagnostics: list[Diagnostic] = []
    for places in seen.values():
        if len(places) < 2:
            continue
        for path, line, column, key_path in places:
            others = ", ".join(
                f"{p}:{ln}:{c}" for p, ln, c, _k in places if (p, ln) != (path, line)
            )
            message = f"a budget may be set only once; also set at {others}"
            diagnostics.append(Diagnostic(path, line, column, key_path, message))
    return diagnostics


def _budget(collected: _Collected) -> Budget:
    values: dict[str, Any] = {field: value for field, value, *_rest in collected.budgets}
    return Budget(per_apply=values.get("per_apply"), per_day=values.get("per_day"))
