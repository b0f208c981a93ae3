"""Importing a picture the user already has: a local file, or a job already done at the API.

Owns the decisions of `ltx-reconcile import`: which spec image receives the picture, whether
it may replace what the state holds, whether a job's picture matches the spec's inputs, and
the one transaction that records it (`source='imported'`, cost 0) under the spec's current
key, so the next plan shows the image up to date. It never pays: nothing here sends a
create, and an imported job was paid for once, by whoever created it. It never writes the
journal, which records the jobs ltx-reconcile itself paid for; a job the journal already
knows is refused, since apply fetches it anyway. It never clobbers an output file someone
else wrote, and it does not print: it returns an `ImportResult`, warnings included.

What a job's picture can be checked against (contract 2.2): the status record carries no
request parameters, so only the picture itself speaks. Its size gives the aspect ratio, and
a PNG whose text chunks hold the generation inputs (the emulator writes them, E44) gives the
rest; any disagreement with the spec needs `--force`, because the key would then claim
inputs the picture was not made from. A local file is taken at the user's word: there is
nothing to compare it with, and adopting existing art is the point.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ltx_reconcile.api.client import ApiClient
from ltx_reconcile.api.model import JobStatus
from ltx_reconcile.artifacts import ImageInfo, digest_file, image_info
from ltx_reconcile.errors import DownloadError, IntegrityError, NotFoundError, UsageError
from ltx_reconcile.outputs import OutputAction, materialise
from ltx_reconcile.plan.model import Plan
from ltx_reconcile.settings import Settings
from ltx_reconcile.spec.image import ImageSpec
from ltx_reconcile.state.journal import Journal
from ltx_reconcile.state.records import (
    ArtifactRecord,
    ImageRecord,
    JournalEntry,
    OutputStat,
    StateSnapshot,
)
from ltx_reconcile.state.store import BaseStateStore
from ltx_reconcile.store_protocol import ArtifactStoreProtocol

__all__ = [
    "IMPORTABLE_TYPES",
    "JOB_ID_PATTERN",
    "Candidate",
    "ImportResult",
    "JobOffer",
    "find_image",
    "import_image",
    "offer",
]

JOB_ID_PATTERN: Final = re.compile(
    r"email:(?P<email>[^:\s]+@[^:\s]+):(?P<id>\S+)-type:(?P<kind>image|video)"
)
"""A jobId as contract 1.6 documents it: `email:<account email>:<id>-type:<image|video>`.
The id part is opaque (the docs' own examples are not valid UUIDs), so it is not checked."""

IMPORTABLE_TYPES: Final[Mapping[str, str]] = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/webp": "WebP",
}
"""The picture formats import accepts, by MIME type, with their names for messages."""

_ASPECT_TOLERANCE: Final = 0.02
"""How far a picture's width:height may stray from the spec's ratio (rounding of sizes)."""

_COMPARED_INPUTS: Final = (
    "prompt",
    "model",
    "seed",
    "location",
    "weather",
    "lighting",
    "style",
    "shotType",
    "shotAngle",
)
"""Inputs compared with a PNG's text chunks, in the API's spelling (the aspect ratio is
compared through the picture's size instead, which every picture has)."""

_NO_STYLE: Final = "base"

_URL_WAIT_S: Final = 30.0
"""How long a completed job may take to offer its download URL before import gives up."""


def find_image(images: Sequence[ImageSpec], name: str) -> ImageSpec:
    """The spec image named `name`. Raises `UsageError`, with the nearest name, if none."""
    for image in images:
        if image.name == name:
            return image
    import difflib  # only on the error path

    close = difflib.get_close_matches(name, [image.name for image in images], n=1, cutoff=0.6)
    suggestion = f' (did you mean "{close[0]}"?)' if close else ""
    raise UsageError(
        f'no image "{name}" in the specs{suggestion}',
        hint="`ltx-reconcile plan` lists every image address",
    )


@dataclass(frozen=True, slots=True)
class Candidate:
    """A picture offered for import: checked to be an importable image, not yet stored."""

    path: Path
    digest: str
    size: int
    info: ImageInfo
    origin: str
    """What the user named: the path as typed, or `job <jobId>`."""
    job_id: str | None = None
    email: str | None = None
    """The account that ran the job (from its jobId), for a job."""
    embedded: Mapping[str, str] | None = None
    """A job picture's PNG text chunks (the generation inputs, where the API writes them)."""
    is_download: bool = False
    """True when `path` is our temporary download: consumed by the store, or deleted."""

    def discard(self) -> None:
        """Delete the temporary download, if this is one and it is still there."""
        if self.is_download:
            self.path.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class JobOffer:
    """A job id to import from the API, not yet read."""

    job_id: str
    email: str


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did; `output_action` is None when nothing changed (a re-import)."""

    image: str
    origin: str
    digest: str
    mime: str
    width: int
    height: int
    output: str
    output_action: OutputAction | None
    replaced: str | None = None
    """The digest of the picture the image had before; it stays in the store until gc."""
    warnings: tuple[str, ...] = ()
    """Disagreements between a job and the spec, imported anyway under `--force`."""

    @property
    def changed(self) -> bool:
        """False for a re-import of the picture the image already had."""
        return self.output_action is not None


def offer(source: str, *, root: Path, settings: Settings) -> Candidate | JobOffer:
    """What `source` names: a job id (contract 1.6) or a local image file below `root`.

    A file is read and checked now, before the state is opened. Raises `UsageError` for a
    video job, a job without a token to read it, and a file that is missing, unreadable or
    not a PNG, JPEG or WebP image.
    """
    match = JOB_ID_PATTERN.fullmatch(source)
    if match is None:
        return _read_file(root / source, shown=source)
    if match["kind"] != "image":
        raise UsageError(f"job {source} is a video job; only images can be imported")
    if settings.token is None:
        raise UsageError(
            "USEAPI_TOKEN is not set; reading a job needs the API",
            hint="export USEAPI_TOKEN=..., or read the embedded emulator's jobs with --emulator",
        )
    return JobOffer(source, match["email"])


def import_image(
    store: BaseStateStore,
    artifacts: ArtifactStoreProtocol,
    *,
    root: Path,
    spec: ImageSpec,
    plan: Plan,
    offered: Candidate | JobOffer,
    settings: Settings,
    force: bool,
) -> ImportResult:
    """Adopt `offered` as `spec`'s picture, for free; the caller holds the state's lease.

    `plan` is a plan of the specs against this state, for the image's current key and
    inputs. The picture is stored, its output file written, then the artifact and image
    rows are committed in one transaction. Raises `UsageError` for a refusal (see
    docs/operations.md), `ApiError` when the API cannot be read, and `StateError`.
    """
    target = _Target.of(spec, plan, store.snapshot())
    if isinstance(offered, JobOffer):
        _refuse_journaled_job(store, offered.job_id)
        candidate = asyncio.run(_fetch_job(offered, settings, artifacts.temp_dir(), spec.name))
    else:
        candidate = offered
    try:
        return _adopt(store, artifacts, root, target, candidate, force=force)
    finally:
        candidate.discard()


# -- what the state says about the image ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    """The spec image receiving the picture, with its current key and its state now."""

    spec: ImageSpec
    key: str
    inputs: Mapping[str, object]
    record: ImageRecord | None
    open_entry: JournalEntry | None

    @classmethod
    def of(cls, spec: ImageSpec, plan: Plan, snapshot: StateSnapshot) -> _Target:
        change = next(c for c in plan.changes if c.image == spec.name)
        if change.key is None or change.inputs is None:
            upstream = change.depends_on
            raise UsageError(
                f"{spec.name} references {upstream}, which has no picture yet, so the "
                f"key of {spec.name} is not known",
                hint=f"apply or import {upstream} first",
            )
        open_entries = snapshot.open_jobs.get(change.key, ())
        return cls(
            spec=spec,
            key=change.key,
            inputs=dict(change.inputs),
            record=snapshot.images.get(spec.name),
            open_entry=open_entries[0] if open_entries else None,
        )

    @property
    def present_digest(self) -> str | None:
        """The picture the image has now, if the state records one."""
        record = self.record
        if record is None or record.status != "present":
            return None
        return record.digest


def _refuse_journaled_job(store: BaseStateStore, job_id: str) -> None:
    if job_id in Journal(store).known_job_ids():
        raise UsageError(
            f"job {job_id} is already in the journal: ltx-reconcile paid for it, so it is "
            "this state's already",
            hint="run `ltx-reconcile apply`: it fetches journaled jobs at no further cost",
        )


# -- reading the picture -----------------------------------------------------------------


def _read_file(path: Path, *, shown: str) -> Candidate:
    try:
        info = image_info(path)
        digest = digest_file(path)
        size = path.stat().st_size
    except IntegrityError:
        raise UsageError(
            f"{shown} is not an image file", hint="import takes PNG, JPEG or WebP files"
        ) from None
    except OSError as err:
        raise UsageError(f"cannot read {shown}: {err.strerror or err}") from None
    _require_importable(info, shown)
    return Candidate(path, digest, size, info, origin=shown)


def _require_importable(info: ImageInfo, shown: str) -> None:
    if info.mime not in IMPORTABLE_TYPES:
        raise UsageError(
            f"{shown} is {info.mime}, not an image import takes",
            hint="import takes PNG, JPEG or WebP files; convert it first",
        )


async def _fetch_job(job: JobOffer, settings: Settings, temp_dir: Path, image: str) -> Candidate:
    """Read the job's status, require its picture, and download it, verified, to `temp_dir`."""
    assert settings.token is not None  # noqa: S101 - offer() refuses a job without a token
    async with ApiClient(
        settings.api_url, settings.token, timeout_s=settings.request_timeout_s
    ) as client:
        status = await _job_status(client, job.job_id, settings, image)
        url = _finished_picture_url(job.job_id, status)
        try:
            download = await client.download(url, temp_dir, image=image)
        except DownloadError as err:
            raise DownloadError(
                f"{image}: could not download the picture of job {job.job_id}: {err}",
                image=image,
                hint="run the same `ltx-reconcile import` again: it reads a fresh URL",
            ) from None
    try:
        info, embedded = await asyncio.to_thread(_inspect_download, download.path, job.job_id)
    except BaseException:
        download.path.unlink(missing_ok=True)
        raise
    return Candidate(
        path=download.path,
        digest=download.sha256,
        size=download.size_bytes,
        info=info,
        origin=f"job {job.job_id}",
        job_id=job.job_id,
        email=job.email,
        embedded=embedded,
        is_download=True,
    )


async def _job_status(client: ApiClient, job_id: str, settings: Settings, image: str) -> JobStatus:
    """The job's status; a completed one is read again until it offers its download URL."""
    try:
        status = await client.get_job(job_id, image=image)
        if status.status.type == "completed" and not status.is_done:
            # `completed` can come before the artifact's URL (contract 2.2): poll briefly,
            # but never wait for a job that is still running: that is the user's call.
            status = await client.wait_for_job(
                job_id,
                poll_interval_s=settings.poll_interval_s,
                timeout_s=_URL_WAIT_S,
                image=image,
            )
    except NotFoundError as err:
        raise NotFoundError(
            f"job {job_id} is unknown at the API, or its record expired",
            status=err.status,
            api_message=err.api_message,
            image=image,
            hint="check the job id and the account; the API keeps job records for a limited time",
        ) from None
    return status


def _finished_picture_url(job_id: str, status: JobStatus) -> str:
    """The download URL of a completed job; refuses a failed or unfinished one."""
    state = status.status
    if status.is_failed:
        reason = state.message or "no reason given"
        raise UsageError(
            f"job {job_id} failed ({reason}); it has no picture to import",
            hint="generate the image with `ltx-reconcile apply` instead",
        )
    artifact = status.artifact
    if state.type == "active":
        done = f" ({state.progress}% done)" if state.progress is not None else ""
        raise UsageError(
            f"job {job_id} is still running{done}; it has no picture yet",
            hint="wait until it has finished, then run the same command again",
        )
    if artifact is None or artifact.asset_url is None:
        raise UsageError(
            f"job {job_id} has completed, but the API offers no download URL for its picture yet",
            hint="run the same command again in a minute",
        )
    mime = artifact.asset.mime_type if artifact.asset is not None else None
    if mime is not None and not mime.startswith("image/"):
        raise UsageError(f"job {job_id} produced {mime}, not an image")
    return artifact.asset_url


def _inspect_download(path: Path, job_id: str) -> tuple[ImageInfo, dict[str, str]]:
    shown = f"the picture of job {job_id}"
    try:
        info = image_info(path)
    except IntegrityError:
        raise UsageError(f"{shown} is not an image file") from None
    _require_importable(info, shown)
    return info, _text_chunks(path)


def _text_chunks(path: Path) -> dict[str, str]:
    from PIL import Image

    with Image.open(path) as picture:
        # Only PNG has text chunks; reading them decodes the picture, which is small.
        text = getattr(picture, "text", None)
        return {str(k): str(v) for k, v in text.items()} if isinstance(text, dict) else {}


# -- deciding and recording ----------------------------------------------------------------


def _adopt(
    store: BaseStateStore,
    artifacts: ArtifactStoreProtocol,
    root: Path,
    target: _Target,
    candidate: Candidate,
    *,
    force: bool,
) -> ImportResult:
    record = target.record
    if (
        record is not None
        and target.present_digest == candidate.digest
        and record.key == target.key
    ):
        return _result(target, candidate, action=None)
    _check_may_replace(target, candidate, force=force)
    warnings = _mismatches(target, candidate) if candidate.job_id is not None else ()
    if warnings and not force:
        raise UsageError(
            f"{candidate.origin} does not match the spec of {target.spec.name}:\n"
            + "\n".join(f"  {line}" for line in warnings),
            hint="pass --force to import it anyway (the state will then say the spec's "
            "inputs made it), or change the spec to match the job",
        )
    stored = artifacts.put_file(
        candidate.path, expected_digest=candidate.digest, move=candidate.is_download
    )
    written = _write_output(artifacts, root, target, stored.digest)
    now = store.clock()
    with store.transaction():
        store.put_artifact(_artifact_record(target, candidate, now))
        store.put_image(
            ImageRecord(
                name=target.spec.name,
                key=target.key,
                digest=stored.digest,
                output=target.spec.output,
                status="present",
                inputs=target.inputs,
                output_stat=written.stat,
                updated_at=now,
                protect=target.spec.protect,
            )
        )
    previous = target.present_digest
    replaced = previous if previous != stored.digest else None
    return _result(target, candidate, action=written.action, replaced=replaced, warnings=warnings)


def _check_may_replace(target: _Target, candidate: Candidate, *, force: bool) -> None:
    """Refuse to give the image another picture than its own without `--force`."""
    name = target.spec.name
    present = target.present_digest
    if present is not None and present != candidate.digest:
        if target.spec.protect:
            raise UsageError(
                f"{name} is protected (protect: true); import would replace its picture",
                hint=f"remove `protect: true` from the spec of {name} to import over it",
            )
        if not force:
            raise UsageError(
                f"{name} already has a picture (sha256 {present}); import would replace it",
                hint="pass --force to replace it; the old picture stays in the store until gc",
            )
    entry = target.open_entry
    if entry is not None and not force:
        job = f", job {entry.job_id}" if entry.job_id else ""
        raise UsageError(
            f"a job for the inputs of {name} is open in the journal ({entry.state}{job}); "
            "it may already be paid for",
            hint="run `ltx-reconcile apply` to fetch it at no further cost, or pass --force "
            "to import anyway",
        )


def _mismatches(target: _Target, candidate: Candidate) -> tuple[str, ...]:
    """How a job's picture disagrees with the spec, as far as the picture tells."""
    lines: list[str] = []
    ratio = target.spec.inputs.aspect_ratio
    width, height = candidate.info.width, candidate.info.height
    if not _has_ratio(width, height, ratio):
        lines.append(f"aspect ratio: the picture is {width}x{height}, the spec asks for {ratio}")
    embedded = candidate.embedded or {}
    if "prompt" not in embedded:
        return tuple(lines)  # no inputs in the picture: the real API's, most likely
    wanted = target.spec.inputs.api_fields()
    for field in _COMPARED_INPUTS:
        job_value = _meaningful(field, embedded.get(field))
        spec_value = _meaningful(field, wanted.get(field))
        if job_value != spec_value:
            lines.append(
                f"{field}: {_shown(job_value)} in the job, {_shown(spec_value)} in the spec"
            )
    job_reference = embedded.get("referenceDigest")
    spec_reference = target.inputs.get("reference_digest")
    if job_reference != spec_reference:
        lines.append(
            f"reference image (sha256): {_shown(job_reference)} in the job, "
            f"{_shown(spec_reference)} in the spec"
        )
    return tuple(lines)


def _has_ratio(width: int, height: int, ratio: str) -> bool:
    across, down = (int(part) for part in ratio.split(":"))
    return abs(width * down - height * across) <= _ASPECT_TOLERANCE * height * across


def _meaningful(field: str, value: object) -> str | None:
    # The API reads an empty text as absent (E4) and style `base` as no style (E11).
    if value is None or value == "" or (field == "style" and value == _NO_STYLE):
        return None
    return str(value)


def _shown(value: object) -> str:
    return "(none)" if value is None else f'"{value}"'


def _write_output(
    artifacts: ArtifactStoreProtocol, root: Path, target: _Target, digest: str
) -> _Written:
    """Materialise the output file; refuses a file there that someone else wrote."""
    record = target.record
    same_file = record is not None and record.output == target.spec.output
    result = materialise(
        artifacts,
        digest,
        root / target.spec.output,
        recorded=record.output_stat if record is not None and same_file else None,
        recorded_digest=record.digest if record is not None and same_file else None,
    )
    if result.action is OutputAction.USER_MODIFIED:
        raise UsageError(
            f"{target.spec.output} already exists with other content; import never "
            "overwrites a file it did not write",
            hint=f"move it away, or import that file itself: "
            f"`ltx-reconcile import {target.spec.name} {target.spec.output}`",
        )
    assert result.stat is not None  # noqa: S101 - written or unchanged files have a stat
    return _Written(result.action, result.stat)


@dataclass(frozen=True, slots=True)
class _Written:
    action: OutputAction
    stat: OutputStat


def _artifact_record(target: _Target, candidate: Candidate, now: float) -> ArtifactRecord:
    return ArtifactRecord(
        digest=candidate.digest,
        key=target.key,
        size=candidate.size,
        mime=candidate.info.mime,
        width=candidate.info.width,
        height=candidate.info.height,
        job_id=candidate.job_id,
        model=target.spec.inputs.model.value,
        email=candidate.email,
        cost=0,
        created_at=now,
        source="imported",
        # The request that made it is unknown: the job record does not expose it (2.2).
        request=None,
    )


def _result(
    target: _Target,
    candidate: Candidate,
    *,
    action: OutputAction | None,
    replaced: str | None = None,
    warnings: tuple[str, ...] = (),
) -> ImportResult:
    return ImportResult(
        image=target.spec.name,
        origin=candidate.origin,
        digest=candidate.digest,
        mime=candidate.info.mime,
        width=candidate.info.width,
        height=candidate.info.height,
        output=target.spec.output,
        output_action=action,
        replaced=replaced,
        warnings=warnings,
    )
