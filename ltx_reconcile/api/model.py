"""The LTX Studio API's wire format (contract `shared/api/ltxstudio-v1.md`), as pydantic models.

This module owns the shape of every request ltx-reconcile sends and every response it reads;
it does no I/O. Request models forbid unknown fields, so a typo fails here instead of
reaching the API (which, against the real service, might drop the field and still charge).
Response models ignore fields they do not know and default every optional one, because
every documented response model says "all fields are optional" (contract 1.4).

Request models fix names and types only. Ranges and lengths (prompt length, seed range,
model capabilities) are left to the API, which is their authority: its 400 message then
reaches the user verbatim through `RejectedError`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from pydantic.alias_generators import to_camel

__all__ = [
    "EXPIRY_MARGIN_MS",
    "Account",
    "AccountCapacity",
    "ApiErrorBody",
    "AspectRatio",
    "Asset",
    "AssetFilter",
    "AssetList",
    "AssetListItem",
    "AssetListMeta",
    "Balance",
    "CreateImageRequest",
    "ImageModel",
    "JobCreated",
    "JobState",
    "JobStatus",
    "RelatedAssets",
    "SchedulerAvailable",
    "SchedulerEntry",
    "ShotAngle",
    "SignedAsset",
    "Style",
    "Thumbnails",
    "UploadType",
]

EXPIRY_MARGIN_MS: Final = 30_000
"""Treat a signed URL as expired this long before its stated expiry (contract 6)."""

ImageModel = Literal["flux", "flux-premium", "nano-banana"]
AspectRatio = Literal["16:9", "9:16", "1:1"]
Style = Literal[
    "base",
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
]
ShotAngle = Literal["eye-level", "low-angle", "over-the-shoulder", "overhead", "birds-eye-view"]
AssetFilter = Literal["images", "videos", "audio", "other"]
UploadType = Literal["image", "reference-image"]


class CreateImageRequest(BaseModel):
    """The body of `POST /images/create` (contract 2.1).

    `email` is required here although the API makes it optional: with several accounts
    the contract's pages disagree on what an omitted email means (1.5), and sending it
    is right under both readings.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
    )

    email: StrictStr
    prompt: StrictStr
    location: StrictStr | None = None
    weather: StrictStr | None = None
    lighting: StrictStr | None = None
    aspect_ratio: AspectRatio | None = None
    reference_asset_id: StrictStr | None = None
    # The one snake_case name on the wire (contract 1.4); the generator would camelCase it.
    reference_strength: StrictInt | None = Field(default=None, alias="reference_strength")
    style: Style | None = None
    shot_type: StrictStr | None = None
    shot_angle: ShotAngle | None = None
    seed: StrictInt | None = None
    model: ImageModel | None = None
    poll_for_result: StrictInt | None = None
    max_jobs: StrictInt | None = None
    reply_url: StrictStr | None = None
    reply_ref: StrictStr | None = None

    def to_wire(self) -> dict[str, Any]:
        """Return the JSON body: wire names, unset fields left out (the API's defaults apply)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class _Response(BaseModel):
    """Base of every response model: tolerant of unknown fields, immutable once read."""

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        alias_generator=to_camel,
        populate_by_name=True,
    )


class ApiErrorBody(_Response):
    """The error shape `{error, code}`; uploads may pass LTX Studio's `message`/`statusCode`."""

    error: str | None = None
    code: int | None = None
    message: str | None = None
    status_code: int | None = None

    @property
    def text(self) -> str | None:
        """The most specific message the body carries, if any."""
        return self.error or self.message


class Asset(_Response):
    """What a signed URL points at; `file_id` is its stable identity (contract 6)."""

    type: str | None = None
    file_id: str | None = None
    mime_type: str | None = None
    artifact_subtype: str | None = None


class SignedAsset(_Response):
    """A pre-signed storage URL with its expiry; also the whole body of an upload (2.4)."""

    asset_url: str | None = None
    expiration_ms: int | None = Field(default=None, alias="expirationDateString")
    """`expirationDateString` parsed: ms since the Unix epoch (contract 6)."""
    asset: Asset | None = None

    @property
    def file_id(self) -> str | None:
        """The asset's `fileId`, e.g. for `referenceAssetId`."""
        return self.asset.file_id if self.asset is not None else None

    def is_expired(self, now_ms: int, *, margin_ms: int = EXPIRY_MARGIN_MS) -> bool:
        """Whether the URL is missing or expires within `margin_ms` of `now_ms`.

        An unknown expiry counts as valid: the storage answers 4xx when it is not, and
        the caller refreshes then (contract 6).
        """
        if self.asset_url is None:
            return True
        return self.expiration_ms is not None and now_ms + margin_ms >= self.expiration_ms


class JobState(_Response):
    """`status` of a job: its lifecycle state, progress, failure reason and artifact."""

    type: Literal["active", "completed", "failed"]
    progress: int | None = None
    message: str | None = None
    artifact: SignedAsset | None = None


class JobStatus(_Response):
    """The body of `GET /assets/{jobId}`, of a finished pollForResult create, and of webhooks."""

    status: JobState
    job_id: str | None = None
    reply_ref: str | None = None
    reply_url: str | None = None
    code: int | None = None

    @property
    def is_done(self) -> bool:
        """Completed with a download URL; `completed` alone can precede the URL (contract 2.2)."""
        artifact = self.status.artifact
        return (
            self.status.type == "completed"
            and artifact is not None
            and artifact.asset_url is not None
        )

    @property
    def is_failed(self) -> bool:
        """The job ended without an image (and, in the emulator, was refunded)."""
        return self.status.type == "failed"

    @property
    def artifact(self) -> SignedAsset | None:
        """The artifact's signed URL, once there is one."""
        return self.status.artifact


class JobCreated(_Response):
    """The body of an accepted create without a finished pollForResult (contract 2.1, E16)."""

    job_id: str
    generation_id: str | None = None


class Thumbnails(_Response):
    """Thumbnails of a listed asset."""

    large: SignedAsset | None = None


class RelatedAssets(_Response):
    """Assets derived from a listed asset."""

    thumbnails: Thumbnails | None = None


class AssetListItem(_Response):
    """One asset of the library; generated images carry their `jobId`, uploads do not."""

    id: str | None = None
    job_id: str | None = None
    signed_asset: SignedAsset | None = None
    related_assets: RelatedAssets | None = None


class AssetListMeta(_Response):
    """Paging figures of a listing."""

    total_items: int = 0
    item_count: int = 0
    items_per_page: int = 0
    total_pages: int = 0
    current_page: int = 0


class AssetList(_Response):
    """One page of `GET /assets/` (contract 2.3)."""

    items: list[AssetListItem] = Field(default_factory=list)
    meta: AssetListMeta = Field(default_factory=AssetListMeta)


class SchedulerEntry(_Response):
    """A job the API is executing now, with the `replyRef` it was created with (2.6)."""

    job_id: str | None = None
    email: str | None = None
    started: datetime | None = None
    elapsed: str | None = None
    """`MM:SS`; minutes may pass 59."""
    reply_url: str | None = None
    reply_ref: str | None = None


class AccountCapacity(_Response):
    """Free job slots of one account (contract 2.7)."""

    email: str | None = None
    max_jobs: int | None = None
    executing: int | None = None
    available: int | None = None


class SchedulerAvailable(_Response):
    """The body of `GET /scheduler/available`."""

    executing: list[SchedulerEntry] = Field(default_factory=list)
    available: list[AccountCapacity] = Field(default_factory=list)

    def capacity_for(self, email: str) -> AccountCapacity | None:
        """The capacity of `email`'s account (compared case-insensitively), if listed."""
        wanted = email.casefold()
        return next(
            (c for c in self.available if c.email is not None and c.email.casefold() == wanted),
            None,
        )


class Balance(_Response):
    """Credit balances by service."""

    ltx_studio_token: int | None = Field(default=None, alias="LTXStudio_token")


class Account(_Response):
    """The body of `GET /accounts/{email}`; the cookie (masked anyway) is not read."""

    email: str | None = None
    max_jobs: int | None = None
    updated_utc: str | None = Field(default=None, alias="updatedUTC")
    token_expire_utc: str | None = Field(default=None, alias="tokenExpireUTC")
    balance: Balance | None = None

    @property
    def credits(self) -> int | None:
        """The LTX Studio credit balance (`balance.LTXStudio_token`), when reported."""
        return self.balance.ltx_studio_token if self.balance is not None else None
