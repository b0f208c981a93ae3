"""The asset library: listing (2.3, E23), uploads (2.4, E24) and signed storage URLs (6, E41)."""

from __future__ import annotations

import io
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import pytest
from PIL import Image

from ltx_reconcile.emulator.config import AccountConfig, FaultConfig, FaultKind, FaultRule
from testing.emulator import (
    TEST_TOKEN,
    api_client,
    auth_headers,
    fetch,
    running_emulator,
    tiny_image,
    wait_for_status,
    wait_until,
)

LONG_JOBS = {"flux": 20_000.0, "flux-premium": 20_000.0, "nano-banana": 20_000.0}
TWENTY_MIB = 20 * 1024 * 1024
UPLOAD_FILE_ID = re.compile(
    r"asset:([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})-type:(.+)"
)


def _create(client: httpx.Client, **fields: object) -> str:
    response = client.post("/images/create", json={"prompt": "a lighthouse", **fields})
    assert response.status_code == 200, response.text
    return str(response.json()["jobId"])


def _completed(client: httpx.Client, **fields: object) -> dict[str, Any]:
    return wait_for_status(client, _create(client, **fields))


def _upload(
    client: httpx.Client,
    content: bytes,
    mime: str | None = "image/png",
    **params: str,
) -> httpx.Response:
    headers = {"Content-Type": mime} if mime is not None else {}
    return client.post("/assets/", params=params, content=content, headers=headers)


def _list(client: httpx.Client, **params: str | int) -> dict[str, Any]:
    response = client.get("/assets/", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _meta(total: int, count: int, per_page: int, pages: int, page: int) -> dict[str, int]:
    return {
        "totalItems": total,
        "itemCount": count,
        "itemsPerPage": per_page,
        "totalPages": pages,
        "currentPage": page,
    }


# -- GET /assets/ -----------------------------------------------------------------------------


def test_the_listing_pages_newest_first_with_exact_meta(client):
    """E23: newest first across pages, `meta` right on every page and past the last."""
    # One at a time: jobs running side by side would finish in the order of their durations.
    job_ids = [str(_completed(client, seed=n)["jobId"]) for n in range(3)]
    uploads = [_upload(client, tiny_image()).json()["asset"]["fileId"] for _ in range(2)]
    pages = [_list(client, page=page, limit=2) for page in (1, 2, 3, 4)]
    listed = [item for page in pages for item in page["items"]]
    newest_first = [*reversed(uploads), *reversed(job_ids)]
    assert [i.get("jobId") or i["signedAsset"]["asset"]["fileId"] for i in listed] == newest_first
    assert [page["meta"] for page in pages] == [
        _meta(5, 2, 2, 3, 1),
        _meta(5, 2, 2, 3, 2),
        _meta(5, 1, 2, 3, 3),
        _meta(5, 0, 2, 3, 4),
    ]
    assert pages[3]["items"] == []


def test_an_empty_library_lists_nothing_with_default_paging(client):
    """2.3: page 1 and limit 20 by default; no items means no pages."""
    assert _list(client) == {"items": [], "meta": _meta(0, 0, 20, 0, 1)}


def test_generated_items_carry_their_job_and_uploads_carry_none(client):
    """E8, E23: an artifact's `id` is its job's UUID; an upload has an id but no jobId."""
    status = _completed(client)
    upload = _upload(client, tiny_image(), type="reference-image").json()
    generated, uploaded = reversed(_list(client)["items"])
    job_id = str(status["jobId"])
    artifact = status["status"]["artifact"]
    assert generated["jobId"] == job_id
    assert job_id == f"email:user@example.com:{generated['id']}-type:image"
    assert generated["signedAsset"]["asset"] == artifact["asset"]
    assert "jobId" not in uploaded
    assert uploaded["signedAsset"]["asset"] == upload["asset"]
    uuid = UPLOAD_FILE_ID.fullmatch(upload["asset"]["fileId"])
    assert uuid is not None
    assert uploaded["id"] == uuid[1]


def test_running_and_failed_jobs_are_not_listed():
    """E23: only completed generated images (and uploads) appear."""
    faults = FaultConfig(rules=(FaultRule(FaultKind.FAIL_JOB, reply_ref_contains="fails"),))
    with (
        running_emulator(faults=faults) as emulator,
        api_client(emulator) as client,
    ):
        failed = _create(client, replyRef="ltxr:fails")
        assert wait_for_status(client, failed)["status"]["type"] == "failed"
        emulator.state.faults.replace(FaultConfig())
    with (
        running_emulator(latency_median_s=LONG_JOBS) as emulator,
        api_client(emulator) as client,
    ):
        _create(client)
        assert client.get("/scheduler").json() != []
        assert _list(client)["items"] == []


@pytest.mark.parametrize(
    ("aspect_ratio", "size"), [("16:9", (512, 288)), ("9:16", (288, 512)), ("1:1", (512, 512))]
)
def test_thumbnails_are_webp_512_px_on_the_long_side(client, aspect_ratio, size):
    """E23: `relatedAssets.thumbnails.large` is a WebP of the artifact, 512 px long side."""
    _completed(client, aspectRatio=aspect_ratio)
    (item,) = _list(client)["items"]
    large = item["relatedAssets"]["thumbnails"]["large"]
    file_uuid = UPLOAD_FILE_ID.fullmatch(item["signedAsset"]["asset"]["fileId"])
    assert file_uuid is not None
    assert large["asset"] == {
        "type": "image",
        "fileId": f"{file_uuid[1]}-thumbnail-large",
        "mimeType": "image/webp",
    }
    assert "/storage/lt-infinity-prd/images/" in large["assetUrl"]
    assert re.fullmatch(r"\d{13}", large["expirationDateString"])
    thumbnail = fetch(large["assetUrl"])
    assert thumbnail.headers["content-type"] == "image/webp"
    with Image.open(io.BytesIO(thumbnail.content)) as picture:
        assert (picture.format, picture.size) == ("WEBP", size)


@pytest.mark.parametrize(
    ("content", "mime", "size"),
    [
        (tiny_image(size=(8, 4)), "image/png", (512, 256)),
        (b"%PDF-1.4", "application/pdf", (512, 512)),
    ],
    ids=["small picture grown", "not a picture"],
)
def test_an_uploads_thumbnail_is_512_px_too(client, content, mime, size):
    """E23: small pictures are grown to 512 px; other files get a 512 px placeholder tile."""
    _upload(client, content, mime)
    (item,) = _list(client)["items"]
    thumbnail = fetch(item["relatedAssets"]["thumbnails"]["large"]["assetUrl"])
    with Image.open(io.BytesIO(thumbnail.content)) as picture:
        assert (picture.format, picture.size) == ("WEBP", size)


def test_the_filter_selects_by_media_type(client):
    """2.3: images, videos, audio, other; no filter lists everything."""
    generated = _completed(client)["jobId"]
    kinds = {"video/mp4": "videos", "audio/mpeg": "audio", "application/pdf": "other"}
    by_filter = {name: _upload(client, b"\x00\x01", mime) for mime, name in kinds.items()}
    image_upload = _upload(client, tiny_image()).json()["asset"]["fileId"]

    def file_ids(**params: str) -> list[str]:
        items = _list(client, **params)["items"]
        return [i["signedAsset"]["asset"]["fileId"] for i in items]

    assert len(file_ids()) == 5
    images = file_ids(filter="images")
    assert images[0] == image_upload
    assert images[1].endswith("-type:image/png")
    assert len(images) == 2
    assert _list(client, filter="images")["items"][1]["jobId"] == generated
    for name, response in by_filter.items():
        assert file_ids(filter=name) == [response.json()["asset"]["fileId"]]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"page": "0"}, "page must be an integer ≥ 1"),
        ({"page": "-1"}, "page must be an integer ≥ 1"),
        ({"page": "one"}, "page must be an integer ≥ 1"),
        ({"page": "1.5"}, "page must be an integer ≥ 1"),
        ({"limit": "0"}, "limit must be an integer between 1 and 100"),
        ({"limit": "101"}, "limit must be an integer between 1 and 100"),
        ({"limit": "1e2"}, "limit must be an integer between 1 and 100"),
        ({"filter": "pictures"}, "filter must be one of: images, videos, audio, other"),
        ({"sort": "newest"}, "Unknown parameter: sort"),
        ({"email": "nobody@example.com"}, "Unable to locate account nobody@example.com"),
    ],
)
def test_listing_parameters_out_of_bounds_are_400(shared_client, params, message):
    """E23 and the shared rows of section 7: each bad query names its parameter."""
    response = shared_client.get("/assets/", params=params)
    assert (response.status_code, response.json()) == (400, {"error": message, "code": 400})


@pytest.mark.parametrize(
    "params",
    [
        {"page": "1", "limit": "1"},
        {"limit": "100"},
        {"page": "9999"},
        {"email": "USER@example.com"},
    ],
)
def test_listing_parameters_at_their_bounds_are_accepted(shared_client, params):
    """E23: page ≥ 1 (past the end is fine), limit 1 to 100, email in any case (E42)."""
    assert shared_client.get("/assets/", params=params).status_code == 200


def test_each_account_lists_only_its_own_assets_and_must_be_named():
    """1.5, E5: with two accounts, `email` picks the library and is required."""
    accounts = (AccountConfig("a@example.com"), AccountConfig("b@example.com"))
    with running_emulator(accounts=accounts) as emulator, api_client(emulator) as client:
        upload = _upload(client, tiny_image(), email="a@example.com").json()
        unnamed = client.get("/assets/")
        unnamed_upload = _upload(client, tiny_image())
        a_items = _list(client, email="a@example.com")["items"]
        b_items = _list(client, email="b@example.com")["items"]
    required = {"error": "email is required when more than one account is configured", "code": 400}
    assert unnamed.json() == required
    assert unnamed_upload.json() == required
    assert [i["signedAsset"]["asset"] for i in a_items] == [upload["asset"]]
    assert b_items == []


# -- POST /assets/ ----------------------------------------------------------------------------


@pytest.mark.parametrize(("mime", "image_format"), [("image/png", "PNG"), ("image/jpeg", "JPEG"), ("image/webp", "WEBP")])  # fmt: skip
def test_a_reference_upload_answers_a_signed_asset_of_its_bytes(client, mime, image_format):
    """2.4, E24: the answer's shape, a fresh fileId, and storage serving the same bytes."""
    content = tiny_image(image_format)
    response = _upload(client, content, mime, type="reference-image")
    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"assetUrl", "expirationDateString", "asset"}
    assert set(body["asset"]) == {"type", "fileId", "mimeType"}
    assert (body["asset"]["type"], body["asset"]["mimeType"]) == ("image", mime)
    match = UPLOAD_FILE_ID.fullmatch(body["asset"]["fileId"])
    assert match is not None
    assert match[2] == mime
    assert "/storage/lt-infinity-prd/artifacts/user-uploads/" in body["assetUrl"]
    stored = fetch(body["assetUrl"])
    assert (stored.content, stored.headers["content-type"]) == (content, mime)
    created = client.post(
        "/images/create", json={"prompt": "p", "referenceAssetId": body["asset"]["fileId"]}
    )
    assert created.status_code == 200


def test_type_image_takes_any_content_type_and_any_bytes(client):
    """E24: `type=image` (the default) checks nothing but the size."""
    for params in ({}, {"type": "image"}):
        response = _upload(client, b"\x00binary", "application/octet-stream", **params)
        assert response.status_code == 200
        assert response.json()["asset"]["fileId"].endswith("-type:application/octet-stream")


def test_the_same_bytes_uploaded_twice_are_two_assets_and_free(emulator, client):
    """E24: never de-duplicated; E40: uploads cost nothing."""
    first, second = (_upload(client, tiny_image()).json() for _ in range(2))
    balance = client.get("/accounts/user@example.com").json()["balance"]
    assert first["asset"]["fileId"] != second["asset"]["fileId"]
    assert len(_list(client)["items"]) == 2
    assert emulator.ledger() == []
    assert balance == {"LTXStudio_token": 10_000}


def test_an_upload_of_exactly_20_mib_is_accepted(client):
    """E24: 1 byte to 20 MiB inclusive."""
    assert _upload(client, b"\x00" * TWENTY_MIB, "application/octet-stream").status_code == 200
    assert _upload(client, b"\x00", "application/octet-stream").status_code == 200


@pytest.mark.parametrize(
    ("params", "mime", "content", "message"),
    [
        ({}, None, tiny_image(), "Content-Type header is required"),
        ({"type": "reference-image"}, "image/gif", tiny_image("GIF"), "Unsupported Content-Type image/gif for type=reference-image"),
        ({"type": "reference-image"}, "application/pdf", b"%PDF", "Unsupported Content-Type application/pdf for type=reference-image"),
        ({}, "image/png", b"", "Request body is empty"),
        ({"type": "reference-image"}, "image/png", b"", "Request body is empty"),
        ({}, "application/octet-stream", b"\x00" * (TWENTY_MIB + 1), "File exceeds 20 MiB"),
        ({"type": "reference-image"}, "image/png", b"not a png", "File is not a valid image/png image"),
        ({"type": "reference-image"}, "image/jpeg", tiny_image("PNG"), "File is not a valid image/jpeg image"),
        ({"type": "reference-image"}, "image/webp", tiny_image("PNG")[:40], "File is not a valid image/webp image"),
        ({"type": "video"}, "image/png", tiny_image(), "type must be one of: image, reference-image"),
        ({"name": "x.png"}, "image/png", tiny_image(), "Unknown parameter: name"),
        ({"email": "nobody@example.com"}, "image/png", tiny_image(), "Unable to locate account nobody@example.com"),
    ],
    ids=[
        "no content type",
        "gif as reference",
        "pdf as reference",
        "empty image",
        "empty reference",
        "over 20 MiB",
        "not a png",
        "png declared jpeg",
        "png declared webp",
        "type enum",
        "unknown parameter",
        "unknown account",
    ],
)  # fmt: skip
def test_each_upload_rule_has_its_exact_400(
    shared_emulator, shared_client, params, mime, content, message
):
    """E24: every rule's message, and nothing stored."""
    before = len(shared_emulator.state.list_assets("user@example.com", None, 1, 100).items)
    response = _upload(shared_client, content, mime, **params)
    after = len(shared_emulator.state.list_assets("user@example.com", None, 1, 100).items)
    assert (response.status_code, response.json()) == (400, {"error": message, "code": 400})
    assert after == before


# -- storage URLs (E41) -----------------------------------------------------------------------


def _artifact_url(client: httpx.Client) -> str:
    return str(_completed(client)["status"]["artifact"]["assetUrl"])


def test_storage_urls_are_signed_in_the_gcs_style(client):
    """E41: `X-Goog-Expires` (the scaled url_ttl) and a hex `X-Goog-Signature`."""
    status = _completed(client)
    artifact = status["status"]["artifact"]
    url = urlsplit(artifact["assetUrl"])
    query = {name: values[0] for name, values in parse_qs(url.query).items()}
    assert re.fullmatch(
        r"/storage/lt-infinity-prd/artifacts/vertex-ai/[0-9a-f-]{36}\.png", url.path
    )
    assert query["X-Goog-Expires"] == "3.6"  # 3600 s at time_scale 0.001
    assert re.fullmatch(r"[0-9a-f]{64}", query["X-Goog-Signature"])
    assert int(artifact["expirationDateString"]) == int(query["X-Goog-Date"]) + 3600


def test_a_tampered_or_unsigned_url_is_refused_as_expired(client):
    """E41: a bad signature, a stretched expiry or no query at all is 403 `Request has expired`."""
    url = urlsplit(_artifact_url(client))
    query = {name: values[0] for name, values in parse_qs(url.query).items()}

    def with_query(**changes: str) -> str:
        changed = "&".join(f"{k}={v}" for k, v in {**query, **changes}.items())
        return urlunsplit(url._replace(query=changed))

    for bad in (
        with_query(**{"X-Goog-Signature": "0" * 64}),
        with_query(**{"X-Goog-Expires": "999999"}),
        urlunsplit(url._replace(query="")),
    ):
        refused = fetch(bad)
        assert (refused.status_code, refused.text) == (403, "Request has expired")
    assert fetch(urlunsplit(url)).status_code == 200


def test_an_expired_url_is_403_and_a_fresh_read_signs_a_working_one():
    """E41: past `url_ttl` the URL is refused; every status read signs a new one."""
    with running_emulator(url_ttl_s=300.0) as emulator, api_client(emulator) as client:  # 0.3 s
        job_id = _create(client)
        old_url = wait_for_status(client, job_id)["status"]["artifact"]["assetUrl"]

        def refused() -> httpx.Response | None:
            response = fetch(old_url)
            return response if response.status_code == 403 else None

        expired = wait_until(refused)
        fresh = client.get(f"/assets/{job_id}").json()["status"]["artifact"]["assetUrl"]
        again = fetch(fresh)
    assert expired.text == "Request has expired"
    assert expired.headers["content-type"].startswith("text/plain")
    assert again.status_code == 200


def test_an_authorization_header_on_storage_is_400_even_on_a_valid_url(client):
    """E41 token-leak guard: storage refuses any Authorization header, checked first."""
    url = _artifact_url(client)
    refused = fetch(url, headers=auth_headers())
    garbage = fetch(url + "x", headers={"Authorization": "Bearer x"})
    assert (refused.status_code, refused.text) == (
        400,
        "Authorization header must not be sent to storage URLs",
    )
    assert TEST_TOKEN not in refused.text
    assert garbage.status_code == 400
    assert fetch(url).status_code == 200


def test_artifact_bytes_never_change_whichever_url_signs_them(client):
    """E41: two status reads give two URLs for one immutable object."""
    job_id = _create(client)
    first = wait_for_status(client, job_id)["status"]["artifact"]["assetUrl"]
    second = client.get(f"/assets/{job_id}").json()["status"]["artifact"]["assetUrl"]
    one, two = fetch(first), fetch(second)
    assert one.content == two.content
    assert one.headers["content-length"] == str(len(one.content))
