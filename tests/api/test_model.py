"""The wire models read the contract's own example bodies and write the documented names."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ltx_reconcile.api.model import (
    Account,
    AssetList,
    CreateImageRequest,
    JobCreated,
    JobStatus,
    SchedulerAvailable,
    SchedulerEntry,
    SignedAsset,
)

JOB_ID = "email:user@example.com:7a34b821-9fd0-205e-d21b-4abc6f7839e7-type:image"

COMPLETED_BODY = """
{
  "status": {
    "type": "completed",
    "progress": 100,
    "artifact": {
      "assetUrl": "https://storage.googleapis.com/lt-infinity-prd/artifacts/vertex-ai/x",
      "expirationDateString": "1759762931412",
      "asset": {
        "type": "artifact",
        "fileId": "asset:4c29-type:image/png",
        "mimeType": "image/png",
        "artifactSubtype": "vertex-ai"
      }
    }
  },
  "jobId": "email:user@example.com:7a34b821-9fd0-205e-d21b-4abc6f7839e7-type:image",
  "replyRef": "custom-reference-123",
  "replyUrl": "https://webhook.example.com/ltx-callback",
  "code": 200
}
"""


def test_contract_example_create_request_is_written_with_the_documented_names():
    """The contract's example request round-trips: camelCase names, snake_case reference_strength."""
    request = CreateImageRequest(
        email="user@example.com",
        prompt="A serene mountain landscape at sunset",
        aspect_ratio="16:9",
        style="cinematic",
        shot_type="wide shot",
        shot_angle="eye-level",
        seed=123456,
        reply_ref="ltxr:0b6c4a4e-3f7e-4f3a-9d0e-5a1f2b3c4d5e",
        reference_asset_id="asset:1-type:image/png",
        reference_strength=70,
        poll_for_result=3,
        max_jobs=2,
        reply_url="https://webhook.example.com/x",
    )
    assert request.to_wire() == {
        "email": "user@example.com",
        "prompt": "A serene mountain landscape at sunset",
        "aspectRatio": "16:9",
        "style": "cinematic",
        "shotType": "wide shot",
        "shotAngle": "eye-level",
        "seed": 123456,
        "replyRef": "ltxr:0b6c4a4e-3f7e-4f3a-9d0e-5a1f2b3c4d5e",
        "referenceAssetId": "asset:1-type:image/png",
        "reference_strength": 70,
        "pollForResult": 3,
        "maxJobs": 2,
        "replyUrl": "https://webhook.example.com/x",
    }


def test_unset_request_fields_are_left_out_so_the_api_defaults_apply():
    """Only the email and prompt go on the wire when nothing else is set."""
    request = CreateImageRequest(email="a@b.test", prompt="p")
    assert request.to_wire() == {"email": "a@b.test", "prompt": "p"}


def test_request_model_accepts_wire_names_too():
    """A request can be built from the wire spelling, e.g. from a saved body."""
    request = CreateImageRequest.model_validate(
        {"email": "a@b.test", "prompt": "p", "aspectRatio": "1:1", "reference_strength": 5}
    )
    assert (request.aspect_ratio, request.reference_strength) == ("1:1", 5)


@pytest.mark.parametrize(
    "extra",
    [
        {"referenceStrength": 5},
        {"promt": "typo"},
        {"seed": "12"},
        {"seed": 1.5},
        {"seed": True},
        {"style": "noir"},
        {"aspectRatio": "4:3"},
        {"model": "flux-pro"},
        {"shotAngle": "sideways"},
    ],
)
def test_request_model_refuses_unknown_fields_and_wrong_types(extra):
    """A typo or a wrong type fails before anything is sent (and possibly paid for)."""
    with pytest.raises(ValidationError):
        CreateImageRequest.model_validate({"email": "a@b.test", "prompt": "p", **extra})


def test_request_model_requires_the_email():
    """ltx-reconcile always sends email: it is right whichever reading of 1.5 holds."""
    with pytest.raises(ValidationError, match="email"):
        CreateImageRequest.model_validate({"prompt": "p"})


def test_completed_example_is_done_and_its_expiry_is_parsed_as_milliseconds():
    """The contract's completed body: done, URL present, expiry an int of ms."""
    status = JobStatus.model_validate_json(COMPLETED_BODY)
    assert status.is_done
    assert not status.is_failed
    assert status.artifact is not None
    assert status.artifact.expiration_ms == 1759762931412
    assert status.artifact.file_id == "asset:4c29-type:image/png"
    assert (status.job_id, status.reply_ref, status.code) == (JOB_ID, "custom-reference-123", 200)


def test_completed_without_asset_url_is_not_done():
    """`completed` can precede the URL (contract 2.2); that is not done."""
    status = JobStatus.model_validate_json(
        '{"status": {"type": "completed", "progress": 100}, "jobId": "j", "code": 200}'
    )
    assert not status.is_done
    assert not status.is_failed


def test_completed_with_an_artifact_but_no_url_is_not_done():
    """An artifact object without assetUrl is still not done."""
    status = JobStatus.model_validate_json(
        '{"status": {"type": "completed", "artifact": {"expirationDateString": "1"}}}'
    )
    assert not status.is_done


def test_active_and_failed_examples_parse():
    """The contract's active and failed bodies parse, keeping progress and message."""
    active = JobStatus.model_validate_json(
        '{ "status": { "type": "active", "progress": 40 }, "jobId": "j", "replyRef": "r", "code": 200 }'
    )
    failed = JobStatus.model_validate_json(
        '{ "status": { "type": "failed", "progress": 60, "message": "Generation failed: the model'
        ' returned no image" }, "jobId": "j", "code": 200 }'
    )
    assert (active.status.type, active.status.progress, active.is_done) == ("active", 40, False)
    assert failed.is_failed
    assert failed.status.message == "Generation failed: the model returned no image"


def test_response_models_ignore_unknown_fields_and_tolerate_missing_ones():
    """Every documented field is optional and the server may add new ones (contract 1.4)."""
    status = JobStatus.model_validate_json('{"status": {"type": "active", "eta": 3}, "new": 1}')
    assert status.job_id is None
    assert status.status.progress is None
    assert AssetList.model_validate_json("{}").items == []
    assert Account.model_validate_json('{"surprise": true}').credits is None


def test_job_created_example_parses():
    """The create answer without polling carries jobId and generationId."""
    created = JobCreated.model_validate_json(
        f'{{"jobId": "{JOB_ID}", "generationId": "gen_abc123def456"}}'
    )
    assert (created.job_id, created.generation_id) == (JOB_ID, "gen_abc123def456")


def test_job_ids_are_opaque_even_with_non_hex_uuids():
    """The docs' own example jobIds hold a `g` in the UUID; nothing validates them."""
    odd = "email:user@example.com:8b45c932-0ae1-316f-e32c-5bcd7g8940f8-type:image"
    assert JobCreated.model_validate({"jobId": odd}).job_id == odd


def test_asset_list_example_parses_with_meta_and_thumbnails():
    """The contract's listing example: item, jobId, signed asset, thumbnail and meta."""
    listing = AssetList.model_validate_json(
        """
        {"items": [{"id": "7a34b821-9fd0-205e-d21b-4abc6f7839e7",
          "signedAsset": {"assetUrl": "https://s/x", "expirationDateString": "1759762931412",
            "asset": {"type": "artifact", "fileId": "asset:4c29-type:image/png",
                      "mimeType": "image/png", "artifactSubtype": "vertex-ai"}},
          "relatedAssets": {"thumbnails": {"large": {"assetUrl": "https://s/t",
            "expirationDateString": "1759762931450",
            "asset": {"type": "image", "fileId": "4c29-thumbnail-large", "mimeType": "image/webp"}}}},
          "jobId": "email:user@example.com:7a34b821-9fd0-205e-d21b-4abc6f7839e7-type:image"}],
         "meta": {"totalItems": 329, "itemCount": 1, "itemsPerPage": 20, "totalPages": 17,
                  "currentPage": 1}}
        """
    )
    item = listing.items[0]
    assert item.job_id == JOB_ID
    assert item.signed_asset is not None
    assert item.signed_asset.file_id == "asset:4c29-type:image/png"
    assert item.related_assets is not None
    assert item.related_assets.thumbnails is not None
    assert item.related_assets.thumbnails.large is not None
    assert item.related_assets.thumbnails.large.expiration_ms == 1759762931450
    assert (listing.meta.total_pages, listing.meta.current_page, listing.meta.total_items) == (
        17,
        1,
        329,
    )


def test_upload_example_parses_and_exposes_the_file_id():
    """The upload answer is a signed asset whose fileId becomes referenceAssetId."""
    uploaded = SignedAsset.model_validate_json(
        '{"assetUrl": "https://s/u", "expirationDateString": "1759762931412",'
        ' "asset": {"type": "image", "fileId": "asset:3b18-type:image/png", "mimeType": "image/png"}}'
    )
    assert uploaded.file_id == "asset:3b18-type:image/png"


def test_signed_url_counts_as_expired_thirty_seconds_early():
    """Contract 6: treat the URL as expired a 30 s margin before its stated expiry."""
    signed = SignedAsset(asset_url="https://s/x", expiration_ms=1_000_000)
    assert not signed.is_expired(1_000_000 - 30_001)
    assert signed.is_expired(1_000_000 - 30_000)
    assert signed.is_expired(1_000_000 + 1)
    assert SignedAsset(expiration_ms=10**15).is_expired(0)
    assert not SignedAsset(asset_url="https://s/x").is_expired(10**15)


def test_scheduler_examples_parse():
    """Both scheduler bodies parse; capacity is looked up case-insensitively."""
    entry = SchedulerEntry.model_validate_json(
        '{"jobId": "j", "email": "user@example.com", "started": "2025-06-03T12:34:56.789Z",'
        ' "elapsed": "03:45", "replyUrl": "https://example.com/webhook", "replyRef": "reference-id"}'
    )
    assert entry.started is not None
    assert entry.started.year == 2025
    assert (entry.reply_ref, entry.elapsed) == ("reference-id", "03:45")
    available = SchedulerAvailable.model_validate_json(
        '{"executing": [], "available": ['
        '{"email": "user@example.com", "maxJobs": 5, "executing": 1, "available": 4},'
        '{"email": "other@example.com", "maxJobs": 3, "executing": 0, "available": 3}]}'
    )
    capacity = available.capacity_for("USER@example.com")
    assert capacity is not None
    assert (capacity.max_jobs, capacity.executing, capacity.available) == (5, 1, 4)
    assert available.capacity_for("nobody@example.com") is None


def test_account_example_exposes_the_credit_balance():
    """`balance.LTXStudio_token` is the account's credits."""
    account = Account.model_validate_json(
        '{"email": "user@example.com", "cookie": {"lt_id": "user123", "lt_token": "…secured…"},'
        ' "maxJobs": 20, "updatedUTC": "2025-06-03T12:13:14.000Z",'
        ' "tokenExpireUTC": "2025-07-03T12:13:14.000Z", "balance": {"LTXStudio_token": 150},'
        ' "latestCreatedAtMs": {"LTXStudio_token": 1717401194000}}'
    )
    assert (account.credits, account.max_jobs) == (150, 20)
    assert account.token_expire_utc == "2025-07-03T12:13:14.000Z"
