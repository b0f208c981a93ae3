"""Named output files: linked or copied from the store, replaced atomically, never clobbered."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from ltx_reconcile.artifacts import ArtifactStore
from ltx_reconcile.errors import StateError
from ltx_reconcile.outputs import (
    MaterialiseResult,
    OutputAction,
    OutputStat,
    materialise,
    remove_output,
)

OLD = b"old image bytes"
NEW = b"new image bytes, longer"


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(tmp_path / "state" / "objects")


@pytest.fixture
def dest(tmp_path):
    return tmp_path / "out" / "hero.png"


def _refuse_links(src: Path, dst: Path) -> None:
    raise OSError(errno.EXDEV, "Invalid cross-device link", str(dst))


def _save_as_an_editor_does(path: Path, data: bytes) -> None:
    """Write a new file and rename it over the old name, as most editors (and git) do."""
    scratch = path.with_name(path.name + ".editor-swap")
    scratch.write_bytes(data)
    scratch.replace(path)


def _clone(path: Path) -> None:
    """Give `path` a new inode and mtime with the same bytes, as a fresh git checkout does."""
    _save_as_an_editor_does(path, path.read_bytes())


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_a_missing_output_is_created_as_a_hard_link_to_its_object(store, dest):
    """Parents are made and the output shares the object's inode: no extra disk, no copy."""
    obj = store.put_bytes(NEW)

    result = materialise(store, obj.digest, dest, recorded=None)

    st = dest.stat()
    assert result == MaterialiseResult(dest, OutputAction.CREATED, OutputStat.of(st), obj.digest)
    assert st.st_ino == obj.path.stat().st_ino
    assert _names(dest.parent) == ["hero.png"]


def test_when_linking_fails_the_output_is_a_writable_copy(store, dest):
    """Across filesystems (or without links) the output is a complete, independent copy."""
    obj = store.put_bytes(NEW)

    result = materialise(store, obj.digest, dest, recorded=None, link=_refuse_links)

    assert result.action is OutputAction.CREATED
    assert dest.read_bytes() == NEW
    assert dest.stat().st_ino != obj.path.stat().st_ino
    assert stat.S_IMODE(dest.stat().st_mode) & stat.S_IWUSR
    assert stat.S_IMODE(obj.path.stat().st_mode) == 0o444
    assert _names(dest.parent) == ["hero.png"]


def test_an_output_that_is_the_object_itself_is_unchanged(store, dest):
    """Materialising again does nothing and reports the same stat."""
    obj = store.put_bytes(NEW)
    first = materialise(store, obj.digest, dest, recorded=None)

    again = materialise(store, obj.digest, dest, recorded=first.stat, recorded_digest=obj.digest)

    assert again == MaterialiseResult(dest, OutputAction.UNCHANGED, first.stat, obj.digest)


def test_a_copy_as_we_left_it_is_unchanged(store, dest):
    """A copied output whose stat and digest match the record is left as it is."""
    obj = store.put_bytes(NEW)
    first = materialise(store, obj.digest, dest, recorded=None, link=_refuse_links)

    again = materialise(store, obj.digest, dest, recorded=first.stat, recorded_digest=obj.digest)

    assert again == MaterialiseResult(dest, OutputAction.UNCHANGED, first.stat, obj.digest)


def test_an_output_with_the_right_bytes_but_a_new_inode_is_unchanged_with_its_new_stat(store, dest):
    """After a fresh clone the bytes are right; the new stat is returned for the caller to record."""
    obj = store.put_bytes(NEW)
    first = materialise(store, obj.digest, dest, recorded=None)
    _clone(dest)

    again = materialise(store, obj.digest, dest, recorded=first.stat, recorded_digest=obj.digest)

    assert again.action is OutputAction.UNCHANGED
    assert again.stat == OutputStat.of(dest.stat()) != first.stat


def test_an_output_the_user_edited_is_left_alone_and_reported(store, dest):
    """A user's edit survives both a re-run and a replaced image; the old record comes back."""
    old = store.put_bytes(OLD)
    new = store.put_bytes(NEW)
    first = materialise(store, old.digest, dest, recorded=None)
    _save_as_an_editor_does(dest, b"the user's retouch")

    same = materialise(store, old.digest, dest, recorded=first.stat, recorded_digest=old.digest)
    replaced = materialise(store, new.digest, dest, recorded=first.stat, recorded_digest=old.digest)

    expected = MaterialiseResult(dest, OutputAction.USER_MODIFIED, first.stat, old.digest)
    assert same == replaced == expected
    assert str(OutputAction.USER_MODIFIED) == "modified by user"
    assert dest.read_bytes() == b"the user's retouch"
    assert store.verify(old.digest)


def test_a_user_edit_stays_protected_when_the_returned_record_is_stored(store, dest):
    """Feeding each result back as the next record never turns a user's edit into ours."""
    old = store.put_bytes(OLD)
    new = store.put_bytes(NEW)
    result = materialise(store, old.digest, dest, recorded=None)
    _save_as_an_editor_does(dest, b"the user's retouch")

    for _ in range(3):
        result = materialise(
            store, new.digest, dest, recorded=result.stat, recorded_digest=result.digest
        )

    assert result.action is OutputAction.USER_MODIFIED
    assert dest.read_bytes() == b"the user's retouch"


def test_a_file_we_never_wrote_is_never_overwritten(store, dest):
    """An existing file with other bytes and no record is the user's."""
    obj = store.put_bytes(NEW)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"hand-made")

    result = materialise(store, obj.digest, dest, recorded=None)

    assert result == MaterialiseResult(dest, OutputAction.USER_MODIFIED, None, None)
    assert dest.read_bytes() == b"hand-made"


def test_an_output_as_we_left_it_is_replaced_atomically_when_the_image_changes(store, dest):
    """The old file is swapped by rename: a reader holding it open still reads the old bytes whole."""
    old = store.put_bytes(OLD)
    new = store.put_bytes(NEW)
    first = materialise(store, old.digest, dest, recorded=None)

    with dest.open("rb") as reader:
        result = materialise(store, new.digest, dest, recorded=first.stat)
        assert reader.read() == OLD

    assert result == MaterialiseResult(
        dest, OutputAction.REPLACED, OutputStat.of(dest.stat()), new.digest
    )
    assert dest.stat().st_ino == new.path.stat().st_ino
    assert store.verify(old.digest)
    assert _names(dest.parent) == ["hero.png"]


def test_a_copy_as_we_left_it_is_replaced_when_the_image_changes(store, dest):
    """With copies, the record's digest says the bytes are old, without hashing the file."""
    old = store.put_bytes(OLD)
    new = store.put_bytes(NEW)
    first = materialise(store, old.digest, dest, recorded=None, link=_refuse_links)

    result = materialise(
        store,
        new.digest,
        dest,
        recorded=first.stat,
        recorded_digest=old.digest,
        link=_refuse_links,
    )

    assert result.action is OutputAction.REPLACED
    assert dest.read_bytes() == NEW
    assert _names(dest.parent) == ["hero.png"]


def test_after_a_fresh_clone_an_output_holding_the_bytes_we_wrote_is_replaced(store, dest):
    """A new inode and mtime with our old bytes is still ours: the recorded digest proves it."""
    old = store.put_bytes(OLD)
    new = store.put_bytes(NEW)
    first = materialise(store, old.digest, dest, recorded=None)
    _clone(dest)

    result = materialise(store, new.digest, dest, recorded=first.stat, recorded_digest=old.digest)

    assert result.action is OutputAction.REPLACED
    assert dest.read_bytes() == NEW


def test_after_a_fresh_clone_without_a_recorded_digest_a_changed_image_is_not_replaced(store, dest):
    """Without the digest we cannot prove the file is ours, so it is kept: the safe side."""
    old = store.put_bytes(OLD)
    new = store.put_bytes(NEW)
    first = materialise(store, old.digest, dest, recorded=None)
    _clone(dest)

    result = materialise(store, new.digest, dest, recorded=first.stat)

    assert result.action is OutputAction.USER_MODIFIED
    assert dest.read_bytes() == OLD


def test_a_deleted_output_is_created_again(store, dest):
    """An output the user removed comes back from the store, at no cost."""
    obj = store.put_bytes(NEW)
    first = materialise(store, obj.digest, dest, recorded=None)
    dest.unlink()

    result = materialise(store, obj.digest, dest, recorded=first.stat, recorded_digest=obj.digest)

    assert result.action is OutputAction.CREATED
    assert dest.read_bytes() == NEW


def test_a_symlink_at_an_output_name_is_left_alone(store, dest):
    """We never make symlinks, so one at an output's name is the user's, even if it points home."""
    obj = store.put_bytes(NEW)
    dest.parent.mkdir(parents=True)
    dest.symlink_to(obj.path)

    result = materialise(store, obj.digest, dest, recorded=None)

    assert result.action is OutputAction.USER_MODIFIED
    assert dest.is_symlink()
    assert remove_output(dest, recorded=result.stat, recorded_digest=obj.digest) is False


def test_a_file_that_appears_while_the_output_is_created_is_kept(store, dest):
    """Creation never replaces: a file made between our look and our link wins."""
    obj = store.put_bytes(NEW)

    def link_after_the_user_saves(src: Path, dst: Path) -> None:
        if not dest.exists():
            dest.write_bytes(b"saved just now")
        os.link(src, dst)

    result = materialise(store, obj.digest, dest, recorded=None, link=link_after_the_user_saves)

    assert result == MaterialiseResult(dest, OutputAction.USER_MODIFIED, None, None)
    assert dest.read_bytes() == b"saved just now"
    assert _names(dest.parent) == ["hero.png"]


def test_materialising_an_object_missing_from_the_store_names_it(store, dest):
    """A state row pointing at a missing object is a StateError, and no output is written."""
    digest = "ab" * 32

    with pytest.raises(StateError) as caught:
        materialise(store, digest, dest, recorded=None)

    assert str(caught.value) == (
        f"artifact {digest} for {dest} is missing from the store ({store.path_for(digest)})"
    )
    assert not dest.exists()


def test_an_in_place_edit_of_a_linked_output_shows_up_in_store_verify(store, dest):
    """The documented price of hard links: chmod plus an in-place write changes the object too."""
    obj = store.put_bytes(NEW)
    materialise(store, obj.digest, dest, recorded=None)

    dest.chmod(0o644)
    dest.write_bytes(b"edited in place")

    assert obj.path.read_bytes() == b"edited in place"
    assert store.verify(obj.digest) is False


def test_remove_output_deletes_an_output_as_we_left_it(store, dest):
    """A deleted image's output goes; its store object stays for gc to decide."""
    obj = store.put_bytes(NEW)
    written = materialise(store, obj.digest, dest, recorded=None)

    assert remove_output(dest, recorded=written.stat) is True
    assert not dest.exists()
    assert store.verify(obj.digest)


def test_remove_output_after_a_fresh_clone_deletes_a_file_with_the_bytes_we_wrote(store, dest):
    """A stale stat is forgiven when the bytes match the recorded digest."""
    obj = store.put_bytes(NEW)
    written = materialise(store, obj.digest, dest, recorded=None)
    _clone(dest)

    assert remove_output(dest, recorded=written.stat, recorded_digest=obj.digest) is True
    assert not dest.exists()


def test_remove_output_keeps_a_file_the_user_changed(store, dest):
    """An edited output outlives its image."""
    obj = store.put_bytes(NEW)
    written = materialise(store, obj.digest, dest, recorded=None)
    _save_as_an_editor_does(dest, b"the user's retouch")

    assert remove_output(dest, recorded=written.stat, recorded_digest=obj.digest) is False
    assert dest.read_bytes() == b"the user's retouch"


def test_remove_output_keeps_a_file_we_never_wrote_and_ignores_a_missing_one(dest):
    """No record means not ours; no file means nothing to do."""
    assert remove_output(dest, recorded=None) is False
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"hand-made")

    assert remove_output(dest, recorded=None) is False
    assert dest.read_bytes() == b"hand-made"


def test_a_copy_that_fails_leaves_no_temp_file_beside_the_output(store, dest):
    """If the object vanishes mid-copy (say, a concurrent gc), nothing half-made is left in out/."""
    obj = store.put_bytes(NEW)

    def object_vanishes(src: Path, dst: Path) -> None:
        store.remove(obj.digest)
        _refuse_links(src, dst)

    with pytest.raises(FileNotFoundError):
        materialise(store, obj.digest, dest, recorded=None, link=object_vanishes)

    assert _names(dest.parent) == []
