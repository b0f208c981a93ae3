"""The rows of the state, as frozen values.

Everything here is plain data: no SQL, no I/O. A record read back from the state equals the
record that was written (the hypothesis round-trip tests in tests/state pin this). Times are
seconds since the Unix epoch (UTC), as the injected clock returns them; costs are credits.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, NamedTuple, get_args

__all__ = [
    "ARTIFACT_SOURCES",
    "IMAGE_STATUSES",
    "JOURNAL_STATES",
    "OPEN_JOURNAL_STATES",
    "SPEND_KINDS",
    "ArtifactRecord",
    "ArtifactSource",
    "ImageRecord",
    "ImageStatus",
    "JournalEntry",
    "JournalState",
    "JsonObject",
    "Lease",
    "OutputStat",
    "Pin",
    "SpendKind",
    "StateSnapshot",
    "Upload",
]

ImageStatus = Literal["present", "pending", "failed", "unknown"]
IMAGE_STATUSES: Final = frozenset(get_args(ImageStatus))

ArtifactSource = Literal["generated", "imported", "refetched"]
ARTIFACT_SOURCES: Final = frozenset(get_args(ArtifactSource))

JournalState = Literal[
    "submitting", "submitted", "completed", "fetched", "failed", "unknown", "abandoned"
]
JOURNAL_STATES: Final = frozenset(get_args(JournalState))
OPEN_JOURNAL_STATES: Final[frozenset[JournalState]] = frozenset(
    {"submitting", "submitted", "completed", "unknown"}
)
"""States of an entry that may still cost money or still owes us an image."""

SpendKind = Literal["generation", "extra", "refund"]
"""`generation`: a job we submitted; `extra`: a second paid job found for one replyRef by
recovery; `refund`: money the API gave back (a negative amount)."""
SPEND_KINDS: Final = frozenset(get_args(SpendKind))


class JsonObject(Mapping[str, object]):
    """A read-only JSON object that is parsed only when first looked into.

    `plan` reads 10,000 rows but shows the inputs of only the few that changed; parsing every
    row's JSON up front would cost more than the rest of the read together.
    """

    __slots__ = ("_text", "_value")

    def __init__(self, text: str) -> None:
        self._text = text
        self._value: dict[str, object] | None = None

    @property
    def text(self) -> str:
        """The JSON text exactly as stored."""
        return self._text

    def _parsed(self) -> dict[str, object]:
        if self._value is None:
            value = json.loads(self._text)
            if not isinstance(value, dict):
                msg = f"expected a JSON object, got {type(value).__name__}"
                raise TypeError(msg)
            self._value = value
        return self._value

    def __getitem__(self, key: str) -> object:
        return self._parsed()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._parsed())

    def __len__(self) -> int:
        return len(self._parsed())

    def __repr__(self) -> str:
        return f"JsonObject({self._text})"


def dump_json(value: Mapping[str, object]) -> str:
    """Canonical JSON text of `value` (sorted keys, no spaces); a `JsonObject` keeps its text."""
    if isinstance(value, JsonObject):
        return value.text
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


@dataclass(frozen=True, slots=True)
class OutputStat:
    """What the named output file looked like when we last wrote it.

    Comparing these three numbers with a fresh `os.stat` tells, without reading the file,
    whether a user has edited or replaced it since.
    """

    size: int
    mtime_ns: int
    inode: int

    @classmethod
    def of(cls, stat: os.stat_result) -> OutputStat:
        """The fingerprint of a file from its `os.stat` result."""
        return cls(size=stat.st_size, mtime_ns=stat.st_mtime_ns, inode=stat.st_ino)


class ImageRecord(NamedTuple):
    """One image address the state tracks: its key, its artifact and its named output.

    A `NamedTuple`, not a frozen dataclass: a plan decodes one per tracked image, and the
    dataclass's field-by-field `object.__setattr__` made that the planner's largest cost.
    """

    name: str
    key: str
    digest: str | None
    """The artifact's sha256, once one is stored for this image."""
    output: str
    """Where the named file is materialised, relative to the working directory."""
    status: ImageStatus
    inputs: Mapping[str, object]
    """The generation inputs as JSON, so a plan can show `old -> new` for each field."""
    output_stat: OutputStat | None
    updated_at: float
    protect: bool = False
    """The spec's `protect` when apply last wrote this row: it still blocks a delete once
    the spec that set it is gone."""


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    """A stored object and where it came from; rows are written once and never changed."""

    digest: str
    key: str
    size: int
    mime: str
    width: int | None
    height: int | None
    job_id: str | None
    model: str
    email: str | None
    cost: float
    created_at: float
    source: ArtifactSource
    request: Mapping[str, object] | None
    """The request body that produced it (no token: the token is a header)."""


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One attempt to create one image through the paid API (contract section 4.5)."""

    id: int
    key: str
    image: str
    attempt: int
    """1 for the first attempt at this key, then 2, 3, ...; extra jobs share their origin's."""
    email: str
    reply_ref: str
    request_digest: str
    request: Mapping[str, object]
    state: JournalState
    job_id: str | None
    sent_at: float
    updated_at: float
    message: str | None
    cost: float
    digest: str | None
    extra_of: int | None
    """For a second paid job found under the same replyRef: the entry it duplicates."""


@dataclass(frozen=True, slots=True)
class Upload:
    """A reference image uploaded to one account, so it is never uploaded twice."""

    digest: str
    email: str
    file_id: str
    uploaded_at: float


@dataclass(frozen=True, slots=True)
class Pin:
    """A stored object `gc` keeps although no image uses it (`ltx-reconcile gc --pin`)."""

    digest: str
    note: str
    pinned_at: float


@dataclass(frozen=True, slots=True)
class Lease:
    """Who holds the state's write lease, and until when."""

    lock_id: str
    owner: str
    """`user@host`, for people reading the lock message."""
    pid: int
    host: str
    operation: str
    acquired_at: float
    heartbeat_at: float
    expires_at: float
    pid_start: str | None
    """The holder's process start time, so a reused pid is not mistaken for the holder."""


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """A consistent, read-only view of the whole state at one serial."""

    path: Path
    lineage: str | None
    """Fixed when the state is created; None when there is no state file yet."""
    serial: int
    images: Mapping[str, ImageRecord] = field(default_factory=dict)
    artifacts_by_key: Mapping[str, ArtifactRecord] = field(default_factory=dict)
    """The newest artifact of each key."""
    artifacts: Mapping[str, ArtifactRecord] = field(default_factory=dict)
    """Every artifact, by digest."""
    open_jobs: Mapping[str, tuple[JournalEntry, ...]] = field(default_factory=dict)
    """Journal entries that are submitting, submitted, completed or unknown, by key."""
    uploads: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """(digest, email) -> the API's fileId."""
    pins: Mapping[str, Pin] = field(default_factory=dict)
    """Objects kept by `gc` although no image uses them, by digest."""
