"""The artifact store: content-addressed, verified, durable, never overwritten."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from ltx_reconcile.artifacts import (
    OBJECT_MODE,
    ArtifactStore,
    ImageInfo,
    image_info,
    install_no_clobber,
)
from ltx_reconcile.errors import IntegrityError, StateError
from ltx_reconcile.s3store import S3ArtifactStore, S3Location
from ltx_reconcile.store_protocol import ArtifactStoreProtocol
from tests.s3.server import S3Server


def _png(color: str = "red", size: tuple[int, int] = (8, 5)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _corrupt(path: Path, data: bytes = b"not what was stored") -> None:
    path.chmod(0o644)
    path.write_bytes(data)
    path.chmod(OBJECT_MODE)


def _refuse_links(src: Path, dst: Path) -> None:
    raise OSError(errno.EPERM, "Operation not permitted", str(dst))


class _Backend:
    """Opens stores of one kind whose local objects live in a given directory."""

    def __init__(self, s3_server: S3Server | None = None) -> None:
        self._server = s3_server
        self._bucket = s3_server.new_bucket() if s3_server is not None else ""

    def __call__(self, root: Path) -> ArtifactStoreProtocol:
        if self._server is None:
            return ArtifactStore(root)
        location = S3Location(self._bucket, "team/objects")
        return S3ArtifactStore(location, root, client=self._server.client())

    def spoil(self, store: ArtifactStoreProtocol, digest: str) -> None:
        """Change the stored bytes of `digest` where the store keeps its truth."""
        if self._server is not None and isinstance(store, S3ArtifactStore):
            # An unconditional put: what a buggy or hostile writer could do to the bucket.
            key = store.location.key("sha256", digest[:2], digest[2:])
            self._server.client().put_object(Bucket=self._bucket, Key=key, Body=b"spoiled")
        else:
            _corrupt(store.path_for(digest))


def _named(store: ArtifactStoreProtocol, digest: str) -> str:
    """How a message names the place of a missing object: the bucket, or the file path."""
    if isinstance(store, S3ArtifactStore):
        return store.location.url()
    return str(store.path_for(digest))


@pytest.fixture(params=["local", "s3"])
def make_store(request: pytest.FixtureRequest) -> _Backend:
    """Every store test runs on the local store and on the S3 store (over a real emulator).

    The S3 store's local objects are its cache, in the local store's layout, so the
    tests' file assertions hold for both.
    """
    if request.param == "local":
        return _Backend()
    return _Backend(request.getfixturevalue("s3_server"))


def test_put_bytes_stores_the_object_under_its_bare_hex_sha256_in_a_two_level_layout(
    tmp_path, make_store
):
    """Digest `ab12…` lives at root/sha256/ab/12…, and the digest has no `sha256:` prefix."""
    store = make_store(tmp_path / "objects")
    data = _png()
    digest = _sha256(data)

    stored = store.put_bytes(data)

    assert stored.digest == digest
    assert stored.size == len(data)
    assert stored.path == tmp_path / "objects" / "sha256" / digest[:2] / digest[2:]
    assert stored.path.read_bytes() == data
    assert store.path_for(digest) == stored.path
    assert store.contains(digest)
    assert _files(tmp_path) == [stored.path]


def test_stored_objects_are_read_only(tmp_path, make_store):
    """Every object has mode 0o444, so an editor writing a hard-linked output in place fails."""
    store = make_store(tmp_path)

    stored = store.put_bytes(b"bytes")

    assert stat.S_IMODE(stored.path.stat().st_mode) == 0o444


def test_storing_bytes_already_present_keeps_the_first_object(tmp_path, make_store):
    """A second put of the same bytes is a no-op: the object's inode and mtime do not move."""
    store = make_store(tmp_path)
    first = store.put_bytes(b"same")
    before = first.path.stat()

    second = store.put_bytes(b"same", expected_digest=first.digest)

    after = second.path.stat()
    assert second == first
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert _files(tmp_path) == [first.path]


def test_put_bytes_with_a_wrong_expected_digest_writes_nothing(tmp_path, make_store):
    """A digest mismatch raises IntegrityError naming both digests and leaves no file."""
    store = make_store(tmp_path)
    expected = _sha256(b"what the API promised")

    with pytest.raises(IntegrityError) as caught:
        store.put_bytes(b"what arrived", expected_digest=expected)

    assert str(caught.value) == (
        f"the bytes to store: expected digest {expected}, got {_sha256(b'what arrived')}"
    )
    assert _files(tmp_path) == []


def test_a_corrupt_object_is_reported_and_never_overwritten(tmp_path):
    """Putting bytes whose object is corrupt raises, names the object, and leaves it as it was."""
    store = ArtifactStore(tmp_path)
    stored = store.put_bytes(b"original")
    _corrupt(stored.path)

    with pytest.raises(IntegrityError) as caught:
        store.put_bytes(b"original")

    assert str(caught.value) == (
        f"stored object {stored.path} does not match its digest {stored.digest}; "
        "it was left as it is, not overwritten"
    )
    assert caught.value.hint == "run `ltx-reconcile verify --repair` to restore it"
    assert stored.path.read_bytes() == b"not what was stored"
    assert _files(tmp_path) == [stored.path]


def test_put_file_copies_the_source_and_leaves_it_in_place(tmp_path, make_store):
    """Without `move`, the source file is untouched and the object is a separate inode."""
    store = make_store(tmp_path / "objects")
    src = tmp_path / "mine.png"
    src.write_bytes(_png())

    stored = store.put_file(src)

    assert src.read_bytes() == stored.path.read_bytes() == _png()
    assert src.stat().st_ino != stored.path.stat().st_ino
    assert _files(tmp_path / "objects") == [stored.path]


def test_put_file_with_move_links_a_download_into_place_and_consumes_it(tmp_path, make_store):
    """A download in temp_dir() becomes the object itself (same inode) and its name is gone."""
    store = make_store(tmp_path)
    download = store.temp_dir() / "job-1.png"
    download.write_bytes(_png())
    inode = download.stat().st_ino

    stored = store.put_file(download, expected_digest=_sha256(_png()), move=True)

    assert not download.exists()
    assert stored.path.stat().st_ino == inode
    assert stat.S_IMODE(stored.path.stat().st_mode) == 0o444
    assert _files(tmp_path) == [stored.path]


def test_put_file_with_move_of_a_duplicate_drops_the_download(tmp_path, make_store):
    """Moving in bytes the store already holds keeps the existing object and deletes the source."""
    store = make_store(tmp_path)
    first = store.put_bytes(_png())
    download = store.temp_dir() / "again.png"
    download.write_bytes(_png())

    stored = store.put_file(download, move=True)

    assert stored == first
    assert _files(tmp_path) == [first.path]


def test_put_file_with_move_from_another_filesystem_copies_then_removes_the_source(
    tmp_path, make_store
):
    """A source on another device cannot be linked: it is copied in, then deleted."""
    # A second filesystem is the point here; the file name is unique to this process.
    shm = Path("/dev/shm")  # noqa: S108
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs /dev/shm on a filesystem other than tmp_path's")
    store = make_store(tmp_path)
    src = shm / f"ltx-reconcile-test-{os.getpid()}.png"
    src.write_bytes(_png())

    stored = store.put_file(src, move=True)

    assert not src.exists()
    assert stored.path.read_bytes() == _png()
    assert _files(tmp_path) == [stored.path]


def test_put_file_with_move_deletes_a_download_whose_digest_is_wrong(tmp_path, make_store):
    """Bytes that fail their digest are worth nothing: the moved download is deleted, nothing stored."""
    store = make_store(tmp_path)
    download = store.temp_dir() / "truncated.png"
    download.write_bytes(_png()[:20])

    with pytest.raises(IntegrityError):
        store.put_file(download, expected_digest=_sha256(_png()), move=True)

    assert _files(tmp_path) == []


def test_put_file_without_move_keeps_the_source_when_its_digest_is_wrong(tmp_path, make_store):
    """Without `move` the source is the caller's: a mismatch leaves it, and no temp copy."""
    store = make_store(tmp_path / "objects")
    src = tmp_path / "mine.png"
    src.write_bytes(b"mine")

    with pytest.raises(IntegrityError):
        store.put_file(src, expected_digest=_sha256(b"other"))

    assert src.read_bytes() == b"mine"
    assert _files(tmp_path / "objects") == []


def test_put_file_with_move_keeps_the_download_when_the_stored_object_is_corrupt(
    tmp_path, make_store
):
    """When the store is at fault, the good download is kept for the repair, not deleted."""
    store = make_store(tmp_path)
    stored = store.put_bytes(_png())
    _corrupt(stored.path)
    download = store.temp_dir() / "good.png"
    download.write_bytes(_png())

    with pytest.raises(IntegrityError):
        store.put_file(download, move=True)

    assert download.read_bytes() == _png()
    assert _files(tmp_path) == sorted([stored.path, download])


def test_put_file_of_a_missing_source_leaves_no_temp_file(tmp_path, make_store):
    """A copy that fails half-way (here: at once) removes its staging file."""
    store = make_store(tmp_path / "objects")

    with pytest.raises(FileNotFoundError):
        store.put_file(tmp_path / "absent.png")

    assert _files(tmp_path) == []


def test_losing_the_link_race_to_an_identical_object_keeps_the_winner(tmp_path):
    """If another process installs the object between our check and our link, we adopt it."""
    winners: list[int] = []
    rival = ArtifactStore(tmp_path)

    def link_after_rival(src: Path, dst: Path) -> None:
        winners.append(rival.put_bytes(b"contested").path.stat().st_ino)
        os.link(src, dst)

    store = ArtifactStore(tmp_path, link=link_after_rival)

    stored = store.put_bytes(b"contested")

    assert stored.path.stat().st_ino == winners[0]
    assert stored.path.read_bytes() == b"contested"
    assert _files(tmp_path) == [stored.path]


def test_losing_the_link_race_to_a_corrupt_object_raises_and_leaves_no_temp_file(tmp_path):
    """A corrupt rival object is reported, not replaced, and our staging file is cleaned up."""
    store_path = ArtifactStore(tmp_path).path_for(_sha256(b"contested"))

    def link_after_corrupt_rival(src: Path, dst: Path) -> None:
        dst.write_bytes(b"garbage")
        os.link(src, dst)

    store = ArtifactStore(tmp_path, link=link_after_corrupt_rival)

    with pytest.raises(IntegrityError):
        store.put_bytes(b"contested")

    assert store_path.read_bytes() == b"garbage"
    assert _files(tmp_path) == [store_path]


def test_a_filesystem_without_hard_links_still_stores_objects(tmp_path):
    """When link(2) is refused, objects are renamed into place, read-only, with no leftovers."""
    store = ArtifactStore(tmp_path, link=_refuse_links)

    stored = store.put_bytes(b"no links here")
    again = store.put_bytes(b"no links here")

    assert again == stored
    assert stored.path.read_bytes() == b"no links here"
    assert stat.S_IMODE(stored.path.stat().st_mode) == 0o444
    assert _files(tmp_path) == [stored.path]


def test_without_hard_links_an_existing_name_is_still_never_replaced(tmp_path):
    """The rename fallback looks before it renames: an existing file keeps its bytes."""
    staged = tmp_path / "staged"
    staged.write_bytes(b"new")
    final = tmp_path / "final"
    final.write_bytes(b"old")

    assert install_no_clobber(staged, final, link=_refuse_links) is False
    assert final.read_bytes() == b"old"
    assert staged.read_bytes() == b"new"


_RACER = """
import sys, time
from pathlib import Path
from ltx_reconcile.artifacts import ArtifactStore

store, go, racer = ArtifactStore(Path(sys.argv[1])), Path(sys.argv[2]), int(sys.argv[3])
while not go.exists():
    time.sleep(0.001)
for i in range(60):
    data = i.to_bytes(4, "big") * 16384
    if racer % 2:
        download = store.temp_dir() / f"racer-{racer}-{i}"
        download.write_bytes(data)
        store.put_file(download, move=True)
    else:
        store.put_bytes(data)
"""


def test_concurrent_processes_storing_the_same_objects_all_succeed_with_one_copy_each(tmp_path):
    """Four processes putting the same 60 objects at once all exit 0 and leave 60 intact objects."""
    root, go = tmp_path / "objects", tmp_path / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, str(root), str(go), str(n)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    go.touch()
    outcomes = [(racer.communicate(timeout=30)[1], racer.returncode) for racer in racers]

    assert outcomes == [("", 0)] * 4
    store = ArtifactStore(root)
    expected = sorted(_sha256(i.to_bytes(4, "big") * 16384) for i in range(60))
    assert list(store.iter_digests()) == expected
    assert all(store.verify(digest) for digest in expected)
    assert _files(root) == [store.path_for(digest) for digest in expected]


def test_verify_tells_intact_objects_from_corrupt_and_missing_ones(tmp_path, make_store):
    """verify re-hashes: True when intact, False when the bytes changed or the object is gone."""
    store = make_store(tmp_path)
    intact = store.put_bytes(b"intact")
    corrupt = store.put_bytes(b"corrupt")
    make_store.spoil(store, corrupt.digest)

    assert store.verify(intact.digest) is True
    assert store.verify(corrupt.digest) is False
    assert store.verify(_sha256(b"never stored")) is False


def test_iter_digests_lists_objects_in_order_and_skips_staging_files_and_strays(tmp_path):
    """Only well-formed object names count; temp files and foreign files are not objects."""
    store = ArtifactStore(tmp_path)
    digests = sorted(store.put_bytes(bytes([n])).digest for n in range(5))
    shard = store.path_for(digests[0]).parent
    (shard / ".tmp-abandoned").write_bytes(b"half")
    (tmp_path / "sha256" / "README").write_text("stray")
    (store.temp_dir() / "download").write_bytes(b"partial")

    assert list(store.iter_digests()) == digests


def test_iter_digests_of_an_empty_store_is_empty(tmp_path, make_store):
    """A store directory that does not exist yet has no objects (and is not created)."""
    store = make_store(tmp_path / "objects")

    assert list(store.iter_digests()) == []
    assert not (tmp_path / "objects").exists()


def test_size_reports_bytes_and_names_a_missing_object(tmp_path, make_store):
    """size is a stat; a missing object is a StateError naming its digest and path."""
    store = make_store(tmp_path)
    stored = store.put_bytes(b"12345")
    missing = _sha256(b"missing")

    assert store.size(stored.digest) == 5
    with pytest.raises(StateError) as caught:
        store.size(missing)
    assert (
        str(caught.value)
        == f"artifact {missing} is missing from the store ({_named(store, missing)})"
    )


def test_remove_deletes_a_read_only_object_and_says_whether_it_existed(tmp_path, make_store):
    """remove works despite the 0o444 mode and is False for an absent object."""
    store = make_store(tmp_path)
    stored = store.put_bytes(b"garbage to collect")

    assert store.remove(stored.digest) is True
    assert not store.contains(stored.digest)
    assert store.remove(stored.digest) is False


@pytest.mark.parametrize(
    "not_a_digest",
    [
        "sha256:" + "a" * 64,
        "A" * 64,
        "a" * 63,
        "../" + "a" * 61,
        "",
    ],
)
def test_path_for_rejects_anything_but_64_lowercase_hex_digits(tmp_path, not_a_digest, make_store):
    """One digest format everywhere; anything else is a caller's bug and cannot escape root."""
    store = make_store(tmp_path)

    with pytest.raises(ValueError, match="not a sha256 digest"):
        store.path_for(not_a_digest)


def test_image_info_reads_type_and_size_from_a_png_header(tmp_path):
    """image_info returns (mime, width, height) of a real PNG."""
    path = tmp_path / "hero.png"
    path.write_bytes(_png(size=(33, 21)))

    mime, width, height = image_info(path)

    assert (mime, width, height) == ("image/png", 33, 21)
    assert image_info(path) == ImageInfo(mime="image/png", width=33, height=21)


def test_image_info_of_a_file_that_is_no_image_raises_integrity_error(tmp_path):
    """Bytes Pillow cannot identify are an integrity failure naming the file."""
    path = tmp_path / "hero.png"
    path.write_bytes(b"<html>403 Forbidden</html>")

    with pytest.raises(IntegrityError, match=f"^{path} is not an image file$"):
        image_info(path)
