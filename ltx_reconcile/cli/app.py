"""What every command receives from the group: the settings and the directory it runs in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ltx_reconcile.settings import Settings

__all__ = ["CliApp"]


@dataclass(frozen=True, slots=True)
class CliApp:
    """Settings read once from the environment, and the workspace root."""

    settings: Settings
    root: Path
    """The workspace root (`-C DIR`, else the current directory)."""
