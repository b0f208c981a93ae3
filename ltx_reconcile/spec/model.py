"""The spec file format as pydantic models: the documented boundary and the JSON Schema.

These models state the same rules the loader checks by hand (`spec/parse.py`), with the
same vocabulary (`spec/fields.py`), and they are what `spec_json_schema()` publishes for
editors. The loader does not run them per image: a hand-written walk over YAML nodes is
faster and knows every line and column (issue 4, section 5). `validate_spec_document`
validates a plain mapping (for example JSON) against them; a test checks that it and the
loader agree. Import this module only where pydantic is wanted: it is not on the load path.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ltx_reconcile.spec.fields import (
    CAMEL_SPELLINGS,
    FIELD_DOCS,
    MAX_TEXT_UNITS,
    SEED_MAX,
    STRENGTH_MAX,
    AspectRatioName,
    ShotAngleName,
    StyleName,
    utf16_length,
)
from ltx_reconcile.spec.image import Model

__all__ = [
    "BudgetModel",
    "DefaultsModel",
    "ImageModel",
    "ReferenceModel",
    "SpecFileModel",
    "validate_spec_document",
]


def _fits_the_api(text: str) -> str:
    if utf16_length(text) > MAX_TEXT_UNITS:
        raise ValueError(f"at most {MAX_TEXT_UNITS} characters (UTF-16 code units)")
    return text


ApiText = Annotated[str, AfterValidator(_fits_the_api)]
Seed = Annotated[int, Field(ge=0, le=SEED_MAX, strict=True)]
Strength = Annotated[int, Field(ge=0, le=STRENGTH_MAX, strict=True)]
_FROZEN = ConfigDict(extra="forbid", frozen=True)


def _doc(name: str, spelling: str | None = None) -> Any:
    if spelling is None:
        return Field(None, description=FIELD_DOCS[name])
    return Field(None, description=f"The API's spelling of {name}: {FIELD_DOCS[name]}")


class ReferenceModel(BaseModel):
    """A reference image in mapping form: exactly one of `image` and `file`."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Reference")

    image: str | None = Field(None, min_length=1, description="The name of another image.")
    file: str | None = Field(
        None, min_length=1, description="A local image file, relative to this spec file."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ReferenceModel:
        if (self.image is None) == (self.file is None):
            raise ValueError("a reference needs exactly one of image or file")
        return self


class DefaultsModel(BaseModel):
    """Generation fields that apply to every image of this file unless it sets its own."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Defaults")

    prompt: ApiText | None = _doc("prompt")
    location: ApiText | None = _doc("location")
    weather: ApiText | None = _doc("weather")
    lighting: ApiText | None = _doc("lighting")
    aspect_ratio: AspectRatioName | None = _doc("aspect_ratio")
    aspectRatio: AspectRatioName | None = _doc("aspect_ratio", "aspectRatio")  # noqa: N815
    style: StyleName | None = _doc("style")
    shot_type: ApiText | None = _doc("shot_type")
    shotType: ApiText | None = _doc("shot_type", "shotType")  # noqa: N815
    shot_angle: ShotAngleName | None = _doc("shot_angle")
    shotAngle: ShotAngleName | None = _doc("shot_angle", "shotAngle")  # noqa: N815
    seed: Seed | None = _doc("seed")
    model: Model | None = _doc("model")
    reference_strength: Strength | None = _doc("reference_strength")
    referenceStrength: Strength | None = _doc("reference_strength", "referenceStrength")  # noqa: N815
    reference: Annotated[str, Field(min_length=1)] | ReferenceModel | None = _doc("reference")

    @model_validator(mode="after")
    def _one_spelling_each(self) -> DefaultsModel:
        given = self.model_fields_set
        for camel, snake in CAMEL_SPELLINGS.items():
            if camel in given and snake in given:
                raise ValueError(f"{snake} is given twice, as {snake} and as {camel}")
        return self

    @model_validator(mode="after")
    def _flux_only(self) -> DefaultsModel:
        if self.model in (None, Model.FLUX):
            return self
        capabilities = {
            "style": None if self.style == "base" else self.style,
            "reference": self.reference,
            "reference_strength": self.reference_strength or self.referenceStrength,
        }
        for name, value in capabilities.items():
            if value is not None:
                raise ValueError(f"{name} is not supported by model {self.model}")
        return self


GridValue = str | int
GridAxis = Annotated[
    list[GridValue] | dict[str, GridValue],
    Field(min_length=1, description="The values of one axis, or a mapping of labels to values."),
]


class ImageModel(DefaultsModel):
    """One entry of `images`: generation fields plus the reconciler's own."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Image")

    output: str | None = _doc("output")
    protect: bool | None = _doc("protect")
    tags: list[str] | str | None = _doc("tags")
    description: str | None = _doc("description")
    grid: Annotated[dict[str, GridAxis], Field(min_length=1)] | None = _doc("grid")


class BudgetModel(BaseModel):
    """Spending limits in credits (the budget feature enforces them)."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="Budget")

    per_apply: Annotated[int, Field(ge=0, strict=True)] | None = Field(
        None, description="Most credits one apply may spend."
    )
    per_day: Annotated[int, Field(ge=0, strict=True)] | None = Field(
        None, description="Most credits all applies of one UTC day may spend."
    )


class SpecFileModel(BaseModel):
    """One spec file (`specs/**/*.yaml`): defaults, images and an optional budget."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="ltx-reconcile spec file")

    defaults: DefaultsModel | None = Field(
        None, description="Generation fields every image of this file inherits."
    )
    images: dict[str, ImageModel] | None = Field(
        None,
        description="Image name to its fields. Names are unique across all spec files and "
        "safe as file names: no / or \\, no leading dot, none of []=, (used by grid names).",
    )
    budget: BudgetModel | None = Field(None, description="Spending limits in credits.")


def validate_spec_document(document: Any) -> SpecFileModel:
    """Validate one spec file's content (already parsed) against the models.

    Raises pydantic.ValidationError. The loader reports the same problems with lines and
    columns; this is the boundary for tools that hold a spec as plain data.
    """
    return SpecFileModel.model_validate(document)
