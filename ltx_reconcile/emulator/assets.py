"""Assets in an account's library: generated artifacts and uploads (2.3, 2.4, E23, E24)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from ltx_reconcile.emulator.images import ImageSpec

__all__ = ["ARTIFACT_SUBTYPE", "Asset", "AssetKind", "file_id_for"]

ARTIFACT_SUBTYPE: Final = "vertex-ai"


class AssetKind(StrEnum):
    """Where an asset came from."""

    ARTIFACT = "artifact"
    UPLOAD = "upload"


def file_id_for(uuid: str, mime_type: str) -> str:
    """`asset:<uuid>-type:<mime>` (E8)."""
    return f"asset:{uuid}-type:{mime_type}"


@dataclass(frozen=True, slots=True)
class Asset:
    """One stored file; its bytes never change once it exists (E41)."""

    uuid: str
    """The storage key: the UUID inside the fileId."""
    item_id: str
    """The listing's `id`: the job's UUID for artifacts, the file's UUID for uploads."""
    email: str
    mime_type: str
    kind: AssetKind
    created_ms: int
    seq: int
    """Creation order, to break ties between assets made in the same millisecond."""
    job_id: str | None = None
    upload_type: str | None = None
    image: ImageSpec | None = None
    """How to draw an artifact; uploads carry `content` instead."""
    content: bytes | None = field(default=None, repr=False)

    @property
    def file_id(self) -> str:
        """The asset's stable identity."""
        return file_id_for(self.uuid, self.mime_type)

    @property
    def storage_path(self) -> str:
        """Path of the bytes under the bucket (section 6)."""
        if self.kind is AssetKind.ARTIFACT:
            return f"artifacts/{ARTIFACT_SUBTYPE}/{self.uuid}.png"
        return f"artifacts/user-uploads/{self.uuid}"

    @property
    def thumbnail_path(self) -> str:
        """Path of the large WebP thumbnail under the bucket."""
        return f"images/{self.uuid}-thumbnail-large.webp"

    @property
    def category(self) -> str:
        """The listing filter this asset falls under."""
        for prefix, name in (("image/", "images"), ("video/", "videos"), ("audio/", "audio")):
            if self.mime_type.startswith(prefix):
                return name
        return "other"

    @property
    def is_reference_image(self) -> bool:
        """Usable as `referenceAssetId` (row 25): a generated image or a reference upload."""
        return self.kind is AssetKind.ARTIFACT or self.upload_type == "reference-image"
