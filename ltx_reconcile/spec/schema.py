"""The JSON Schema of spec files, generated from the pydantic models in `spec/model.py`.

Editors use it through the yaml-language-server, with a first line such as
`# yaml-language-server: $schema=../ltx-reconcile.schema.json` in a spec file.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["SCHEMA_ID", "spec_json_schema"]

SCHEMA_ID: Final = "https://ltx-reconcile.invalid/schema/spec-file-1.json"
"""Stable identifier of this schema version (not fetched; `.invalid` is reserved for that)."""
_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"


def spec_json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one spec file, with a description on every field."""
    from ltx_reconcile.spec.model import SpecFileModel

    schema = SpecFileModel.model_json_schema()
    return {"$schema": _DIALECT, "$id": SCHEMA_ID, **schema}
