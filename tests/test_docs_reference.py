"""The reference pages under docs/ name everything the code defines, so neither drifts alone."""

from __future__ import annotations

from pathlib import Path

from ltx_reconcile.plan.document import ChangeDocument, PlanDocument
from ltx_reconcile.plan.model import Action
from ltx_reconcile.spec.fields import CAMEL_SPELLINGS, IMAGE_FIELDS
from ltx_reconcile.spec.parse import BUDGET_FIELDS

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "ltx_reconcile"
DOCS = ROOT / "docs"


def _missing(page: str, names: list[str]) -> list[str]:
    """The names that `docs/<page>` never mentions as inline code."""
    text = (DOCS / page).read_text()
    return [name for name in names if f"`{name}`" not in text]


def test_every_module_is_in_the_architecture_module_map():
    """docs/architecture.md lists each module of ltx_reconcile/ by its path in the package."""
    modules = sorted(path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py"))
    assert _missing("architecture.md", modules) == []


def test_every_spec_field_and_spelling_is_in_the_spec_format():
    """docs/spec-format.md documents every image field, camelCase spelling and budget field."""
    names = [*IMAGE_FIELDS, *CAMEL_SPELLINGS, *BUDGET_FIELDS]
    assert _missing("spec-format.md", names) == []


def test_every_action_and_document_field_is_in_the_plan_format():
    """docs/plan-format.md documents every action and every field of the plan document."""
    names = [
        *(action.value for action in Action),
        *PlanDocument.model_fields,
        *ChangeDocument.model_fields,
    ]
    assert _missing("plan-format.md", names) == []
