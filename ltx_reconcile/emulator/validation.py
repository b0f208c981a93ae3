"""Request parsing and the validation table of contract section 7, in its exact order.

The contract fixes which failing row wins when several fail (E20), and each row's exact
message, so the rows are written out one by one here rather than delegated to pydantic,
whose error order and wording we could not pin. This module is pure apart from reading
the request body: account lookups take the list of known emails as an argument, and the
reference-asset lookup (row 25) lives with the state that owns the assets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from ltx_reconcile.emulator.errors import ApiError

__all__ = [
    "ASPECT_RATIOS",
    "CREATE_FIELDS",
    "LIST_FILTERS",
    "MODELS",
    "SHOT_ANGLES",
    "STYLES",
    "AccountParams",
    "CreateParams",
    "Items",
    "ListParams",
    "bad_request",
    "check_names",
    "parse_account_body",
    "parse_create",
    "parse_job_id",
    "parse_list_query",
    "read_body_items",
    "resolve_email",
    "utf16_length",
]

Items = Sequence[tuple[str, object]]
"""A request's parameters in the order they arrived; a name may repeat (multipart)."""

MODELS: Final = ("flux", "flux-premium", "nano-banana")
ASPECT_RATIOS: Final = ("16:9", "9:16", "1:1")
STYLES: Final = (
    "cinematic",
    "vintage",
    "low_key",
    "indy",
    "y2k",
    "pop",
    "grunge",
    "dreamy",
    "hand_drawn",
    "2d_novel",
    "boost",
    "scribble",
    "film_noir",
    "anime",
    "3d_cartoon",
    "colored",
)
SHOT_ANGLES: Final = ("eye-level", "low-angle", "over-the-shoulder", "overhead", "birds-eye-view")
CREATE_FIELDS: Final = (
    "email",
    "prompt",
    "location",
    "weather",
    "lighting",
    "aspectRatio",
    "referenceAssetId",
    "reference_strength",
    "style",
    "shotType",
    "shotAngle",
    "seed",
    "model",
    "pollForResult",
    "maxJobs",
    "replyUrl",
    "replyRef",
)
_NOT_ON_CREATE: Final = ("referenceAssetId2", "referenceAssetId3")
_TEXT_LIMIT: Final = 2000
_SEED_MAX: Final = 4_294_967_295
_INTEGER: Final = re.compile(r"-?[0-9]+")
_JOB_ID: Final = re.compile(r"email:(?P<email>[^:]+):(?P<id>.+)-type:(?P<type>image|video)")
_COOKIE_FIELDS: Final = ("lt_id", "lt_token", "lt_refresh_token")
_LIST_FIELDS: Final = ("email", "page", "limit", "filter")
LIST_FILTERS: Final = ("images", "videos", "audio", "other")


def bad_request(message: str) -> ApiError:
    """A 400 with `message`: the shape of every validation failure."""
    return ApiError(400, message)


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, as a JavaScript service counts it (E10)."""
    return len(text.encode("utf-16-le")) // 2


# -- reading bodies ---------------------------------------------------------------------------


async def read_body_items(request: Request) -> list[tuple[str, object]]:
    """The body's parameters in order, from JSON or multipart (rows 1 and 2)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return _json_items(await request.body())
    if content_type == "multipart/form-data":
        return await _form_items(request)
    raise bad_request("Content-Type must be application/json or multipart/form-data")


def _json_items(body: bytes) -> list[tuple[str, object]]:
    try:
        parsed = json.loads(body)
    except ValueError:
        raise bad_request("Request body must be a JSON object") from None
    if not isinstance(parsed, dict):
        raise bad_request("Request body must be a JSON object")
    return list(parsed.items())


async def _form_items(request: Request) -> list[tuple[str, object]]:
    try:
        form = await request.form()
    except (HTTPException, ValueError, KeyError, AssertionError):
        # Starlette turns python-multipart's complaints (malformed body, missing boundary)
        # into its own HTTPException with its own text; the row's message replaces it.
        raise bad_request("Request body must be a JSON object") from None
    items: list[tuple[str, object]] = []
    for name, value in form.multi_items():
        # A file part is not a string parameter; row 21 rejects it by name.
        items.append((name, value if isinstance(value, str) else _FilePart(value)))
    await form.close()
    return items


@dataclass(frozen=True, slots=True)
class _FilePart:
    """A multipart file given where a string parameter belongs."""

    upload: UploadFile


# -- rows shared by every endpoint -----------------------------------------------------------


def check_names(items: Items, allowed: Iterable[str], *, exempt: Iterable[str] = ()) -> None:
    """Row 3: every name is known and given once."""
    known = set(allowed)
    skipped = set(exempt)
    seen: set[str] = set()
    for name, _ in items:
        if name in skipped:
            continue
        if name not in known:
            raise bad_request(f"Unknown parameter: {name}")
        if name in seen:
            raise bad_request(f"{name} must be given only once")
        seen.add(name)


def _is_absent(value: object) -> bool:
    """E4: JSON null and the empty string mean the field was not given."""
    return value is None or value == ""


def _string(values: dict[str, object], name: str) -> str | None:
    """The field as a string, None when absent; row 21 when it is not a string."""
    value = values.get(name)
    if _is_absent(value):
        return None
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string")
    return value


def _integer(values: dict[str, object], name: str, low: int, high: int, message: str) -> int | None:
    """The field as an integer in [low, high], None when absent (E9)."""
    value = values.get(name)
    if _is_absent(value):
        return None
    number: int | None = None
    # bool is an int subclass in Python, but JSON true is not a number.
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _INTEGER.fullmatch(value):
        number = int(value)
    if number is None or not low <= number <= high:
        raise bad_request(message)
    return number


def _bounded_text(values: dict[str, object], name: str, limit: int = _TEXT_LIMIT) -> str | None:
    text = _string(values, name)
    if text is not None and utf16_length(text) > limit:
        raise bad_request(f"{name} must be at most {limit} characters")
    return text


def _choice(values: dict[str, object], name: str, allowed: Sequence[str]) -> str | None:
    text = _string(values, name)
    if text is not None and text not in allowed:
        raise bad_request(f"{name} must be one of: {', '.join(allowed)}")
    return text


# -- images/create ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreateParams:
    """A create request that passed rows 1 to 21, with defaults applied."""

    email: object
    """As sent: rows 22 to 24 judge it once the table has passed (`resolve_email`)."""
    prompt: str
    model: str
    aspect_ratio: str
    location: str | None = None
    weather: str | None = None
    lighting: str | None = None
    reference_asset_id: str | None = None
    reference_strength: int = 50
    style: str | None = None
    """None also when `base` was given (E11)."""
    shot_type: str | None = None
    shot_angle: str | None = None
    seed: int | None = None
    poll_for_result: int | None = None
    max_jobs: int | None = None
    reply_url: str | None = None
    reply_ref: str | None = None

    def generation_inputs(self) -> dict[str, object]:
        """The inputs that decide the picture (E44), without the seed and the reference bytes."""
        return {
            "model": self.model,
            "prompt": self.prompt,
            "location": self.location,
            "weather": self.weather,
            "lighting": self.lighting,
            "aspectRatio": self.aspect_ratio,
            "referenceAssetId": self.reference_asset_id,
            "reference_strength": self.reference_strength if self.reference_asset_id else None,
            "style": self.style,
            "shotType": self.shot_type,
            "shotAngle": self.shot_angle,
        }


def parse_create(items: Items) -> CreateParams:
    """Rows 3 to 21 of section 7, in order; raises the first failing row's `ApiError`."""
    check_names(items, CREATE_FIELDS, exempt=_NOT_ON_CREATE)
    values = dict(items)
    for name in _NOT_ON_CREATE:
        if name in values:
            raise bad_request(f"{name} is not supported by images/create")
    model = _choice(values, "model", MODELS) or "flux"
    prompt = _prompt(values)
    texts = {name: _bounded_text(values, name) for name in ("location", "weather", "lighting")}
    aspect_ratio = _choice(values, "aspectRatio", ASPECT_RATIOS) or "16:9"
    reference_asset_id, reference_strength = _reference(values, model)
    style = _style(values, model)
    return CreateParams(
        email=_string_passthrough(values, "email"),
        prompt=prompt,
        model=model,
        aspect_ratio=aspect_ratio,
        reference_asset_id=reference_asset_id,
        reference_strength=reference_strength,
        style=style,
        shot_type=_bounded_text(values, "shotType"),
        shot_angle=_choice(values, "shotAngle", SHOT_ANGLES),
        seed=_integer(
            values, "seed", 0, _SEED_MAX, "seed must be an integer between 0 and 4294967295"
        ),
        poll_for_result=_integer(
            values, "pollForResult", 1, 20, "pollForResult must be an integer between 1 and 20"
        ),
        max_jobs=_integer(
            values, "maxJobs", 1, 100, "maxJobs must be an integer between 1 and 100"
        ),
        reply_url=_reply_url(values),
        reply_ref=_reply_ref(values),
        **texts,
    )


def _string_passthrough(values: dict[str, object], name: str) -> object:
    """The raw field, judged by a later row: None when absent."""
    value = values.get(name)
    return None if _is_absent(value) else value


def _prompt(values: dict[str, object]) -> str:
    prompt = _string(values, "prompt")
    if prompt is None or not prompt.strip():
        raise bad_request("prompt is required")
    if utf16_length(prompt) > _TEXT_LIMIT:
        raise bad_request(f"prompt must be at most {_TEXT_LIMIT} characters")
    return prompt


def _reference(values: dict[str, object], model: str) -> tuple[str | None, int]:
    """Rows 11 and 12."""
    reference = _string(values, "referenceAssetId")
    if reference is not None and model != "flux":
        raise bad_request(f"referenceAssetId is not supported by model {model}")
    if _is_absent(values.get("reference_strength")):
        return reference, 50
    if model != "flux":
        raise bad_request(f"reference_strength is not supported by model {model}")
    strength = _integer(
        values,
        "reference_strength",
        0,
        100,
        "reference_strength must be an integer between 0 and 100",
    )
    return reference, 50 if strength is None else strength


def _style(values: dict[str, object], model: str) -> str | None:
    """Row 13, with `base` meaning no style for every model (E11)."""
    style = _string(values, "style")
    if style is None or style == "base":
        return None
    if model != "flux":
        raise bad_request(f"style is not supported by model {model}")
    if style not in STYLES:
        raise bad_request(f"style must be one of: {', '.join(STYLES)}")
    return style


def _reply_url(values: dict[str, object]) -> str | None:
    url = _string(values, "replyUrl")
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or utf16_length(url) > 2048:
        raise bad_request(
            "replyUrl must be an absolute http or https URL of at most 2048 characters"
        )
    return url


def _reply_ref(values: dict[str, object]) -> str | None:
    ref = _string(values, "replyRef")
    if ref is not None and utf16_length(ref) > 1024:
        raise bad_request("replyRef must be a string of at most 1024 characters")
    return ref


# -- accounts (rows 22 to 24, E5, E42) --------------------------------------------------------


def resolve_email(raw: object, known: Sequence[str]) -> str:
    """The account a request names, lower-cased; rows 22 to 24."""
    if not _is_absent(raw) and not isinstance(raw, str):
        raise bad_request("email must be a string")
    if not known:
        raise bad_request("No LTX Studio account is configured, use POST /accounts first")
    if _is_absent(raw):
        if len(known) > 1:
            raise bad_request("email is required when more than one account is configured")
        return known[0]
    email = str(raw).lower()
    if email not in known:
        raise bad_request(f"Unable to locate account {email}")
    return email


@dataclass(frozen=True, slots=True)
class AccountParams:
    """A valid POST /accounts body (E29)."""

    lt_id: str
    lt_token: str
    lt_refresh_token: str
    max_jobs: int | None


def parse_account_body(items: Items) -> AccountParams:
    """Rows 3, `cookie` and `maxJobs` for POST /accounts."""
    check_names(items, ("cookie", "maxJobs"))
    values = dict(items)
    cookie = _string(values, "cookie")
    if cookie is None or not cookie.strip():
        raise bad_request("cookie is required")
    jar = _parse_cookie(cookie)
    missing = [name for name in _COOKIE_FIELDS if not jar.get(name)]
    if missing:
        raise bad_request(f"Missing required cookie fields: {' | '.join(missing)}")
    max_jobs = _integer(values, "maxJobs", 1, 100, "maxJobs must be an integer between 1 and 100")
    return AccountParams(jar["lt_id"], jar["lt_token"], jar["lt_refresh_token"], max_jobs)


def _parse_cookie(cookie: str) -> dict[str, str]:
    jar: dict[str, str] = {}
    for part in cookie.split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            jar[name.strip()] = value.strip()
    return jar


# -- GET /assets/ (E23) -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListParams:
    """A valid asset-listing query."""

    email: object
    page: int
    limit: int
    filter: str | None


def parse_list_query(items: Items) -> ListParams:
    """Rows 3, `page`, `limit` and `filter` for GET /assets/."""
    check_names(items, _LIST_FIELDS)
    values = dict(items)
    page = _integer(values, "page", 1, 2**53, "page must be an integer ≥ 1")
    limit = _integer(values, "limit", 1, 100, "limit must be an integer between 1 and 100")
    return ListParams(
        email=_string_passthrough(values, "email"),
        page=1 if page is None else page,
        limit=20 if limit is None else limit,
        filter=_choice(values, "filter", LIST_FILTERS),
    )


# -- jobIds (E7, E21) -------------------------------------------------------------------------


def parse_job_id(value: str) -> tuple[str, str]:
    """The (email, id) inside a jobId; 400 `jobId <value> is malformed` otherwise."""
    match = _JOB_ID.fullmatch(value)
    if match is None:
        raise bad_request(f"jobId {value} is malformed")
    return match["email"].lower(), match["id"]
