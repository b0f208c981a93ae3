"""YAML text to a node tree through ruamel.yaml's C parser, and typing of scalar nodes.

The loader walks composed nodes itself, rather than constructing Python objects, because
node marks carry the line and column every diagnostic needs, and because the C composer
with our trivial resolver is about twice as fast as `load()` (issue 4, section 5). Plain
scalars stay untyped until a field asks for a value, so `16:9` is a string (YAML 1.2) and
`yes` is not a boolean. This module imports ruamel.yaml lazily: a warm load never needs it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ruamel.yaml.nodes import Node

__all__ = [
    "MAP_TAG",
    "PLAIN_TAG",
    "SEQ_TAG",
    "STR_TAG",
    "YamlSyntaxError",
    "compose",
    "describe",
    "is_mapping",
    "is_scalar",
    "is_sequence",
    "scalar_value",
]

PLAIN_TAG: Final = "?"
"""Our tag for an untagged plain scalar: typed later, by the field that reads it."""
STR_TAG: Final = "tag:yaml.org,2002:str"
SEQ_TAG: Final = "tag:yaml.org,2002:seq"
MAP_TAG: Final = "tag:yaml.org,2002:map"
_INT_TAG: Final = "tag:yaml.org,2002:int"
_FLOAT_TAG: Final = "tag:yaml.org,2002:float"
_BOOL_TAG: Final = "tag:yaml.org,2002:bool"
_NULL_TAG: Final = "tag:yaml.org,2002:null"

_PLAIN_WORDS: Final[dict[str, object]] = {
    "": None,
    "~": None,
    "null": None,
    "Null": None,
    "NULL": None,
    "true": True,
    "True": True,
    "TRUE": True,
    "false": False,
    "False": False,
    "FALSE": False,
}
"""YAML 1.2 core schema words; YAML 1.1's yes/no/on/off stay strings."""
_DECIMAL = re.compile(r"[-+]?[0-9]+\Z")
_OCTAL = re.compile(r"0o[0-7]+\Z")
_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(
    r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?\Z|[-+]?\.(inf|Inf|INF)\Z|\.(nan|NaN|NAN)\Z"
)
_NUMBER_START: Final = frozenset("0123456789+-.")


class YamlSyntaxError(Exception):
    """Raised when YAML text cannot be parsed; carries the 1-based position of the problem."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


def _c_yaml() -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.nodes import MappingNode, ScalarNode
    from ruamel.yaml.tag import Tag

    yaml = YAML(typ="safe", pure=False)
    if getattr(yaml.Parser, "__name__", "") != "CParser":
        # ruamel.yaml 0.19 silently falls back to a pure-Python parser 4x slower than
        # the budget in issue 4 allows; say so rather than be slow without a word.
        from ltx_reconcile.errors import ReconcileError

        raise ReconcileError(
            "ruamel.yaml's C parser is not available (ruamel.yaml.clib is missing)",
            hint="reinstall ltx-reconcile so that its ruamel.yaml.clib dependency is installed",
        )
    # Shared Tag objects: a Node given a Tag keeps it, given a str it builds a new Tag,
    # which was a quarter of compose time.
    plain, string, mapping, sequence = (
        Tag(suffix=t) for t in (PLAIN_TAG, STR_TAG, MAP_TAG, SEQ_TAG)
    )

    class UntypedResolver:
        """Tags plain scalars `?` and everything else by node kind; fields type values.

        ruamel.yaml's own resolver recomputes the YAML version for every scalar and cost
        40% of compose time; the loader types each scalar by the field that reads it.
        """

        def __init__(self, *args: object, **kwargs: object) -> None:
            del args, kwargs  # the C loader passes version and loadumper; we need neither

        def resolve(self, kind: type, value: str, implicit: tuple[bool, bool]) -> Any:
            del value
            if kind is ScalarNode:
                return plain if implicit[0] else string
            return mapping if kind is MappingNode else sequence

        def descend_resolver(self, current_node: object, current_index: object) -> None:
            """Path-dependent resolution is not used."""

        def ascend_resolver(self) -> None:
            """Path-dependent resolution is not used."""

    yaml.Resolver = UntypedResolver
    return yaml


def compose(data: bytes) -> Node | None:
    """The node tree of one YAML document (None when empty), through the C parser.

    Raises YamlSyntaxError on any syntax or encoding error, and ReconcileError when the C
    parser is not installed.
    """
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = _c_yaml()
    try:
        node: Node | None = yaml.compose(data)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise YamlSyntaxError(_problem_text(err), line, column) from None
    except YAMLError as err:
        # ReaderError (bad encoding) has a byte position but no line; point at the start.
        raise YamlSyntaxError(str(err).splitlines()[0], 1, 1) from None
    return node


def _problem_text(err: Any) -> str:
    text = str(err.problem or "invalid YAML")
    if err.context:
        text += f" ({err.context})"
    if "unexpected ':'" in text:
        # The usual cause: an aspect ratio such as 1:1 unquoted inside [...] or {...}.
        text += '; quote values that contain ":", e.g. "1:1"'
    return text


def is_scalar(node: Any) -> bool:
    """True for a scalar node."""
    answer: bool = node.id == "scalar"
    return answer


def is_mapping(node: Any) -> bool:
    """True for a mapping node."""
    answer: bool = node.id == "mapping"
    return answer


def is_sequence(node: Any) -> bool:
    """True for a sequence node."""
    answer: bool = node.id == "sequence"
    return answer


def scalar_value(node: Node) -> object:
    """The Python value of a scalar node: str, int, float, bool or None.

    Raises ValueError with a message when an explicit tag does not fit its text, or the
    tag is one the spec format does not use.
    """
    tag = node.ctag.suffix
    text: str = node.value
    if tag == PLAIN_TAG:
        return _plain_value(text)
    if tag == STR_TAG:
        return text
    if tag == _INT_TAG:
        value = _plain_value(text)
        if type(value) is int:
            return value
        raise ValueError(f'"{text}" is not an integer')
    return _tagged_value(tag, text)


def _tagged_value(tag: str, text: str) -> object:
    value = _plain_value(text)
    if tag == _BOOL_TAG and type(value) is bool:
        return value
    if tag == _NULL_TAG and value is None:
        return None
    if tag == _FLOAT_TAG and type(value) in (int, float):
        return float(value)  # type: ignore[arg-type]
    raise ValueError(f'unsupported tag {tag} for "{text}"')


def _plain_value(text: str) -> object:
    word = _PLAIN_WORDS.get(text, _PLAIN_WORDS)
    if word is not _PLAIN_WORDS:
        return word
    if text[0] not in _NUMBER_START:
        return text
    if _DECIMAL.match(text):
        return int(text)
    if _OCTAL.match(text):
        return int(text[2:], 8)
    if _HEX.match(text):
        return int(text[2:], 16)
    if _FLOAT.match(text):
        lowered = text.lower()
        # YAML spells infinity and not-a-number .inf and .nan; Python wants no dot.
        return float(lowered.replace(".", "") if "n" in lowered else text)
    return text


def describe(node: Node) -> str:
    """What a node holds, for messages: `a string`, `an integer`, `a list`, ..."""
    if is_mapping(node):
        return "a mapping"
    if is_sequence(node):
        return "a list"
    try:
        value = scalar_value(node)
    except ValueError:
        return "a tagged value"
    return _DESCRIPTIONS.get(type(value), "a value")


_DESCRIPTIONS: Final[dict[type, str]] = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}
