"""Image names, grid labels and output paths: what is safe to become a file name.

An image's name becomes part of a file name (`out/<name>.png`) on Linux, macOS and
Windows, so the rules here are the intersection of the three: no path separators, no
leading dot, no control characters, none of Windows' forbidden characters or device
names. `[`, `]`, `=` and `,` are reserved for grid names (`hero[seed=1,style=anime]`).
Every check returns a message, or None when the value is fine.
"""

from __future__ import annotations

import posixpath
import re
from typing import Final

__all__ = [
    "MAX_LABEL_LENGTH",
    "MAX_NAME_LENGTH",
    "default_output",
    "file_safe",
    "grid_name",
    "label_problem",
    "name_problem",
    "output_problem",
]

MAX_NAME_LENGTH: Final = 200
MAX_LABEL_LENGTH: Final = 64

_SIMPLE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_+.-]*\Z")
_GRID_RESERVED: Final = frozenset("[]=,")
_WINDOWS_FORBIDDEN: Final = frozenset('<>:"|?*')
_DEVICE_NAMES: Final = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
)
_DRIVE = re.compile(r"[A-Za-z]:")


def _is_control(char: str) -> bool:
    return ord(char) < 32 or 127 <= ord(char) < 160


def _character_problem(text: str, *, what: str, allow_colon: bool = False) -> str | None:
    for char in text:
        if char in "/\\":
            return f'{what} must not contain a path separator ("{char}")'
        if _is_control(char):
            return f"{what} must not contain control characters"
        if char in _GRID_RESERVED:
            return f'{what} must not contain "{char}" (reserved for grid names)'
        if char in _WINDOWS_FORBIDDEN and not (allow_colon and char == ":"):
            return f'{what} must not contain "{char}" (not allowed in Windows file names)'
    return None


def name_problem(name: str) -> str | None:
    """Why `name` cannot name an image, or None when it can."""
    if _SIMPLE_NAME.match(name) and not name.endswith(".") and len(name) <= MAX_NAME_LENGTH:
        return _device_problem(name)
    if not name:
        return "an image name must not be empty"
    if len(name) > MAX_NAME_LENGTH:
        return f"an image name must be at most {MAX_NAME_LENGTH} characters"
    problem = _character_problem(name, what="an image name")
    if problem is not None:
        return problem
    if name.startswith("."):
        return "an image name must not start with a dot"
    if name != name.strip() or name.endswith("."):
        # Windows drops trailing dots and spaces, so `a.` and `a` would be one file there.
        return "an image name must not start or end with a space, nor end with a dot"
    return _device_problem(name)


def _device_problem(name: str) -> str | None:
    if name.split(".", 1)[0].upper() in _DEVICE_NAMES:
        return f'"{name}" is a reserved device name on Windows'
    return None


def label_problem(label: str) -> str | None:
    """Why `label` cannot label a grid value inside an image name, or None when it can.

    Unlike names, labels may contain `:` (aspect ratios); `default_output` encodes it.
    """
    if not label or label != label.strip():
        return "a grid label must not be empty nor start or end with a space"
    if len(label) > MAX_LABEL_LENGTH:
        return f"a grid label must be at most {MAX_LABEL_LENGTH} characters"
    return _character_problem(label, what="a grid label", allow_colon=True)


def grid_name(base: str, labels: tuple[tuple[str, str], ...]) -> str:
    """The name of one grid member: `base[axis=label,...]`, axes in the order written."""
    return base + "[" + ",".join(f"{axis}={label}" for axis, label in labels) + "]"


def file_safe(text: str) -> str:
    """`text` with `:` percent-encoded, the one name character Windows refuses in files."""
    return text.replace(":", "%3A")


def default_output(name: str) -> str:
    """An image's output when its spec gives none: `out/<name>.png`, made file-safe."""
    return f"out/{file_safe(name)}.png"


def output_problem(path: str) -> tuple[str | None, str]:
    """Why `path` cannot be an output (or None), and its normalised form.

    Outputs are relative to the workspace, use `/`, and must stay inside it.
    """
    if not path.strip():
        return "output must not be empty", path
    if "\\" in path:
        return "output must use / as the path separator", path
    if any(_is_control(c) for c in path):
        return "output must not contain control characters", path
    if path.startswith("/") or _DRIVE.match(path):
        return "output must be relative to the workspace, not absolute", path
    forbidden = sorted(set(path) & _WINDOWS_FORBIDDEN)
    if forbidden:
        return f'output must not contain "{forbidden[0]}" (not allowed in Windows file names)', path
    normalised = posixpath.normpath(path)
    if normalised == ".." or normalised.startswith("../"):
        return "output must stay inside the workspace (it escapes it with ..)", path
    if normalised == "." or path.endswith("/"):
        return "output must name a file", path
    return None, normalised
