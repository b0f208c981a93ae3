"""`ltx-reconcile state ...`: look into the state and edit it without touching SQLite by hand.

`list`, `show` and `pull` only read (a snapshot; the serial does not move). `rm`, `mv` and
`push` write, under the state's lease, in one transaction each. `pull` from one backend and
`push` to the other (`--state FILE`, `--state postgresql://…`) move a state between them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import click

from ltx_reconcile.cli import render
from ltx_reconcile.cli.app import CliApp
from ltx_reconcile.cli.options import lock_timeout_option, open_workspace, workspace_options
from ltx_reconcile.errors import ExitCode, UsageError
from ltx_reconcile.inventory import ImageDetails, ImageSummary, Removal, RenamedImage
from ltx_reconcile.state.transfer import PushResult, parse_document
from ltx_reconcile.workspace import WorkspacePaths

_LOCK_TIMEOUT = lock_timeout_option()
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


@click.group("state")
def state() -> None:
    """Inspect and edit the state: list, show, rm, mv, pull, push.

    Example:

        ltx-reconcile state list 'ranger*'
    """


@state.command("list")
@click.argument("pattern", required=False)
@workspace_options
@_JSON
@click.pass_obj
def state_list(
    app: CliApp,
    pattern: str | None,
    specs_dir: Path | None,
    state_path: Path | None,
    objects_dir: Path | None,
    as_json: bool,
) -> int:
    """List the images the state tracks, or those whose name matches the glob PATTERN.

    One line each: name, status, model, credits paid, digest prefix, output file. Example:

        ltx-reconcile state list 'hero*'
    """
    images = open_workspace(app, specs_dir, state_path, objects_dir).list_images(pattern)
    console = render.stdout_console()
    if as_json:
        _write_json(console, [image.as_dict() for image in images])
    elif not images:
        which = "" if pattern is None else f" match {pattern}"
        console.print(f"No images in the state{which}.", markup=False)
    else:
        _write_lines(console, _table(images))
    return ExitCode.OK


@state.command("show")
@click.argument("name")
@workspace_options
@_JSON
@click.pass_obj
def state_show(
    app: CliApp,
    name: str,
    specs_dir: Path | None,
    state_path: Path | None,
    objects_dir: Path | None,
    as_json: bool,
) -> int:
    """Show everything the state records about image NAME.

    Its key and inputs, its artifact (digest, store path, job id, model, cost, source),
    output file, times and protect flag. Example:

        ltx-reconcile state show hero
    """
    workspace = open_workspace(app, specs_dir, state_path, objects_dir)
    details = workspace.image_details(name)
    console = render.stdout_console()
    if as_json:
        _write_json(console, details.as_dict())
    else:
        _write_lines(console, _details_lines(details, workspace.paths))
    return ExitCode.OK


@state.command("rm")
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@workspace_options
@_LOCK_TIMEOUT
@click.pass_obj
def state_rm(
    app: CliApp,
    names: tuple[str, ...],
    specs_dir: Path | None,
    state_path: Path | None,
    objects_dir: Path | None,
    lock_timeout: float,
) -> int:
    """Forget images: the state stops tracking them; nothing else is deleted.

    Their stored objects and output files stay. While a spec still names an image, the
    next plan reuses its stored object at no cost. Example:

        ltx-reconcile state rm hero villain
    """
    workspace = open_workspace(app, specs_dir, state_path, objects_dir)
    removal = workspace.remove_images(names, lock_timeout_s=lock_timeout)
    _write_lines(render.stdout_console(), _removal_lines(removal))
    return ExitCode.OK


@state.command("mv")
@click.argument("old")
@click.argument("new")
@workspace_options
@_LOCK_TIMEOUT
@click.pass_obj
def state_mv(
    app: CliApp,
    old: str,
    new: str,
    specs_dir: Path | None,
    state_path: Path | None,
    objects_dir: Path | None,
    lock_timeout: float,
) -> int:
    """Rename image OLD to NEW in the state, after renaming it in a spec.

    Its key, artifact and output file stay as they are; the file is not moved. Example:

        ltx-reconcile state mv hero hero-day
    """
    workspace = open_workspace(app, specs_dir, state_path, objects_dir)
    renamed = workspace.rename_image(old, new, lock_timeout_s=lock_timeout)
    _write_lines(render.stdout_console(), _rename_lines(renamed))
    return ExitCode.OK


@state.command("pull")
@workspace_options
@click.pass_obj
def state_pull(
    app: CliApp, specs_dir: Path | None, state_path: Path | None, objects_dir: Path | None
) -> int:
    """Print the whole state as a versioned JSON document (for a backup, or to edit).

    Every table but the lease, with the state's lineage, serial and schema version, the
    same from the state file and from PostgreSQL. Example:

        ltx-reconcile state pull > state.json
    """
    document = open_workspace(app, specs_dir, state_path, objects_dir).pull_state()
    console = render.stdout_console()
    console.file.write(document.model_dump_json(indent=1))
    console.file.write("\n")
    return ExitCode.OK


@state.command("push")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@workspace_options
@click.option(
    "--force",
    is_flag=True,
    help="Push a document of another lineage or an older serial, or one without journal "
    "rows the state has.",
)
@_LOCK_TIMEOUT
@click.pass_obj
def state_push(
    app: CliApp,
    file: Path,
    specs_dir: Path | None,
    state_path: Path | None,
    objects_dir: Path | None,
    force: bool,
    lock_timeout: float,
) -> int:
    """Replace the state by a document from `state pull` (FILE, or - for stdin).

    Refuses another lineage, an older serial, or a document that drops journal rows
    (records of paid jobs), unless --force; a state never written takes any document.
    Example, moving the state file to a team's PostgreSQL:

        ltx-reconcile state pull --state state/state.db > state.json

        ltx-reconcile state push state.json --state postgresql://db.example/assets
    """
    workspace = open_workspace(app, specs_dir, state_path, objects_dir)
    source = "standard input" if str(file) == "-" else str(file)
    document = parse_document(_read(app.root, file), source)
    result = workspace.push_state(document, source=source, force=force, lock_timeout_s=lock_timeout)
    lines = _push_lines(result, source, workspace.state_display())
    _write_lines(render.stdout_console(), lines)
    return ExitCode.OK


# -- rendering --------------------------------------------------------------------------


def _write_json(console: render.Console, value: object) -> None:
    console.file.write(json.dumps(value, indent=1, ensure_ascii=False, sort_keys=False))
    console.file.write("\n")


def _write_lines(console: render.Console, lines: Sequence[str]) -> None:
    # Plain text, no markup: image names may hold `[` (grid members), which rich would eat.
    console.file.write("".join(line + "\n" for line in lines))


def _table(images: Sequence[ImageSummary]) -> list[str]:
    rows = [("NAME", "STATUS", "MODEL", "COST", "DIGEST", "OUTPUT")]
    rows += [
        (
            image.name,
            image.status,
            image.model or "-",
            "-" if image.cost is None else _credits(image.cost),
            image.digest_prefix or "-",
            image.output,
        )
        for image in images
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]


def _credits(amount: float) -> str:
    return str(int(amount)) if float(amount).is_integer() else f"{amount:g}"


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _details_lines(details: ImageDetails, paths: WorkspacePaths) -> list[str]:
    record, artifact = details.record, details.artifact
    lines = [
        f"image:    {record.name}",
        f"status:   {record.status}",
        f"key:      {record.key}",
        f"output:   {record.output}"
        + (
            "" if record.output_stat is None else f" ({record.output_stat.size} bytes when written)"
        ),
        f"updated:  {_when(record.updated_at)}",
    ]
    if details.protect is not None:
        lines.append(f"protect:  {'true' if details.protect else 'false'}")
    if record.digest is None:
        lines.append("artifact: none yet")
    else:
        lines.append(f"artifact: {record.digest}")
        where = paths.display(details.object_path) if details.object_path else "?"
        missing = "" if details.object_present else " (missing from the store)"
        lines.append(f"  stored at: {where}{missing}")
    if artifact is not None:
        job = f"job {artifact.job_id}" if artifact.job_id else "no job"
        account = f", account {artifact.email}" if artifact.email else ""
        lines += [
            f"  source:    {artifact.source} ({job}{account})",
            f"  model:     {artifact.model}",
            f"  cost:      {_credits(artifact.cost)} credits",
            f"  created:   {_when(artifact.created_at)}",
            f"  size:      {artifact.size} bytes, {artifact.mime}"
            + (
                ""
                if artifact.width is None or artifact.height is None
                else f", {artifact.width}x{artifact.height}"
            ),
        ]
    lines.append("inputs:")
    lines += [
        f"  {field}: {json.dumps(value, ensure_ascii=False)}"
        for field, value in sorted(record.inputs.items())
    ]
    for entry in details.open_jobs:
        job = entry.job_id or "no job id yet"
        lines.append(
            f"open job: attempt {entry.attempt}, {entry.state}, {job}, sent {_when(entry.sent_at)}"
        )
    return lines


def _removal_lines(removal: Removal) -> list[str]:
    lines = []
    for image in removal.removed:
        kept = (
            f"its stored object {image.digest[:12]} and its output file {image.output} are kept"
            if image.digest is not None
            else f"it had no stored object; {image.output} is left as it is"
        )
        lines.append(f"Removed {image.name} from the state; {kept}.")
    count = len(removal.removed)
    noun = "image" if count == 1 else "images"
    lines.append(
        f"Forgot {count} {noun} (state serial {removal.serial_before} -> "
        f"{removal.serial_after}). While a spec names one, the next plan reuses its stored "
        "object at no cost."
    )
    return lines


def _rename_lines(renamed: RenamedImage) -> list[str]:
    old, new = renamed.old, renamed.new
    return [
        f"Renamed {old} to {new} in the state (serial {renamed.serial_before} -> "
        f"{renamed.serial_after}).",
        f"Its output file {renamed.output} was not moved: the state records it as {new}'s "
        "output until the next apply.",
        f"Next plan: for {new}, if a spec names it with the same inputs, no change, or a free "
        f"move of {renamed.output} to the output the spec names; a delete of {new} (and of "
        f"{renamed.output}) if none does; {old}, if a spec still names it, reuses the stored "
        "object at no cost.",
    ]


def _push_lines(result: PushResult, source: str, where: str) -> list[str]:
    rows = ", ".join(f"{table} {count}" for table, count in sorted(result.rows.items()))
    lines = [
        f"Pushed {source} to {where}: serial {result.previous_serial} -> {result.serial}.",
        f"Rows now: {rows}.",
    ]
    if result.lineage != result.previous_lineage:
        lines.append(
            f"Its lineage is now {result.lineage} (was {result.previous_lineage}); "
            "plans saved before are stale."
        )
    for table, count in sorted(result.dropped.items()):
        rows = "1 row" if count == 1 else f"{count} rows"
        lines.append(f"Dropped {rows} of {table} that the state had (--force).")
    return lines


def _read(root: Path, file: Path) -> str:
    if str(file) == "-":
        return sys.stdin.read()
    path = root / file
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"cannot read {file}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{file} is not a text file") from None
