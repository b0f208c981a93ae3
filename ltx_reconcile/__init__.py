"""ltx-reconcile: a declarative, Terraform-style reconciler for AI-generated images.

The library is usable without the CLI; the CLI (`ltx_reconcile.cli`) is a thin layer over it.
"""

from __future__ import annotations

from ltx_reconcile.errors import ExitCode, ReconcileError

__version__ = "0.1.0.dev0"

__all__ = ["ExitCode", "ReconcileError", "__version__"]
