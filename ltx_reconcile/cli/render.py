"""Rendering for terminals: errors, plans and progress. Every renderer takes a `Console`.

stdout carries the product (plans, summaries); stderr carries progress and diagnostics.
Colour goes off when the stream is not a terminal or `NO_COLOR` is set (rich honours both).
"""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from ltx_reconcile.errors import ReconcileError

__all__ = ["error", "stderr_console", "stdout_console"]


def stdout_console() -> Console:
    """A console on stdout, soft-wrapped so long lines stay copyable."""
    return Console(soft_wrap=True, highlight=False)


def stderr_console() -> Console:
    """A console on stderr for progress and diagnostics."""
    return Console(stderr=True, soft_wrap=True, highlight=False)


def error(console: Console, err: ReconcileError) -> None:
    """Print an anticipated failure: `Error: <message>` and, if any, a hint line."""
    console.print(f"[bold red]Error:[/] {escape(str(err))}")
    if err.hint:
        console.print(f"[dim]hint:[/] {escape(err.hint)}")
