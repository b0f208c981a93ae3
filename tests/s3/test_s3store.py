"""The S3 store, against a real S3-compatible server: what the local store's tests cannot show.

tests/test_artifacts.py runs the shared behaviour on both stores; here are the bucket's own
guarantees: the layout of keys, the conditional put, verification on read, the cache, the
quarantine, and the errors a user sees.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from ltx_reconcile.artifacts import ArtifactStore
from ltx_reconcile.errors import IntegrityError, StateError, UsageError
from ltx_reconcile.s3store import S3ArtifactStore, S3Location
from ltx_reconcile.settings import Settings
from ltx_reconcile.store_protocol import open_store
from tests.s3.conftest import PREFIX
from tests.s3.server import TEST_CREDENTIALS, S3Server


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _key(digest: str) -> str:
    return f"{PREFIX}/sha256/{digest[:2]}/{digest[2:]}"


def _read(s3_server: S3Server, bucket: str, key: str) -> bytes:
    return s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()


def _keys(s3_server: S3Server, bucket: str) -> list[str]:
    listing = s3_server.client().list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", ()))


def test_an_object_is_stored_in_the_bucket_under_the_local_layout(
    tmp_path, s3_server, bucket, open_s3_store
):
    """put_bytes writes `prefix/sha256/ab/<62 hex>` with exactly the bytes, and caches them."""
    store = open_s3_store(tmp_path / "cache")

    stored = store.put_bytes(b"a picture")

    assert _keys(s3_server, bucket) == [_key(stored.digest)]
    assert _read(s3_server, bucket, _key(stored.digest)) == b"a picture"
    assert stored.path == ArtifactStore(tmp_path / "cache").path_for(stored.digest)
    assert stored.path.read_bytes() == b"a picture"


def test_the_emulator_refuses_a_conditional_put_over_an_existing_key(s3_server, bucket):
    """The server under test enforces If-None-Match: *, the guarantee the store relies on."""
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key="k", Body=b"first", IfNoneMatch="*")

    with pytest.raises(client.exceptions.ClientError) as caught:
        client.put_object(Bucket=bucket, Key="k", Body=b"second", IfNoneMatch="*")

    assert caught.value.response["Error"]["Code"] == "PreconditionFailed"
    assert _read(s3_server, bucket, "k") == b"first"


def test_a_second_writer_of_the_same_bytes_leaves_the_first_object(
    tmp_path, s3_server, bucket, open_s3_store
):
    """Another runner storing an object already in the bucket succeeds; the object is untouched."""
    first = open_s3_store(tmp_path / "a").put_bytes(b"shared")
    before = s3_server.client().head_object(Bucket=bucket, Key=_key(first.digest))

    second = open_s3_store(tmp_path / "b").put_bytes(b"shared")

    after = s3_server.client().head_object(Bucket=bucket, Key=_key(first.digest))
    assert second.digest == first.digest
    assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])
    assert second.path.read_bytes() == b"shared"


def test_other_bytes_under_the_key_are_detected_and_never_overwritten(
    tmp_path, s3_server, bucket, open_s3_store
):
    """When the bucket holds other bytes under a digest, a put raises and leaves them there."""
    digest = _sha256(b"the real picture")
    s3_server.client().put_object(Bucket=bucket, Key=_key(digest), Body=b"a rival's garbage")
    store = open_s3_store(tmp_path / "cache")

    with pytest.raises(IntegrityError) as caught:
        store.put_bytes(b"the real picture")

    assert str(caught.value) == (
        f"the bucket holds other bytes under s3://{bucket}/{_key(digest)}; "
        "they were left as they are, not overwritten"
    )
    assert _read(s3_server, bucket, _key(digest)) == b"a rival's garbage"


def test_a_corrupt_object_in_the_bucket_is_detected_on_read(
    tmp_path, s3_server, bucket, open_s3_store
):
    """path_for on a runner without the object hashes the download: bad bytes never get cached."""
    stored = open_s3_store(tmp_path / "writer").put_bytes(b"good bytes")
    s3_server.client().put_object(Bucket=bucket, Key=_key(stored.digest), Body=b"bit rot")
    reader = open_s3_store(tmp_path / "reader")

    with pytest.raises(IntegrityError, match="does not match its digest") as caught:
        reader.path_for(stored.digest)

    assert f"s3://{bucket}/{_key(stored.digest)}" in str(caught.value)
    assert caught.value.hint is not None
    assert "verify --repair" in caught.value.hint
    assert [p for p in (tmp_path / "reader").rglob("*") if p.is_file()] == []


def test_path_for_downloads_once_then_serves_the_cache(tmp_path, s3_server, bucket, open_s3_store):
    """The second path_for reads no bucket: a GET now would fetch bytes that fail their digest."""
    stored = open_s3_store(tmp_path / "writer").put_bytes(b"fetch me once")
    reader = open_s3_store(tmp_path / "reader")

    path = reader.path_for(stored.digest)
    s3_server.client().put_object(Bucket=bucket, Key=_key(stored.digest), Body=b"changed since")
    again = reader.path_for(stored.digest)

    assert path == again == tmp_path / "reader" / "sha256" / stored.digest[:2] / stored.digest[2:]
    assert again.read_bytes() == b"fetch me once"


def test_path_for_an_object_the_bucket_lacks_is_an_absent_cache_path(tmp_path, open_s3_store):
    """No object, no file: callers see a missing path, as with the local store."""
    store = open_s3_store(tmp_path / "cache")
    digest = _sha256(b"never stored")

    path = store.path_for(digest)

    assert not path.exists()
    assert store.contains(digest) is False


def test_absent_among_and_iter_digests_read_the_bucket_and_skip_strays(
    tmp_path, s3_server, bucket, open_s3_store
):
    """Listings see every runner's objects, and only well-formed object keys under the prefix."""
    digests = sorted(open_s3_store(tmp_path / "a").put_bytes(bytes([n])).digest for n in range(3))
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key=f"{PREFIX}/sha256/README", Body=b"stray")
    client.put_object(Bucket=bucket, Key=f"{PREFIX}/sha256/{digests[0][:2]}/short", Body=b"x")
    client.put_object(Bucket=bucket, Key=f"elsewhere/sha256/{_key(_sha256(b'y'))}", Body=b"y")
    other = open_s3_store(tmp_path / "b")
    missing = _sha256(b"missing")

    assert list(other.iter_digests()) == digests
    assert set(other.absent_among([*digests, missing])) == {missing}
    assert other.size(digests[1]) == 1


def test_runners_storing_the_same_objects_at_once_all_succeed_with_one_copy_each(
    tmp_path, s3_server, bucket, open_s3_store
):
    """Four threads, each its own runner and cache, put the same 20 objects at once."""
    payloads = [i.to_bytes(4, "big") * 4096 for i in range(20)]
    errors: list[BaseException] = []
    go = threading.Barrier(4)

    def runner(n: int) -> None:
        store = open_s3_store(tmp_path / f"runner-{n}")
        go.wait()
        try:
            for data in payloads:
                store.put_bytes(data)
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=runner, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    expected = sorted(_sha256(data) for data in payloads)
    assert _keys(s3_server, bucket) == sorted(_key(d) for d in expected)
    checker = open_s3_store(tmp_path / "checker")
    assert all(checker.verify(digest) for digest in expected)


def test_quarantine_moves_a_corrupt_object_aside_and_frees_its_name(
    tmp_path, s3_server, bucket, open_s3_store
):
    """verify --repair's step: the bad bytes are kept aside, and a good copy can be stored again."""
    store = open_s3_store(tmp_path / "cache")
    stored = store.put_bytes(b"precious")
    s3_server.client().put_object(Bucket=bucket, Key=_key(stored.digest), Body=b"rotten")
    assert store.verify(stored.digest) is False

    aside = store.quarantine(stored.digest)
    restored = open_s3_store(tmp_path / "fresh").put_bytes(b"precious")

    assert aside is not None
    assert aside.parent == tmp_path / "cache" / "quarantine"
    keys = _keys(s3_server, bucket)
    (quarantined,) = (k for k in keys if k.startswith(f"{PREFIX}/quarantine/{stored.digest}."))
    assert _read(s3_server, bucket, quarantined) == b"rotten"
    assert _read(s3_server, bucket, _key(stored.digest)) == b"precious"
    assert restored.digest == stored.digest
    assert open_s3_store(tmp_path / "checker").verify(stored.digest) is True


def test_quarantine_keeps_a_good_bucket_object_when_only_the_cache_is_corrupt(
    tmp_path, s3_server, bucket, open_s3_store
):
    """A damaged local copy is moved aside; the team's good object stays in the bucket."""
    store = open_s3_store(tmp_path / "cache")
    stored = store.put_bytes(b"fine in the bucket")
    stored.path.chmod(0o644)
    stored.path.write_bytes(b"damaged here")
    assert store.verify(stored.digest) is False

    aside = store.quarantine(stored.digest)

    assert aside is not None
    assert aside.read_bytes() == b"damaged here"
    assert _keys(s3_server, bucket) == [_key(stored.digest)]
    assert store.path_for(stored.digest).read_bytes() == b"fine in the bucket"


def test_remove_deletes_from_the_bucket_and_the_cache(tmp_path, s3_server, bucket, open_s3_store):
    """gc's delete reaches the bucket; a second remove finds nothing."""
    store = open_s3_store(tmp_path / "cache")
    stored = store.put_bytes(b"garbage")

    assert store.remove(stored.digest) is True
    assert _keys(s3_server, bucket) == []
    assert not stored.path.exists()
    assert store.remove(stored.digest) is False


def test_a_missing_bucket_is_a_state_error_naming_it(tmp_path, s3_server):
    """The tool never creates buckets; the message names the bucket and says what to do."""
    store = S3ArtifactStore(
        S3Location("ltx-no-such-bucket", ""), tmp_path, client=s3_server.client()
    )

    with pytest.raises(StateError) as caught:
        store.put_bytes(b"x")

    digest = _sha256(b"x")
    assert str(caught.value) == (
        f"cannot write s3://ltx-no-such-bucket/sha256/{digest[:2]}/{digest[2:]}: NoSuchBucket"
    )
    assert caught.value.hint == "create the bucket 'ltx-no-such-bucket', or check --store"


def test_an_unreachable_endpoint_is_a_state_error_without_secrets(tmp_path, monkeypatch):
    """A server that does not answer is a StateError naming the store; no credential is shown."""
    for name, value in TEST_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    # Port 9 (discard) on loopback: nothing listens there, the connection is refused at once.
    store = open_store("s3://ltx-bucket/p", tmp_path, endpoint="http://127.0.0.1:9")

    with pytest.raises(StateError) as caught:
        store.contains(_sha256(b"x"))

    message = f"{caught.value} {caught.value.hint}"
    assert message.startswith("cannot look up s3://ltx-bucket/p/sha256/")
    assert TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in message


@pytest.mark.parametrize(
    ("spec", "bucket", "prefix"),
    [
        ("s3://assets", "assets", ""),
        ("s3://assets/", "assets", ""),
        ("s3://assets/team/objects/", "assets", "team/objects"),
    ],
)
def test_s3_locations_parse_into_bucket_and_prefix(spec, bucket, prefix):
    """The prefix loses its slashes at either end; an empty one puts objects at the root."""
    assert S3Location.parse(spec) == S3Location(bucket, prefix)


def test_an_s3_url_without_a_bucket_is_a_usage_error():
    """`s3://` alone names no bucket."""
    with pytest.raises(UsageError, match="not an S3 store"):
        S3Location.parse("s3:///prefix")


def test_open_store_picks_the_store_by_its_spec(tmp_path):
    """`s3://` opens the bucket with the directory as its cache; anything else is a directory."""
    remote = open_store("s3://assets/team", tmp_path / "cache")
    local = open_store(tmp_path / "objects", tmp_path / "cache")

    assert isinstance(remote, S3ArtifactStore)
    assert (str(remote), remote.root) == ("s3://assets/team", tmp_path / "cache")
    assert isinstance(local, ArtifactStore)
    assert local.root == Path(tmp_path / "objects")


def test_the_store_settings_come_from_ltx_store_and_ltx_store_endpoint():
    """Settings reads both variables; empty ones mean the default (the local store, AWS)."""
    env = {"LTX_STORE": "s3://assets/team", "LTX_STORE_ENDPOINT": "http://127.0.0.1:9000"}

    settings = Settings.from_env(env)
    unset = Settings.from_env({"LTX_STORE": "", "LTX_STORE_ENDPOINT": ""})

    assert (settings.store, settings.store_endpoint) == (
        "s3://assets/team",
        "http://127.0.0.1:9000",
    )
    assert (unset.store, unset.store_endpoint) == (None, None)
