"""Section 7: every validation row, its exact message, and the order of the checks (E20)."""

from __future__ import annotations

import httpx
import pytest

from ltx_reconcile.emulator.config import AccountConfig
from ltx_reconcile.emulator.server import RunningEmulator
from testing.emulator import (
    LOOPBACK_TLS,
    api_client,
    running_emulator,
    tiny_image,
    wait_for_status,
)

STYLES = (
    "cinematic, vintage, low_key, indy, y2k, pop, grunge, dreamy, hand_drawn, 2d_novel, "
    "boost, scribble, film_noir, anime, 3d_cartoon, colored"
)
ANGLES = "eye-level, low-angle, over-the-shoulder, overhead, birds-eye-view"
SEED_MESSAGE = "seed must be an integer between 0 and 4294967295"
STRENGTH_MESSAGE = "reference_strength must be an integer between 0 and 100"
URL_MESSAGE = "replyUrl must be an absolute http or https URL of at most 2048 characters"

REJECTED: list[tuple[str, dict[str, object], str]] = [
    ("unknown name", {"prompt": "p", "negativePrompt": "x"}, "Unknown parameter: negativePrompt"),
    ("reference 2", {"prompt": "p", "referenceAssetId2": "a"}, "referenceAssetId2 is not supported by images/create"),
    ("reference 3", {"prompt": "p", "referenceAssetId3": "a"}, "referenceAssetId3 is not supported by images/create"),
    ("model enum", {"prompt": "p", "model": "sdxl"}, "model must be one of: flux, flux-premium, nano-banana"),
    ("model type", {"prompt": "p", "model": 3}, "model must be a string"),
    ("prompt missing", {}, "prompt is required"),
    ("prompt null", {"prompt": None}, "prompt is required"),
    ("prompt empty", {"prompt": ""}, "prompt is required"),
    ("prompt blank", {"prompt": " \t\n"}, "prompt is required"),
    ("prompt type", {"prompt": ["a"]}, "prompt must be a string"),
    ("prompt 2001", {"prompt": "x" * 2001}, "prompt must be at most 2000 characters"),
    ("prompt 1001 emoji", {"prompt": "\U0001f600" * 1001}, "prompt must be at most 2000 characters"),
    ("location", {"prompt": "p", "location": "x" * 2001}, "location must be at most 2000 characters"),
    ("weather", {"prompt": "p", "weather": "x" * 2001}, "weather must be at most 2000 characters"),
    ("lighting", {"prompt": "p", "lighting": "x" * 2001}, "lighting must be at most 2000 characters"),
    ("lighting type", {"prompt": "p", "lighting": 5}, "lighting must be a string"),
    ("aspect ratio", {"prompt": "p", "aspectRatio": "4:3"}, "aspectRatio must be one of: 16:9, 9:16, 1:1"),
    ("reference on premium", {"prompt": "p", "model": "flux-premium", "referenceAssetId": "a"}, "referenceAssetId is not supported by model flux-premium"),
    ("reference on banana", {"prompt": "p", "model": "nano-banana", "referenceAssetId": "a"}, "referenceAssetId is not supported by model nano-banana"),
    ("strength on banana", {"prompt": "p", "model": "nano-banana", "reference_strength": 10}, "reference_strength is not supported by model nano-banana"),
    ("strength 101", {"prompt": "p", "reference_strength": 101}, STRENGTH_MESSAGE),
    ("strength -1", {"prompt": "p", "reference_strength": -1}, STRENGTH_MESSAGE),
    ("strength fraction", {"prompt": "p", "reference_strength": 1.5}, STRENGTH_MESSAGE),
    ("strength bool", {"prompt": "p", "reference_strength": True}, STRENGTH_MESSAGE),
    ("strength text", {"prompt": "p", "reference_strength": "ten"}, STRENGTH_MESSAGE),
    ("style on premium", {"prompt": "p", "model": "flux-premium", "style": "anime"}, "style is not supported by model flux-premium"),
    ("style enum", {"prompt": "p", "style": "baroque"}, f"style must be one of: {STYLES}"),
    ("shot type", {"prompt": "p", "shotType": "x" * 2001}, "shotType must be at most 2000 characters"),
    ("shot angle", {"prompt": "p", "shotAngle": "sideways"}, f"shotAngle must be one of: {ANGLES}"),
    ("seed negative", {"prompt": "p", "seed": -1}, SEED_MESSAGE),
    ("seed too big", {"prompt": "p", "seed": 4294967296}, SEED_MESSAGE),
    ("seed exponent", {"prompt": "p", "seed": "1e3"}, SEED_MESSAGE),
    ("seed float", {"prompt": "p", "seed": 2.0}, SEED_MESSAGE),
    ("seed negative text", {"prompt": "p", "seed": "-5"}, SEED_MESSAGE),
    ("poll 0", {"prompt": "p", "pollForResult": 0}, "pollForResult must be an integer between 1 and 20"),
    ("poll 21", {"prompt": "p", "pollForResult": 21}, "pollForResult must be an integer between 1 and 20"),
    ("maxJobs 0", {"prompt": "p", "maxJobs": 0}, "maxJobs must be an integer between 1 and 100"),
    ("maxJobs 101", {"prompt": "p", "maxJobs": 101}, "maxJobs must be an integer between 1 and 100"),
    ("replyUrl scheme", {"prompt": "p", "replyUrl": "ftp://example.com/x"}, URL_MESSAGE),
    ("replyUrl relative", {"prompt": "p", "replyUrl": "/callback"}, URL_MESSAGE),
    ("replyUrl long", {"prompt": "p", "replyUrl": "https://e.com/" + "x" * 2040}, URL_MESSAGE),
    ("replyRef long", {"prompt": "p", "replyRef": "r" * 1025}, "replyRef must be a string of at most 1024 characters"),
    ("replyRef type", {"prompt": "p", "replyRef": 7}, "replyRef must be a string"),
    ("email type", {"prompt": "p", "email": 7}, "email must be a string"),
    ("email unknown", {"prompt": "p", "email": "nobody@example.com"}, "Unable to locate account nobody@example.com"),
    ("reference unknown", {"prompt": "p", "referenceAssetId": "asset:nope-type:image/png"}, "referenceAssetId asset:nope-type:image/png not found for account user@example.com"),
]  # fmt: skip

ACCEPTED: list[tuple[str, dict[str, object]]] = [
    ("minimal", {"prompt": "p"}),
    ("prompt 2000", {"prompt": "x" * 2000}),
    ("prompt 1000 emoji", {"prompt": "\U0001f600" * 1000}),
    ("empty optional", {"prompt": "p", "location": "", "style": None, "seed": ""}),
    ("every text field", {"prompt": "p", "location": "l", "weather": "w", "lighting": "x" * 2000, "shotType": "close-up"}),
    ("portrait", {"prompt": "p", "aspectRatio": "9:16"}),
    ("square", {"prompt": "p", "aspectRatio": "1:1"}),
    ("premium", {"prompt": "p", "model": "flux-premium"}),
    ("banana with base style", {"prompt": "p", "model": "nano-banana", "style": "base"}),
    ("every style", {"prompt": "p", "style": "3d_cartoon"}),
    ("strength without reference", {"prompt": "p", "reference_strength": 0}),
    ("strength as text", {"prompt": "p", "reference_strength": "100"}),
    ("shot angle", {"prompt": "p", "shotAngle": "birds-eye-view"}),
    ("seed bounds", {"prompt": "p", "seed": 4294967295}),
    ("seed zero text", {"prompt": "p", "seed": "0"}),
    ("maxJobs bounds", {"prompt": "p", "maxJobs": "100"}),
    ("poll as text", {"prompt": "p", "pollForResult": "1"}),
    ("email in upper case", {"prompt": "p", "email": "USER@Example.com"}),
    ("reply fields", {"prompt": "p", "replyUrl": "http://127.0.0.1:9/cb", "replyRef": "r" * 1024}),
]  # fmt: skip


STRING_FIELDS = (
    "email",
    "prompt",
    "location",
    "weather",
    "lighting",
    "aspectRatio",
    "referenceAssetId",
    "style",
    "shotType",
    "shotAngle",
    "model",
    "replyUrl",
    "replyRef",
)
NOT_STRINGS: tuple[tuple[str, object], ...] = (
    ("number", 5),
    ("boolean", True),
    ("list", ["x"]),
    ("object", {"x": "y"}),
)
# Row 21: every string field, given a JSON value of another type.
REJECTED += [
    (f"{name} as {kind}", {"prompt": "p", name: value}, f"{name} must be a string")
    for name in STRING_FIELDS
    for kind, value in NOT_STRINGS
]
ACCEPTED += [(f"style {style}", {"prompt": "p", "style": style}) for style in STYLES.split(", ")]
ACCEPTED += [
    (f"angle {angle}", {"prompt": "p", "shotAngle": angle}) for angle in ANGLES.split(", ")
]
ACCEPTED += [
    ("explicit defaults", {"prompt": "p", "model": "flux", "aspectRatio": "16:9", "reference_strength": 50}),
    ("premium with base style", {"prompt": "p", "model": "flux-premium", "style": "base"}),
    ("banana square", {"prompt": "p", "model": "nano-banana", "aspectRatio": "1:1"}),
    ("bounds low", {"prompt": "p", "seed": 0, "pollForResult": 1, "reference_strength": 0}),  # maxJobs 1: test_capacity
    ("bounds high", {"prompt": "p", "maxJobs": 100, "pollForResult": 20, "reference_strength": 100}),
    ("seed max text", {"prompt": "p", "seed": "4294967295"}),
    ("texts at 2000", {"prompt": "p", "location": "l" * 2000, "weather": "w" * 2000, "shotType": "s" * 2000}),
    ("https reply url", {"prompt": "p", "replyUrl": "https://127.0.0.1:9/" + "x" * 2000}),
    ("null optionals", {"prompt": "p", "model": None, "aspectRatio": None, "replyRef": None, "maxJobs": None}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "message"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED]
)
def test_each_invalid_json_field_gets_its_exact_400_message(shared_client, body, message):
    """Every rejected value of section 7 is a 400 with the row's exact message."""
    response = shared_client.post("/images/create", json=body)
    assert response.status_code == 400
    assert response.json() == {"error": message, "code": 400}


@pytest.mark.parametrize("body", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_each_valid_json_value_is_accepted(shared_client, body):
    """Every accepted value of section 7 creates a job."""
    response = shared_client.post("/images/create", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["jobId"].startswith("email:user@example.com:")


def _form(body: dict[str, object]) -> dict[str, tuple[None, str]]:
    """The body as form fields: numbers as decimal strings, null as the empty string (E4)."""
    form = {name: (None, "" if value is None else str(value)) for name, value in body.items()}
    # An empty form is no multipart body at all; an empty optional field keeps it a form.
    return form or {"location": (None, "")}


def _form_expressible(body: dict[str, object]) -> bool:
    return all(not isinstance(value, list | dict) for value in body.values())


# A form cannot carry a non-string (row 21); every other case means the same as a string.
MULTIPART_REJECTED = [
    c for c in REJECTED if _form_expressible(c[1]) and not c[2].endswith("must be a string")
]
MULTIPART_ACCEPTED = [c for c in ACCEPTED if _form_expressible(c[1])]


@pytest.mark.parametrize(
    ("body", "message"),
    [c[1:] for c in MULTIPART_REJECTED],
    ids=[c[0] for c in MULTIPART_REJECTED],
)
def test_each_invalid_multipart_field_gets_the_same_message(shared_client, body, message):
    """Multipart forms are judged by the same rows and messages as JSON."""
    response = shared_client.post("/images/create", files=_form(body))
    assert response.json() == {"error": message, "code": 400}


@pytest.mark.parametrize(
    "body", [c[1] for c in MULTIPART_ACCEPTED], ids=[c[0] for c in MULTIPART_ACCEPTED]
)
def test_each_valid_value_is_accepted_as_a_multipart_form_too(shared_client, body):
    """1.4: every accepted value, sent as form fields (all strings), creates a job."""
    response = shared_client.post("/images/create", files=_form(body))
    assert response.status_code == 200, response.text
    assert response.json()["jobId"].startswith("email:user@example.com:")


@pytest.mark.parametrize("name", ["prompt", "style", "replyRef"])
def test_a_file_part_where_a_string_belongs_is_rejected(shared_client, name):
    """Row 21 for forms: a file upload is not a string parameter."""
    files = {"prompt": (None, "p"), name: ("value.txt", b"text", "text/plain")}
    response = shared_client.post("/images/create", files=files)
    assert response.json() == {"error": f"{name} must be a string", "code": 400}


def test_a_body_without_content_type_is_rejected(shared_client):
    """Row 1: no Content-Type at all is neither JSON nor a form."""
    response = shared_client.post("/images/create", content=b'{"prompt": "p"}')
    assert response.json() == {
        "error": "Content-Type must be application/json or multipart/form-data",
        "code": 400,
    }


def test_multipart_numbers_arrive_as_decimal_strings(shared_client):
    """In a form every value is a string; integers are decimal digits (E9)."""
    form = _form({"prompt": "p", "seed": 42, "reference_strength": 7, "maxJobs": 3})
    assert shared_client.post("/images/create", files=form).status_code == 200


def test_a_multipart_field_given_twice_is_rejected(shared_client):
    """E9: a field repeated in a form is a 400 naming it."""
    files = [("prompt", (None, "a")), ("prompt", (None, "b"))]
    response = shared_client.post("/images/create", files=files)
    assert response.json() == {"error": "prompt must be given only once", "code": 400}


@pytest.mark.parametrize(
    ("content_type", "content", "message"),
    [
        ("text/plain", b"prompt=p", "Content-Type must be application/json or multipart/form-data"),
        ("application/x-www-form-urlencoded", b"prompt=p", "Content-Type must be application/json or multipart/form-data"),
        ("application/json", b"{not json", "Request body must be a JSON object"),
        ("application/json", b'["prompt"]', "Request body must be a JSON object"),
        ("application/json", b"", "Request body must be a JSON object"),
        ("application/json", b'"prompt"', "Request body must be a JSON object"),
        ("multipart/form-data; boundary=xyz", b"not a form", "Request body must be a JSON object"),
        ("multipart/form-data", b"--xyz--", "Request body must be a JSON object"),
    ],
)  # fmt: skip
def test_bodies_that_are_not_json_objects_or_forms_are_rejected(
    shared_client, content_type, content, message
):
    """Rows 1 and 2: the body must be a JSON object or a multipart form."""
    response = shared_client.post(
        "/images/create", content=content, headers={"Content-Type": content_type}
    )
    assert response.json() == {"error": message, "code": 400}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"negativePrompt": 1, "model": "bad"}, "Unknown parameter: negativePrompt"),
        ({"referenceAssetId2": "a", "model": "bad"}, "referenceAssetId2 is not supported by images/create"),
        ({"model": "bad", "prompt": ""}, "model must be one of: flux, flux-premium, nano-banana"),
        ({"prompt": "", "aspectRatio": "4:3"}, "prompt is required"),
        ({"prompt": "p", "seed": -1, "replyRef": "r" * 2000}, SEED_MESSAGE),
        ({"prompt": "p", "replyRef": "r" * 2000, "email": "nobody@example.com"}, "replyRef must be a string of at most 1024 characters"),
        ({"prompt": "p", "model": "nano-banana", "style": "anime", "referenceAssetId": "a"}, "referenceAssetId is not supported by model nano-banana"),
    ],
)  # fmt: skip
def test_the_first_failing_row_decides_the_answer(shared_client, body, message):
    """E20: rows are checked in the table's order, whatever the body's key order."""
    assert shared_client.post("/images/create", json=body).json()["error"] == message


def _both_encodings(client: httpx.Client, body: dict[str, object]) -> list[httpx.Response]:
    """The same create sent as JSON and as a multipart form."""
    return [
        client.post("/images/create", json=body),
        client.post("/images/create", files=_form(body)),
    ]


def test_no_configured_account_is_a_400():
    """Row 22: with no accounts, every create names POST /accounts, JSON or form."""
    with running_emulator(accounts=()) as emulator, api_client(emulator) as client:
        responses = _both_encodings(client, {"prompt": "p"})
    assert [r.json() for r in responses] == [
        {"error": "No LTX Studio account is configured, use POST /accounts first", "code": 400}
    ] * 2


def test_email_is_required_when_two_accounts_exist():
    """Row 23 and E5: no random load balancing between accounts, JSON or form."""
    accounts = (AccountConfig("a@example.com"), AccountConfig("b@example.com"))
    with running_emulator(accounts=accounts) as emulator, api_client(emulator) as client:
        missing = _both_encodings(client, {"prompt": "p"})
        named = _both_encodings(client, {"prompt": "p", "email": "B@example.com"})
    assert [r.json()["error"] for r in missing] == [
        "email is required when more than one account is configured"
    ] * 2
    assert all(r.json()["jobId"].startswith("email:b@example.com:") for r in named)


def test_a_generated_image_is_usable_as_a_reference_json_or_form(client: httpx.Client):
    """Row 25: the fileId of one of the account's own generated images is a valid reference."""
    job_id = client.post("/images/create", json={"prompt": "p"}).json()["jobId"]
    file_id = wait_for_status(client, job_id)["status"]["artifact"]["asset"]["fileId"]
    responses = _both_encodings(client, {"prompt": "q", "referenceAssetId": file_id})
    refused = _both_encodings(
        client, {"prompt": "q", "model": "flux-premium", "referenceAssetId": file_id}
    )
    assert [r.status_code for r in responses] == [200, 200]
    assert [r.json()["error"] for r in refused] == [
        "referenceAssetId is not supported by model flux-premium"
    ] * 2


def test_a_reference_must_be_a_reference_upload_or_a_generated_image(
    emulator: RunningEmulator, client: httpx.Client
):
    """Row 25: a `type=image` upload is not usable as a reference; a reference upload is."""
    png = tiny_image()
    plain = client.post("/assets/", content=png, headers={"Content-Type": "image/png"}).json()
    reference = client.post(
        "/assets/?type=reference-image", content=png, headers={"Content-Type": "image/png"}
    ).json()
    plain_id = plain["asset"]["fileId"]
    refused = _both_encodings(client, {"prompt": "p", "referenceAssetId": plain_id})
    accepted = _both_encodings(
        client, {"prompt": "p", "referenceAssetId": reference["asset"]["fileId"]}
    )
    assert [r.json()["error"] for r in refused] == [
        f"referenceAssetId {plain_id} is not an image usable as a reference"
    ] * 2
    assert [r.status_code for r in accepted] == [200, 200]


def test_a_reference_of_another_account_is_not_found():
    """Row 25: references are per account."""
    accounts = (AccountConfig("a@example.com"), AccountConfig("b@example.com"))
    with running_emulator(accounts=accounts) as emulator, api_client(emulator) as client:
        upload = client.post(
            "/assets/?type=reference-image&email=a@example.com",
            content=tiny_image(),
            headers={"Content-Type": "image/png"},
        ).json()
        file_id = upload["asset"]["fileId"]
        response = client.post(
            "/images/create",
            json={"prompt": "p", "email": "b@example.com", "referenceAssetId": file_id},
        )
    assert (
        response.json()["error"]
        == f"referenceAssetId {file_id} not found for account b@example.com"
    )


def test_validation_comes_after_auth_and_subscription():
    """E20: 401 beats 402 (subscription), which beats any 400."""
    with running_emulator(subscription_active=False) as emulator:
        anonymous = httpx.post(emulator.base_url + "/images/create", json={}, verify=LOOPBACK_TLS)
        with api_client(emulator) as client:
            subscribed = client.post("/images/create", json={})
    assert anonymous.json() == {"error": "Unauthorized", "code": 401}
    assert subscribed.json() == {"error": "Subscription required", "code": 402}


def test_a_400_beats_insufficient_credits(emulator, client):
    """E20: validation comes before the credit check."""
    emulator.set_balance("user@example.com", 0)
    invalid = client.post("/images/create", json={"prompt": "p", "seed": -1, "maxJobs": 1})
    broke = client.post("/images/create", json={"prompt": "p", "maxJobs": 1})
    assert invalid.status_code == 400
    assert broke.json() == {
        "error": "Insufficient credits: model flux costs 28, account user@example.com has 0",
        "code": 402,
    }


def test_the_alias_flux_create_validates_like_create(shared_client):
    """E1: images/flux-create is images/create."""
    response = shared_client.post("/images/flux-create", json={"prompt": "p", "seed": -1})
    assert response.json()["error"] == SEED_MESSAGE
    assert shared_client.post("/images/flux-create", json={"prompt": "p"}).status_code == 200


def test_a_rejected_create_charges_nothing(emulator, client):
    """A 400 creates no job and no ledger entry."""
    client.post("/images/create", json={"prompt": ""})
    assert emulator.ledger() == []
    assert emulator.jobs() == []
