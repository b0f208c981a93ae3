"""Saved plans: write a plan for a later `apply PLANFILE`, and refuse it once it is stale.

A saved plan is bound to the state's lineage and serial and to the digest of the specs (and
of every local reference file) it was made from, as OpenTofu binds a plan to its state. If
any of them moved, the plan no longer describes what apply would do, and applying it could
spend money on a diff nobody reviewed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pydantic import ValidationError

from ltx_reconcile import __version__
from ltx_reconcile.errors import StalePlanError, UsageError
from ltx_reconcile.plan.document import PlanDocument, from_plan, to_plan
from ltx_reconcile.plan.model import Plan

__all__ = ["check_fresh", "read_plan", "write_plan"]


def write_plan(plan: Plan, path: Path) -> None:
    """Write `plan` to `path` atomically (temp file, fsync, rename)."""
    data = from_plan(plan, tool_version=__version__).model_dump_json(indent=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def read_plan(path: Path) -> Plan:
    """Read a saved plan. Raises `UsageError` for a file that is not a plan of this format."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot read the saved plan {path}: {err.strerror}") from None
    try:
        document = PlanDocument.model_validate_json(text)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageError(
            f"{path} is not a saved plan of format version 1 ({where}: {first['msg']})",
            hint="make a new one with `ltx-reconcile plan --out FILE`",
        ) from None
    return to_plan(document)


def check_fresh(plan: Plan, *, lineage: str | None, serial: int, specs_digest: str) -> None:
    """Raise `StalePlanError` unless `plan` was made from this state and these specs."""
    hint = "run `ltx-reconcile plan --out FILE` again and review the new plan"
    if plan.lineage is not None and lineage is not None and plan.lineage != lineage:
        raise StalePlanError(
            f"the saved plan belongs to another state (lineage {plan.lineage}; "
            f"this state is {lineage})",
            hint=hint,
        )
    if plan.lineage is None and lineage is not None and serial != 0:
        raise StalePlanError(
            "the saved plan was made before the state existed; it has been written since",
            hint=hint,
        )
    if plan.serial != serial and plan.lineage is not None:
        raise StalePlanError(
            f"the saved plan was made at state serial {plan.serial}; the state is now at {serial}",
            hint=hint,
        )
    if plan.specs_digest != specs_digest:
        raise StalePlanError(
            "the specs (or a reference file they name) changed since the plan was made",
            hint=hint,
        )
