"""The JSON bodies the API answers with (sections 2.1 to 2.7), built from state records.

Every body that contains a URL signs a fresh one (E41), so these functions take the signer,
the origin the client used, and the current time. Optional fields are left out rather
than sent as null (E22).
"""

from __future__ import annotations

from ltx_reconcile.emulator.assets import ARTIFACT_SUBTYPE, Asset, AssetKind
from ltx_reconcile.emulator.jobs import Job
from ltx_reconcile.emulator.state import StatusRead
from ltx_reconcile.emulator.storage import UrlSigner
from ltx_reconcile.emulator.timefmt import elapsed_mm_ss, iso_utc_ms, now_ms

__all__ = [
    "asset_item",
    "created_body",
    "scheduler_entry",
    "status_body",
    "upload_body",
]


def created_body(job: Job) -> dict[str, object]:
    """The job-created answer of images/create."""
    return {"jobId": job.job_id, "generationId": job.generation_id}


def status_body(read: StatusRead, signer: UrlSigner, origin: str, now: int) -> dict[str, object]:
    """The GET /assets/{jobId} model (2.2), also the webhook and pollForResult body."""
    status: dict[str, object] = {"type": str(read.phase.type), "progress": read.phase.progress}
    if read.phase.message is not None:
        status["message"] = read.phase.message
    if read.has_artifact:
        status["artifact"] = _artifact(read.job, signer, origin, now)
    body: dict[str, object] = {"status": status, "jobId": read.job.job_id}
    params = read.job.params
    if params.reply_ref is not None:
        body["replyRef"] = params.reply_ref
    if params.reply_url is not None:
        body["replyUrl"] = params.reply_url
    body["code"] = 200
    return body


def _artifact(job: Job, signer: UrlSigner, origin: str, now: int) -> dict[str, object]:
    path = f"artifacts/{ARTIFACT_SUBTYPE}/{job.file_uuid}.png"
    return {
        **signer.sign(origin, path, now).to_json(),
        "asset": {
            "type": "artifact",
            "fileId": f"asset:{job.file_uuid}-type:image/png",
            "mimeType": "image/png",
            "artifactSubtype": ARTIFACT_SUBTYPE,
        },
    }


def scheduler_entry(job: Job, now_s: float) -> dict[str, object]:
    """One GET /scheduler entry (2.6, E26)."""
    entry: dict[str, object] = {
        "jobId": job.job_id,
        "email": job.email,
        "started": iso_utc_ms(now_ms(job.accepted_s)),
        "elapsed": elapsed_mm_ss(now_s - job.accepted_s),
    }
    if job.params.reply_url is not None:
        entry["replyUrl"] = job.params.reply_url
    if job.params.reply_ref is not None:
        entry["replyRef"] = job.params.reply_ref
    return entry


def _signed_asset(asset: Asset, signer: UrlSigner, origin: str, now: int) -> dict[str, object]:
    described: dict[str, object] = {
        "type": "artifact" if asset.kind is AssetKind.ARTIFACT else "image",
        "fileId": asset.file_id,
        "mimeType": asset.mime_type,
    }
    if asset.kind is AssetKind.ARTIFACT:
        described["artifactSubtype"] = ARTIFACT_SUBTYPE
    return {**signer.sign(origin, asset.storage_path, now).to_json(), "asset": described}


def upload_body(asset: Asset, signer: UrlSigner, origin: str, now: int) -> dict[str, object]:
    """The POST /assets/ answer (2.4)."""
    return _signed_asset(asset, signer, origin, now)


def asset_item(asset: Asset, signer: UrlSigner, origin: str, now: int) -> dict[str, object]:
    """One GET /assets/ item (2.3); uploads carry no jobId (E23)."""
    thumbnail = {
        **signer.sign(origin, asset.thumbnail_path, now).to_json(),
        "asset": {
            "type": "image",
            "fileId": f"{asset.uuid}-thumbnail-large",
            "mimeType": "image/webp",
        },
    }
    item: dict[str, object] = {
        "id": asset.item_id,
        "signedAsset": _signed_asset(asset, signer, origin, now),
        "relatedAssets": {"thumbnails": {"large": thumbnail}},
    }
    if asset.job_id is not None:
        item["jobId"] = asset.job_id
    return item
