"""One spec file's bytes to its resolved images and diagnostics, as plain tuples.

Everything here depends on the file's content alone, so the result can be cached by
content digest (`spec/cache.py`): no file path, no other file, no file system. Checks that
span files (unique names, references, output collisions) happen in `spec/loader.py`.

The walk is hand-written over ruamel.yaml nodes rather than pydantic validation: it runs
once per image on the cold path, and it knows the line and column of every key and value.
`spec/model.py` states the same rules as pydantic models for the JSON Schema; a test keeps
the two in agreement.

Result layout (plain tuples, so `marshal` can store them):
- FileResult: (images, names, budget, diagnostics)
- images: ImageRow tuples, laid out as `ROW_FIELDS`
- names: (name, line, column, is_grid) for every image key declared with a valid name
- budget: None, or ((field, credits, line, column, key_path), ...)
- diagnostics: (line, column, key_path, message, suggestion)
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from ltx_reconcile.spec import fields as f
from ltx_reconcile.spec.image import Model
from ltx_reconcile.spec.names import (
    default_output,
    file_safe,
    grid_name,
    label_problem,
    name_problem,
    output_problem,
)
from ltx_reconcile.spec.nodes import (
    YamlSyntaxError,
    compose,
    describe,
    is_mapping,
    is_scalar,
    is_sequence,
    scalar_value,
)

if TYPE_CHECKING:
    from ruamel.yaml.nodes import Node

__all__ = ["ROW_FIELDS", "FileResult", "ImageRow", "parse_spec_file"]

ROW_FIELDS: Final = (
    "name",
    "grid",
    "line",
    "column",
    "output",
    "output_line",
    "output_column",
    "output_key_path",
    "protect",
    "tags",
    "description",
    "seed_derived",
    "prompt",
    "model",
    "seed",
    "aspect_ratio",
    "location",
    "weather",
    "lighting",
    "style",
    "shot_type",
    "shot_angle",
    "reference_strength",
    "reference_kind",
    "reference_value",
    "reference_line",
    "reference_column",
    "reference_key_path",
)
"""The order of an ImageRow's items; `spec/loader.py` unpacks rows in this order."""

ImageRow = tuple[Any, ...]
FileResult = tuple[
    tuple[ImageRow, ...],
    tuple[tuple[str, int, int, bool], ...],
    tuple[tuple[str, int, int, int, str], ...] | None,
    tuple[tuple[int, int, str, str, str | None], ...],
]

SYNTAX_KEY_PATH: Final = "(syntax)"
DOCUMENT_KEY_PATH: Final = "(document)"
SECTIONS: Final = ("defaults", "images", "budget")
BUDGET_FIELDS: Final = ("per_apply", "per_day")
_CAPABILITY_FIELDS: Final = ("style", "reference", "reference_strength")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INVALID: Final = object()
"""A value that failed its check; the diagnostic is already recorded."""

Entry = tuple[Any, "Node", str]
"""A field's value, the node it came from (for marks) and its key path."""


@dataclass(slots=True)
class _Axis:
    name: str
    is_variable: bool
    key_node: Node
    key_path: str
    values: list[tuple[str, Any, Node, str]] = field(default_factory=list)
    """(label, value, node, key path) in the order written."""


def parse_spec_file(data: bytes) -> FileResult:
    """Parse, check and resolve one spec file; never raises for bad content.

    Raises ReconcileError only when ruamel.yaml's C parser is not installed.
    """
    return _FileParser().parse(data)


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _column(node: Node) -> int:
    return int(node.start_mark.column) + 1


def _suggest(word: str, choices: Iterator[str] | tuple[str, ...] | list[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _short_reference(text: str) -> tuple[str, str]:
    is_file = "/" in text or "\\" in text or text.lower().endswith(f.IMAGE_SUFFIXES)
    return ("file" if is_file else "image", text)


class _FileParser:
    def __init__(self) -> None:
        self.diagnostics: dict[tuple[int, int, str, str, str | None], None] = {}
        self.rows: list[ImageRow] = []
        self.names: list[tuple[str, int, int, bool]] = []
        self.checkers: dict[str, Callable[[Any, Node, str], Any]] = {
            "prompt": self._text,
            "location": self._text,
            "weather": self._text,
            "lighting": self._text,
            "shot_type": self._text,
            "description": self._text,
            "output": self._text,
            "aspect_ratio": self._enum(f.ASPECT_RATIOS, "an aspect ratio"),
            "style": self._enum(f.STYLES, "a style"),
            "shot_angle": self._enum(f.SHOT_ANGLES, "a shot angle"),
            "model": self._enum(f.MODELS, "a model"),
            "seed": self._integer(0, f.SEED_MAX),
            "reference_strength": self._integer(0, f.STRENGTH_MAX),
            "protect": self._boolean,
            "tags": self._tags,
            "reference": self._reference,
        }

    def report(
        self, node: Node, key_path: str, message: str, suggestion: str | None = None
    ) -> None:
        # A dict keeps the first-seen order and drops repeats: grid members share nodes.
        self.diagnostics[(_line(node), _column(node), key_path, message, suggestion)] = None

    def parse(self, data: bytes) -> FileResult:
        try:
            root = compose(data)
        except YamlSyntaxError as problem:
            diagnostic = (problem.line, problem.column, SYNTAX_KEY_PATH, problem.message, None)
            return ((), (), None, (diagnostic,))
        budget = None if root is None else self._document(root)
        return (tuple(self.rows), tuple(self.names), budget, tuple(self.diagnostics))

    def _document(self, root: Node) -> tuple[tuple[str, int, int, int, str], ...] | None:
        if not is_mapping(root):
            message = f"a spec file must be a mapping of defaults and images, got {describe(root)}"
            self.report(root, DOCUMENT_KEY_PATH, message)
            return None
        sections: dict[str, Node] = {}
        for key, key_node, value_node in self._items(root, ""):
            if key in SECTIONS:
                sections[key] = value_node
            else:
                self.report(key_node, key, "unknown key", _suggest(key, SECTIONS))
        defaults: dict[str, Entry] = {}
        if "defaults" in sections:
            defaults = self._fields(sections["defaults"], "defaults", f.GENERATION_FIELDS) or {}
            self._check_defaults(defaults)
        if "images" in sections:
            self._images(sections["images"], defaults)
        return self._budget(sections["budget"]) if "budget" in sections else None

    # -- mappings and fields ---------------------------------------------------------

    def _items(self, node: Node, path: str) -> Iterator[tuple[str, Node, Node]]:
        """A mapping's (key, key node, value node), reporting bad and duplicate keys."""
        seen: dict[str, Node] = {}
        for key_node, value_node in node.value:
            if not is_scalar(key_node):
                self.report(key_node, path or DOCUMENT_KEY_PATH, "keys must be plain strings")
                continue
            key: str = key_node.value
            key_path = _join(path, key)
            if key == "<<":
                message = "YAML merge keys (<<) are not supported; use defaults or a grid"
                self.report(key_node, key_path, message)
                continue
            first = seen.get(key)
            if first is not None:
                self.report(
                    key_node, key_path, f"duplicate key (first given at line {_line(first)})"
                )
                continue
            seen[key] = key_node
            yield key, key_node, value_node

    def _fields(self, node: Node, path: str, allowed: tuple[str, ...]) -> dict[str, Entry] | None:
        if not is_mapping(node):
            self.report(node, path, f"expected a mapping of fields, got {describe(node)}")
            return None
        found: dict[str, Entry] = {}
        spelt: dict[str, str] = {}
        for key, key_node, value_node in self._items(node, path):
            key_path = f"{path}.{key}"
            canonical = f.SPELLINGS.get(key)
            if canonical is None or canonical not in allowed:
                self._unknown_field(key_node, key_path, key, canonical, allowed)
                continue
            if canonical in spelt:
                message = f"{canonical} is given twice, as {spelt[canonical]} and as {key}"
                self.report(key_node, key_path, message)
                continue
            spelt[canonical] = key
            if canonical == "grid":
                found["grid"] = (value_node, value_node, key_path)
                continue
            value = self._check(canonical, value_node, key_path)
            if value is not _INVALID:
                found[canonical] = (value, value_node, key_path)
        return found

    def _unknown_field(
        self,
        key_node: Node,
        key_path: str,
        key: str,
        canonical: str | None,
        allowed: tuple[str, ...],
    ) -> None:
        if canonical is not None:
            self.report(key_node, key_path, f"{key} cannot be set in defaults, only per image")
            return
        spellings = [s for s, c in f.SPELLINGS.items() if c in allowed]
        self.report(key_node, key_path, "unknown key", _suggest(key, spellings))

    def _check(self, canonical: str, node: Node, key_path: str) -> Any:
        if is_scalar(node):
            try:
                value = scalar_value(node)
            except ValueError as err:
                self.report(node, key_path, str(err))
                return _INVALID
            if value is None:
                return None  # null: absent, and it unsets a default
        else:
            value = node
        return self.checkers[canonical](value, node, key_path)

    def _wrong_type(self, expected: str, node: Node, key_path: str) -> object:
        self.report(node, key_path, f"expected {expected}, got {describe(node)}")
        return _INVALID

    def _text(self, value: Any, node: Node, key_path: str) -> Any:
        if type(value) is not str:
            return self._wrong_type("a string", node, key_path)
        return value

    def _enum(self, choices: tuple[str, ...], what: str) -> Callable[[Any, Node, str], Any]:
        listed = ", ".join(choices)

        def check(value: Any, node: Node, key_path: str) -> Any:
            if type(value) is str and value in choices:
                return value
            if type(value) is not str:
                return self._wrong_type(f"one of: {listed}", node, key_path)
            message = f'"{value}" is not {what}; expected one of: {listed}'
            self.report(node, key_path, message, _suggest(value, choices))
            return _INVALID

        return check

    def _integer(self, low: int, high: int) -> Callable[[Any, Node, str], Any]:
        def check(value: Any, node: Node, key_path: str) -> Any:
            if type(value) is not int:
                return self._wrong_type(f"an integer between {low} and {high}", node, key_path)
            if not low <= value <= high:
                message = f"must be an integer between {low} and {high}, got {value}"
                self.report(node, key_path, message)
                return _INVALID
            return value

        return check

    def _boolean(self, value: Any, node: Node, key_path: str) -> Any:
        if type(value) is not bool:
            return self._wrong_type("true or false", node, key_path)
        return value

    def _tags(self, value: Any, node: Node, key_path: str) -> Any:
        if type(value) is str:
            return (value,)
        if not (value is node and is_sequence(node)):
            return self._wrong_type("a list of strings", node, key_path)
        tags: list[str] = []
        for index, item in enumerate(node.value):
            item_value = scalar_value(item) if is_scalar(item) else item
            if type(item_value) is not str:
                self._wrong_type("a string", item, f"{key_path}[{index}]")
            else:
                tags.append(item_value)
        return tuple(tags)

    def _reference(self, value: Any, node: Node, key_path: str) -> Any:
        if type(value) is str and value:
            return _short_reference(value)
        if not (value is node and is_mapping(node)):
            expected = "an image name, a file path, {image: NAME} or {file: PATH}"
            return self._wrong_type(expected, node, key_path)
        found: list[tuple[str, str]] = []
        for key, key_node, value_node in self._items(node, key_path):
            item_path = f"{key_path}.{key}"
            if key not in ("image", "file"):
                self.report(key_node, item_path, "unknown key", _suggest(key, ("image", "file")))
                continue
            text = scalar_value(value_node) if is_scalar(value_node) else value_node
            if type(text) is not str or not text:
                self._wrong_type("a non-empty string", value_node, item_path)
                continue
            found.append((key, text))
        if len(found) != 1:
            self.report(node, key_path, "a reference needs exactly one of image or file")
            return _INVALID
        return found[0]

    # -- sections ----------------------------------------------------------------------

    def _check_defaults(self, defaults: dict[str, Entry]) -> None:
        model = defaults.get("model")
        if model is None or model[0] in (None, Model.FLUX.value):
            return
        for name in _CAPABILITY_FIELDS:
            entry = defaults.get(name)
            if entry is not None and entry[0] is not None and entry[0] != f.STYLE_NONE:
                message = f"{name} is not supported by model {model[0]}; only flux takes it"
                self.report(entry[1], entry[2], message)

    def _budget(self, node: Node) -> tuple[tuple[str, int, int, int, str], ...] | None:
        if not is_mapping(node):
            self._wrong_type("a mapping with per_apply and per_day", node, "budget")
            return None
        found: list[tuple[str, int, int, int, str]] = []
        for key, key_node, value_node in self._items(node, "budget"):
            key_path = f"budget.{key}"
            if key not in BUDGET_FIELDS:
                self.report(key_node, key_path, "unknown key", _suggest(key, BUDGET_FIELDS))
                continue
            value = scalar_value(value_node) if is_scalar(value_node) else None
            if type(value) is not int or value < 0:
                self._wrong_type("a non-negative integer (credits)", value_node, key_path)
                continue
            found.append((key, value, _line(key_node), _column(key_node), key_path))
        return tuple(found)

    def _images(self, node: Node, defaults: dict[str, Entry]) -> None:
        if not is_mapping(node):
            self._wrong_type("a mapping from image name to fields", node, "images")
            return
        for name, key_node, value_node in self._items(node, "images"):
            key_path = f"images.{name}"
            problem = name_problem(name)
            if problem is not None:
                self.report(key_node, key_path, problem)
                continue
            fields = self._fields(value_node, key_path, f.IMAGE_FIELDS)
            grid = None if fields is None else fields.pop("grid", None)
            self.names.append((name, _line(key_node), _column(key_node), grid is not None))
            if fields is None:
                continue
            if grid is None:
                self._build(name, None, key_node, {**defaults, **fields}, (), {})
            else:
                self._expand(name, key_node, defaults, fields, grid)

    # -- grids ---------------------------------------------------------------------------

    def _expand(
        self,
        base: str,
        key_node: Node,
        defaults: dict[str, Entry],
        fields: dict[str, Entry],
        grid: Entry,
    ) -> None:
        effective = {**defaults, **fields}
        axes = self._axes(grid[1], grid[2], fields)
        axes = [axis for axis in axes if self._is_used(axis, effective)]
        if not axes:
            return
        size = math.prod(len(axis.values) for axis in axes)
        if size > f.MAX_GRID_SIZE:
            message = f"this grid expands to {size} images; at most {f.MAX_GRID_SIZE} are allowed"
            self.report(grid[1], grid[2], message)
            return
        for combination in itertools.product(*(axis.values for axis in axes)):
            member = dict(effective)
            variables: dict[str, str] = {}
            labels: list[tuple[str, str]] = []
            for axis, (label, value, node, key_path) in zip(axes, combination, strict=True):
                labels.append((axis.name, label))
                if axis.is_variable:
                    variables[axis.name] = value
                else:
                    member[axis.name] = (value, node, key_path)
            name = grid_name(base, tuple(labels))
            self._build(name, base, key_node, member, tuple(labels), variables)

    def _axes(self, node: Node, path: str, fields: dict[str, Entry]) -> list[_Axis]:
        if not is_mapping(node):
            self._wrong_type("a mapping from axis to values", node, path)
            return []
        axes: list[_Axis] = []
        for key, key_node, value_node in self._items(node, path):
            axis = self._axis(key, key_node, f"{path}.{key}", fields, axes)
            if axis is not None:
                self._axis_values(axis, value_node)
                if axis.values:
                    axes.append(axis)
        if not node.value:
            self.report(node, path, "a grid needs at least one axis")
        return axes

    def _axis(
        self, key: str, key_node: Node, path: str, fields: dict[str, Entry], axes: list[_Axis]
    ) -> _Axis | None:
        canonical = f.SPELLINGS.get(key)
        if canonical is None and _VARIABLE.match(key):
            return _Axis(key, True, key_node, path)
        if canonical is None or canonical not in f.GENERATION_FIELDS:
            message = f"{key} cannot be a grid axis; only generation fields and variables can"
            self.report(key_node, path, message)
            return None
        if canonical in fields:
            self.report(key_node, path, f"{canonical} is set both as a field and as a grid axis")
            return None
        if any(axis.name == canonical for axis in axes):
            self.report(key_node, path, f"{canonical} is given twice as a grid axis")
            return None
        return _Axis(canonical, False, key_node, path)

    def _axis_values(self, axis: _Axis, node: Node) -> None:
        if is_sequence(node):
            for index, item in enumerate(node.value):
                self._axis_item(axis, None, item, f"{axis.key_path}[{index}]")
            if not node.value:
                self.report(node, axis.key_path, "a grid axis needs at least one value")
        elif is_mapping(node):
            for label, label_node, item in self._items(node, axis.key_path):
                self._axis_item(axis, (label, label_node), item, f"{axis.key_path}.{label}")
            if not node.value:
                self.report(node, axis.key_path, "a grid axis needs at least one value")
        else:
            expected = "a list of values, or a mapping of labels to values"
            self._wrong_type(expected, node, axis.key_path)

    def _axis_item(
        self, axis: _Axis, labelled: tuple[str, Node] | None, node: Node, path: str
    ) -> None:
        value = self._axis_value(axis, node, path)
        if value is _INVALID:
            return
        if labelled is None:
            label, label_node = (value if type(value) is str else str(value)), node
            if type(value) not in (str, int):
                self.report(node, path, "give this axis as a mapping of short labels to values")
                return
        else:
            label, label_node = labelled
        problem = label_problem(label)
        if problem is not None:
            self.report(label_node, path, f"{problem}; give this axis as a mapping of labels")
            return
        if any(existing[0] == label for existing in axis.values):
            self.report(label_node, path, f'duplicate grid value "{label}"')
            return
        axis.values.append((label, value, node, path))

    def _axis_value(self, axis: _Axis, node: Node, path: str) -> Any:
        if axis.is_variable:
            value = scalar_value(node) if is_scalar(node) else None
            if type(value) is int:
                return str(value)
            if type(value) is not str:
                return self._wrong_type("a string or an integer", node, path)
            return value
        value = self._check(axis.name, node, path)
        if value is None:
            self.report(node, path, "a grid value must not be null")
            return _INVALID
        return value

    def _is_used(self, axis: _Axis, effective: dict[str, Entry]) -> bool:
        if not axis.is_variable:
            return True
        placeholder = "{" + axis.name + "}"
        for name in (*f.TEXT_FIELDS, "output"):
            entry = effective.get(name)
            if entry is not None and type(entry[0]) is str and placeholder in entry[0]:
                return True
        spellings = [s for s, c in f.SPELLINGS.items() if c in f.GENERATION_FIELDS]
        message = (
            f"unknown grid axis: not a generation field, and {placeholder} appears in no text field"
        )
        self.report(axis.key_node, axis.key_path, message, _suggest(axis.name, spellings))
        return False

    # -- one resolved image ----------------------------------------------------------------

    def _build(
        self,
        name: str,
        base: str | None,
        key_node: Node,
        effective: dict[str, Entry],
        labels: tuple[tuple[str, str], ...],
        variables: dict[str, str],
    ) -> None:
        key_path = f"images.{base or name}"
        texts = self._texts(key_node, key_path, effective, variables)
        model_entry = effective.get("model")
        model = model_entry[0] if model_entry and model_entry[0] else Model.FLUX.value
        capable = self._capable(effective, model_entry)
        output = self._output(name, key_node, key_path, effective.get("output"), labels)
        if texts is None or not capable or output is None:
            return
        seed = _value(effective, "seed")
        reference = effective.get("reference")
        self.rows.append(
            (
                name,
                base,
                _line(key_node),
                _column(key_node),
                *output,
                bool(_value(effective, "protect")),
                _value(effective, "tags") or (),
                _value(effective, "description"),
                seed is None,
                texts["prompt"],
                model,
                f.derive_seed(name) if seed is None else seed,
                _value(effective, "aspect_ratio") or f.ASPECT_RATIOS[0],
                texts["location"],
                texts["weather"],
                texts["lighting"],
                _value(effective, "style"),
                texts["shot_type"],
                _value(effective, "shot_angle"),
                _value(effective, "reference_strength"),
                *_reference_fields(reference),
            )
        )

    def _texts(
        self, key_node: Node, key_path: str, effective: dict[str, Entry], variables: dict[str, str]
    ) -> dict[str, str | None] | None:
        prompt = effective.get("prompt")
        if prompt is None or prompt[0] is None:
            self.report(key_node, key_path, "prompt is required")
            return None
        texts: dict[str, str | None] = {}
        valid = True
        for name in f.TEXT_FIELDS:
            entry = effective.get(name)
            text = None if entry is None else entry[0]
            if text is not None:
                for variable, value in variables.items():
                    text = text.replace("{" + variable + "}", value)
                valid = self._text_fits(name, text, entry) and valid  # type: ignore[arg-type]
            # E4: the API reads an empty optional string as absent; so does the key.
            texts[name] = text or None
        return texts if valid else None

    def _text_fits(self, name: str, text: str, entry: Entry) -> bool:
        if name == "prompt" and not text.strip():
            self.report(entry[1], entry[2], "prompt must not be empty or whitespace only")
            return False
        length = f.utf16_length(text)
        if length > f.MAX_TEXT_UNITS:
            message = (
                f"{name} is {length} characters long (UTF-16 code units); "
                f"the API allows at most {f.MAX_TEXT_UNITS}"
            )
            self.report(entry[1], entry[2], message)
            return False
        return True

    def _capable(self, effective: dict[str, Entry], model: Entry | None) -> bool:
        if model is None or model[0] in (None, Model.FLUX.value):
            return True
        capable = True
        for name in _CAPABILITY_FIELDS:
            entry = effective.get(name)
            if entry is None or entry[0] is None or entry[0] == f.STYLE_NONE:
                continue
            capable = False
            if not entry[2].startswith("defaults."):
                message = f"{name} is not supported by model {model[0]}; only flux takes it"
                self.report(entry[1], entry[2], message)
            elif not model[2].startswith("defaults."):
                message = (
                    f"model {model[0]} does not support {name} "
                    f"(set at {entry[2]}, line {_line(entry[1])}); only flux does"
                )
                self.report(model[1], model[2], message)
            # Both from defaults: _check_defaults reported it once, at the defaults.
        return capable

    def _output(
        self,
        name: str,
        key_node: Node,
        key_path: str,
        entry: Entry | None,
        labels: tuple[tuple[str, str], ...],
    ) -> tuple[str, int, int, str] | None:
        if entry is None or entry[0] is None:
            return (default_output(name), _line(key_node), _column(key_node), key_path)
        text: str = entry[0].replace("{name}", file_safe(name))
        for axis, label in labels:
            text = text.replace("{" + axis + "}", file_safe(label))
        problem, normalised = output_problem(text)
        if problem is not None:
            self.report(entry[1], entry[2], problem)
            return None
        return (normalised, _line(entry[1]), _column(entry[1]), entry[2])


def _value(effective: dict[str, Entry], name: str) -> Any:
    entry = effective.get(name)
    return None if entry is None else entry[0]


def _reference_fields(entry: Entry | None) -> tuple[Any, ...]:
    if entry is None or entry[0] is None:
        return (None, None, 0, 0, "")
    kind, value = entry[0]
    return (kind, value, _line(entry[1]), _column(entry[1]), entry[2])
