"""Named output files (`out/hero.png`): written from the artifact store, never clobbered.

Owns the act of writing and removing the output files the specs name, nothing else. The
caller records the returned `OutputStat` and digest in state and hands them back next time;
that record is how a file we wrote is told apart from one a user changed.

Rules:
- an output appears or changes only by an atomic link or rename: no reader sees half a file;
- a file that differs from what we last wrote, or that we never wrote, is the user's: it is
  reported and left alone, never replaced or removed (`OutputAction.USER_MODIFIED`);
- a file as we left it is replaced atomically when its image's digest changes. (One race is
  left open: a save landing in the microseconds between our check and our rename is lost,
  since rename(2) cannot compare-and-swap. Creation has none where hard links work:
  link(2) never replaces.)
The record is checked cheaply first (size, mtime_ns, inode, as make and git do); only when it
cannot decide is the file hashed, e.g. in a fresh GitOps clone, where the committed `out/`
files have new inodes and mtimes but the bytes we wrote (issue 7).

Hard links, and their price. An output is a hard link to its store object when it can be
(a copy when not: another filesystem, no hard links, too many links). Links cost no space and
no time for 10,000 images, but share the object's inode, hence its read-only mode:
- an editor that writes in place fails with EACCES, which protects the store;
- an editor that saves through a new file and a rename (most image editors, `git checkout`)
  replaces the link and leaves the object intact;
- but the mode is the only guard: root ignores it (CI containers often run as root), and a
  user who chmods the file and edits it in place rewrites the store object too, losing the
  paid-for bytes unless git or a re-download still has them.
We accept that for the space and speed, and because the store is checked rather than trusted:
`verify` (issue 6) re-hashes objects and reports a changed one. Callers that prefer safety to
space pass a `link` that refuses (every output is then a writable copy). Materialising does
not re-hash an output that is the object's own inode; that is `verify`'s job.

It must not write the store (only read objects), touch state, or print.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ltx_reconcile.artifacts import (
    LinkFunction,
    digest_file,
    fsync_dir,
    install_no_clobber,
)
from ltx_reconcile.errors import StateError
from ltx_reconcile.state.records import OutputStat
from ltx_reconcile.store_protocol import ArtifactStoreProtocol

__all__ = [
    "MaterialiseResult",
    "OutputAction",
    "OutputCondition",
    "OutputStat",
    "inspect_output",
    "materialise",
    "remove_output",
]


class OutputAction(StrEnum):
    """What `materialise` did to an output file; the value is how reports spell it."""

    CREATED = "created"
    REPLACED = "replaced"
    UNCHANGED = "unchanged"
    USER_MODIFIED = "modified by user"


class OutputCondition(StrEnum):
    """What `inspect_output` found at an output's name; the value is how reports spell it."""

    MISSING = "missing"
    AS_RECORDED = "as recorded"
    """Size, mtime and inode are as we last wrote them: ours, not hashed."""
    SAME_BYTES = "same bytes"
    """The stat moved (a fresh clone, say) but the bytes are the object's."""
    MODIFIED = "modified by user"


@dataclass(frozen=True, slots=True)
class MaterialiseResult:
    """The outcome for one output file, and what to record for it.

    Record `stat` and `digest` as they are: for a file modified by the user they are the old
    record, not the user's file, so the edit stays protected on every later run.
    """

    path: Path
    action: OutputAction
    stat: OutputStat | None
    digest: str | None


def materialise(
    store: ArtifactStoreProtocol,
    digest: str,
    dest: Path,
    *,
    recorded: OutputStat | None,
    recorded_digest: str | None = None,
    link: LinkFunction = os.link,
) -> MaterialiseResult:
    """Make `dest` hold the object `digest`, unless the user has changed `dest`.

    `recorded` and `recorded_digest` are what the last call returned for `dest` (None if we
    never wrote it). Without `recorded_digest`, a file whose stat moved (a fresh clone) and
    whose bytes are not `digest` counts as the user's: the safe side. Parent directories are
    created. Raises `StateError` when the object is missing from the store.
    """
    source = store.path_for(digest)
    try:
        source_stat = source.stat()
    except FileNotFoundError as err:
        raise StateError(
            f"artifact {digest} for {dest} is missing from the store ({source})",
            hint="run `ltx-reconcile verify --repair` to restore it",
        ) from err
    current = _lstat_or_none(dest)
    if current is None:
        action = OutputAction.CREATED
    else:
        action = _classify(dest, current, source_stat, digest, recorded, recorded_digest)
        if action is OutputAction.UNCHANGED:
            return MaterialiseResult(dest, action, OutputStat.of(current), digest)
    if action is not OutputAction.USER_MODIFIED:
        written = _write(source, dest, link=link, replace=action is OutputAction.REPLACED)
        if written is not None:
            return MaterialiseResult(dest, action, written, digest)
    return MaterialiseResult(dest, OutputAction.USER_MODIFIED, recorded, recorded_digest)


def inspect_output(dest: Path, digest: str, *, recorded: OutputStat | None) -> OutputCondition:
    """How `dest` compares with the object `digest` recorded for it; changes nothing.

    The record is checked first, as `materialise` does; the file is hashed only when its
    stat moved. So an in-place edit that kept size, mtime and inode reads as AS_RECORDED,
    as it does for make and git.
    """
    current = _lstat_or_none(dest)
    if current is None:
        return OutputCondition.MISSING
    if not stat.S_ISREG(current.st_mode):
        return OutputCondition.MODIFIED
    if _is_as_recorded(current, recorded):
        return OutputCondition.AS_RECORDED
    if digest_file(dest) == digest:
        return OutputCondition.SAME_BYTES
    return OutputCondition.MODIFIED


def remove_output(
    dest: Path, *, recorded: OutputStat | None, recorded_digest: str | None = None
) -> bool:
    """Delete `dest` for a deleted image, only if it is as we wrote it; True when deleted.

    A missing file, one we never wrote, and one the user changed are all left alone.
    """
    current = _lstat_or_none(dest)
    if current is None or not _is_ours(dest, current, recorded, recorded_digest):
        return False
    dest.unlink()
    fsync_dir(dest.parent)
    return True


def _classify(
    dest: Path,
    current: os.stat_result,
    source_stat: os.stat_result,
    digest: str,
    recorded: OutputStat | None,
    recorded_digest: str | None,
) -> OutputAction:
    """Decide what an existing `dest` needs, hashing it only when the record cannot tell."""
    if not stat.S_ISREG(current.st_mode):
        # A symlink or directory at an output's name is nothing we ever make.
        return OutputAction.USER_MODIFIED
    if (current.st_dev, current.st_ino) == (source_stat.st_dev, source_stat.st_ino):
        return OutputAction.UNCHANGED
    if _is_as_recorded(current, recorded) and recorded_digest is not None:
        return OutputAction.UNCHANGED if recorded_digest == digest else OutputAction.REPLACED
    if current.st_size == source_stat.st_size and digest_file(dest) == digest:
        return OutputAction.UNCHANGED
    if _is_ours(dest, current, recorded, recorded_digest):
        return OutputAction.REPLACED
    return OutputAction.USER_MODIFIED


def _is_ours(
    dest: Path,
    current: os.stat_result,
    recorded: OutputStat | None,
    recorded_digest: str | None,
) -> bool:
    """Whether `dest` is as we last wrote it: same stat, or (stat moved) same bytes."""
    if not stat.S_ISREG(current.st_mode):
        return False
    if _is_as_recorded(current, recorded):
        return True
    return recorded_digest is not None and digest_file(dest) == recorded_digest


def _is_as_recorded(current: os.stat_result, recorded: OutputStat | None) -> bool:
    # Field by field, not `==`: dataclass equality is False across classes, and the state
    # layer has its own class with these three fields; a mix-up must not make every output
    # look edited.
    return recorded is not None and (
        (current.st_size, current.st_mtime_ns, current.st_ino)
        == (recorded.size, recorded.mtime_ns, recorded.inode)
    )


def _lstat_or_none(path: Path) -> os.stat_result | None:
    try:
        return path.lstat()
    except FileNotFoundError:
        return None


def _write(source: Path, dest: Path, *, link: LinkFunction, replace: bool) -> OutputStat | None:
    """Put the object at `dest` atomically and return the new stat.

    With `replace`, the file at `dest` (checked to be ours) is swapped out. Without it, `dest`
    is created only if still absent; a file that appeared since we looked is the user's, is
    kept, and the result is None.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    staged = _stage(source, dest, link)
    try:
        if replace:
            staged.replace(dest)
        elif not install_no_clobber(staged, dest, link=link):
            return None
    finally:
        staged.unlink(missing_ok=True)
    fsync_dir(dest.parent)
    return OutputStat.of(dest.lstat())


def _stage(source: Path, dest: Path, link: LinkFunction) -> Path:
    """A complete copy or link of `source` beside `dest`, under a name nobody else uses."""
    staged = dest.with_name(f".{dest.name}.{secrets.token_hex(8)}.tmp")
    try:
        link(source, staged)
    except OSError:
        # Another filesystem, no hard links, or the object has too many links: a copy costs
        # space but is complete before it gets its name.
        _copy_durably(source, staged)
    return staged


def _copy_durably(source: Path, staged: Path) -> None:
    try:
        shutil.copyfile(source, staged)
        with staged.open("rb") as file:
            os.fsync(file.fileno())
    except BaseException:
        staged.unlink(missing_ok=True)
        raise
