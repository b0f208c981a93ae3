"""The gallery page: one static HTML file whose style and script are inline; nothing fetched.

Renders a `Gallery` to text and writes it atomically. Everything the specs or the state
supply (names, prompts, tags, messages) is user text and goes through `html.escape`. The
data the filters read is JSON inside `<script type="application/json">`, with `<`, `>` and
`&` written as JSON escapes, so no string can close the element. Thumbnails are inline
`data:` URIs, so the page works wherever it is copied; full-size pictures are relative
links to the output files. A Content-Security-Policy allows only this page's own style and
script (by hash) and `data:` images: the page makes no request, and markup that slipped
past escaping could run nothing.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from html import escape
from itertools import groupby
from pathlib import Path
from typing import Final
from urllib.parse import quote

from ltx_reconcile.gallery.model import (
    STATUSES,
    Gallery,
    GalleryGroup,
    GalleryImage,
    PlannedChange,
)
from ltx_reconcile.plan.model import Action, FieldChange

__all__ = ["render_page", "write_page"]

_STYLE: Final = """
:root { font-family: system-ui, sans-serif; color: #1d1d22; background: #f3f4f6; }
body { margin: 0; }
[hidden] { display: none !important; }
.top { position: sticky; top: 0; z-index: 1; background: #fff; padding: .7rem 1.2rem;
  border-bottom: 1px solid #d9dbe0; }
h1 { font-size: 1.25rem; margin: 0 0 .2rem; }
.summary { margin: 0 0 .5rem; color: #444; font-size: .9rem; }
.filters { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; font-size: .9rem; }
main { padding: 1rem 1.2rem; }
.group { margin-bottom: 1.5rem; }
.group h2 { font-size: 1rem; margin: 0 0 .4rem; font-family: ui-monospace, monospace; }
.group h2 small { font-family: system-ui, sans-serif; font-weight: normal; color: #666; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr));
  gap: 1rem; }
.grid-table { border-collapse: separate; border-spacing: .8rem 0; margin-left: -.8rem; }
.grid-table th { font-size: .8rem; color: #555; font-weight: normal; text-align: left;
  padding: .2rem 0; font-family: ui-monospace, monospace; }
.grid-table td, .grid-table tbody th { vertical-align: top; width: 220px; padding-bottom: .8rem; }
.grid-table tbody th { width: auto; padding-top: .6rem; }
.card { background: #fff; border: 1px solid #d9dbe0; border-radius: 8px; padding: .6rem;
  font-size: .82rem; overflow-wrap: anywhere; }
.card header { display: flex; justify-content: space-between; align-items: baseline;
  gap: .5rem; }
.name { margin: 0; font-size: .9rem; font-family: ui-monospace, monospace; }
.status { border-radius: 999px; padding: 0 .5rem; font-size: .72rem; white-space: nowrap;
  background: #e5e7eb; }
.status-present { background: #d3f3dc; color: #11602c; }
.status-pending { background: #e0e9fb; color: #1c4a9c; }
.status-failed { background: #fbdcdc; color: #9b1c1c; }
.status-unknown { background: #f8ecc7; color: #7a5600; }
.status-missing { background: #eadcf8; color: #5b2393; }
.pictures { display: flex; gap: .4rem; margin: .5rem 0 .3rem; }
.pictures figure { flex: 1; margin: 0; min-width: 0; }
.thumb { display: flex; align-items: center; justify-content: center; aspect-ratio: 1;
  background: #eceef1; border-radius: 4px; overflow: hidden; box-sizing: border-box; }
.thumb img { display: block; max-width: 100%; max-height: 100%; }
.placeholder { border: 2px dashed #c3c7cf; color: #5f6470; text-align: center;
  padding: .5rem; }
.placeholder.will { border-color: #d58b00; background: #fff6e3; color: #8a5700; }
figcaption { font-size: .72rem; color: #5f6470; text-align: center; margin-top: .15rem; }
.change { margin: .2rem 0; padding: .2rem .4rem; border-radius: 4px; background: #fff6e3; }
.change.action-no-op { background: #f1f2f4; }
.change.action-blocked { background: #fbdcdc; }
.changed { border-collapse: collapse; width: 100%; margin: .2rem 0; font-size: .78rem; }
.changed th, .changed td { border-top: 1px solid #eceef1; padding: .1rem .2rem;
  text-align: left; vertical-align: top; }
.changed .old { color: #9b1c1c; text-decoration: line-through; }
.changed .new { color: #11602c; }
.prompt { margin: .3rem 0; }
.description, .detail, .source { color: #5f6470; margin: .2rem 0; }
.inputs { display: grid; grid-template-columns: auto 1fr; gap: 0 .5rem; margin: .3rem 0; }
.inputs dt { color: #6b7080; }
.inputs dd { margin: 0; }
.tags { list-style: none; display: flex; flex-wrap: wrap; gap: .25rem; padding: 0;
  margin: .3rem 0; }
.tags li { background: #e8eaf8; border-radius: 4px; padding: 0 .35rem; }
.meta, .file { margin: .2rem 0; }
.meta code { font-size: .7rem; color: #5f6470; }
"""

_SCRIPT: Final = """
(() => {
  const data = JSON.parse(document.getElementById("gallery-data").textContent);
  const selects = Array.from(document.querySelectorAll("select[data-filter]"));
  const cards = Array.from(document.querySelectorAll(".card"));
  const groups = Array.from(document.querySelectorAll(".group"));
  const shown = document.getElementById("shown");
  const matches = (item) => selects.every((select) => {
    const wanted = select.value;
    const value = item[select.dataset.filter];
    return wanted === "" || (Array.isArray(value) ? value.includes(wanted) : value === wanted);
  });
  const update = () => {
    let count = 0;
    for (const card of cards) {
      const visible = matches(data.images[Number(card.dataset.index)]);
      card.hidden = !visible;
      count += visible ? 1 : 0;
    }
    for (const group of groups) {
      group.hidden = group.querySelector(".card:not([hidden])") === null;
    }
    shown.textContent = String(count);
  };
  for (const select of selects) select.addEventListener("change", update);
  update();
})();
"""

_WILL: Final[Mapping[Action, str]] = {
    Action.CREATE: "will be generated",
    Action.REPLACE: "will be regenerated",
    Action.REFETCH: "will be regenerated",
    Action.BLOCKED: "blocked: apply refuses to regenerate it",
    Action.RESUME: "a paid job will be fetched",
    Action.MOVE: "moves here",
    Action.REUSE: "reuses a stored picture",
    Action.DELETE: "will be deleted",
}
_ACTION_WORDS: Final[Mapping[Action, str]] = {
    Action.CREATE: "to create",
    Action.REPLACE: "to replace",
    Action.REFETCH: "to refetch",
    Action.MOVE: "to move",
    Action.REUSE: "to reuse",
    Action.RESUME: "to resume",
    Action.DELETE: "to delete",
    Action.BLOCKED: "blocked",
    Action.NOOP: "unchanged",
}
_NUMBER = re.compile(r"-?\d+(\.\d+)?\Z")


@dataclass(frozen=True, slots=True)
class _Page:
    """What every card needs besides itself: thumbnails and where the output files are."""

    thumbnails: Mapping[str, str]
    """digest -> a `data:` URI of its thumbnail."""
    link: Callable[[str], str]
    """An output path (relative to the workspace) -> its href from the page."""
    is_plan: bool


def render_page(
    gallery: Gallery, *, thumbnails: Mapping[str, bytes], root: Path, page_dir: Path
) -> str:
    """The whole page for `gallery`, to be written to `page_dir`/index.html.

    `thumbnails` holds the WebP bytes of each picture that has one; links to output files
    are made relative from `page_dir` to `root`.
    """
    page = _Page(
        thumbnails={d: _data_uri(data) for d, data in thumbnails.items()},
        link=lambda output: _relative_href(root / output, page_dir),
        is_plan=gallery.plan is not None,
    )
    title = "ltx-reconcile plan gallery" if page.is_plan else "ltx-reconcile gallery"
    parts = [
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f'<meta http-equiv="Content-Security-Policy" content="{_policy()}">\n',
        f"<title>{title}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n",
        _top(gallery, title),
        "<main>\n",
        *_groups(gallery, page),
        "</main>\n",
        f'<script type="application/json" id="gallery-data">{_data_json(gallery)}</script>\n',
        f"<script>{_SCRIPT}</script>\n</body>\n</html>\n",
    ]
    return "".join(parts)


def write_page(path: Path, text: str) -> None:
    """Write the page atomically (temporary file, rename): a reader never sees half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its files are private (0600), and the page is meant to be shared; "x"
    # creates the file with the umask's permissions and refuses an existing name.
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        with temp.open("x", encoding="utf-8") as handle:
            handle.write(text)
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


# -- the page's frame ------------------------------------------------------------------


def _policy() -> str:
    def digest(text: str) -> str:
        return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    return (
        f"default-src 'none'; img-src data:; style-src 'sha256-{digest(_STYLE)}'; "
        f"script-src 'sha256-{digest(_SCRIPT)}'"
    )


def _top(gallery: Gallery, title: str) -> str:
    images = gallery.images
    statuses = ", ".join(f"{n} {s}" for s, n in gallery.status_counts.items())
    lines = [
        '<header class="top">\n',
        f"<h1>{escape(title)}</h1>\n",
        f'<p class="summary">{_count(len(images), "image")}'
        f"{': ' + statuses if statuses else ''} · state serial {gallery.serial}</p>\n",
    ]
    if gallery.plan is not None:
        counts = ", ".join(
            f"{gallery.plan.counts[action]} {_ACTION_WORDS[action]}"
            for action in Action
            if gallery.plan.counts.get(action)
        )
        lines.append(
            f'<p class="summary plan-summary">Plan: {escape(counts) or "nothing to do"} · '
            f"estimated cost {gallery.plan.total_cost} credits</p>\n"
        )
    lines.append(_filters(gallery))
    lines.append("</header>\n")
    return "".join(lines)


def _filters(gallery: Gallery) -> str:
    images = gallery.images
    choices: list[tuple[str, str, list[str]]] = [
        ("Tag", "tags", sorted({tag for image in images for tag in image.tags})),
        ("Model", "model", sorted({image.model for image in images})),
        ("Status", "status", [s for s in STATUSES if any(i.status == s for i in images)]),
    ]
    if gallery.plan is not None:
        actions = {image.change.action for image in images if image.change is not None}
        choices.append(("Change", "action", [a.value for a in Action if a in actions]))
    selects = "".join(
        f'<label>{label} <select data-filter="{key}" name="{key}">'
        f'<option value="">all</option>{"".join(_option(v) for v in values)}</select></label>\n'
        for label, key, values in choices
    )
    return (
        f'<div class="filters">\n{selects}'
        f'<span><output id="shown">{len(images)}</output> of {len(images)} shown</span>\n</div>\n'
    )


def _option(value: str) -> str:
    return f'<option value="{escape(value)}">{escape(value)}</option>'


def _data_json(gallery: Gallery) -> str:
    items = [
        {
            "name": image.name,
            "tags": list(image.tags),
            "model": image.model,
            "status": image.status,
            "action": None if image.change is None else image.change.action.value,
        }
        for image in gallery.images
    ]
    text = json.dumps({"images": items}, ensure_ascii=False, separators=(",", ":"))
    # Inside <script>, only `</` (and `<!--`) can end the element early; JSON may spell any
    # character as \\uXXXX, so none of these three appears raw.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# -- groups: grids laid out by their axes, other images in a flowing list ----------------


def _groups(gallery: Gallery, page: _Page) -> Iterator[str]:
    index = 0
    for is_grid, run in groupby(gallery.groups, key=lambda group: group.is_grid):
        groups = list(run)
        if is_grid:
            for group in groups:
                yield _grid(group, page, index)
                index += len(group.images)
        else:
            cards = [image for group in groups for image in group.images]
            body = "".join(_card(image, page, index + i) for i, image in enumerate(cards))
            yield f'<section class="group singles"><div class="cards">\n{body}</div></section>\n'
            index += len(cards)


def _grid(group: GalleryGroup, page: _Page, first_index: int) -> str:
    """A table: one column per value of the last axis, one row per combination of the rest."""
    *row_axes, column_axis = group.axes
    cells: dict[tuple[tuple[str, ...], str], str] = {}
    for offset, image in enumerate(group.images):
        labels = dict(image.labels)
        row = tuple(labels.get(axis, "") for axis in row_axes)
        cells[row, labels.get(column_axis, "")] = _card(image, page, first_index + offset)
    rows = sorted({row for row, _ in cells}, key=lambda row: tuple(map(_natural, row)))
    columns = sorted({column for _, column in cells}, key=_natural)
    head = "".join(f'<th scope="col">{escape(f"{column_axis}={c}")}</th>' for c in columns)
    body = "".join(
        '<tr><th scope="row">'
        + escape(",".join(f"{a}={v}" for a, v in zip(row_axes, row, strict=True)))
        + "</th>"
        + "".join(f"<td>{cells.get((row, column), '')}</td>" for column in columns)
        + "</tr>\n"
        for row in rows
    )
    axes = " \N{MULTIPLICATION SIGN} ".join(group.axes)
    return (
        f'<section class="group grid" data-group="{escape(group.name)}">\n'
        f"<h2>{escape(group.name)} <small>grid: {escape(axes)}</small></h2>\n"
        f'<table class="grid-table"><thead><tr><th></th>{head}</tr></thead>\n'
        f"<tbody>\n{body}</tbody></table></section>\n"
    )


def _natural(label: str) -> tuple[int, float, str]:
    return (0, float(label), label) if _NUMBER.match(label) else (1, 0.0, label)


# -- one card ----------------------------------------------------------------------------


def _card(image: GalleryImage, page: _Page, index: int) -> str:
    parts = [
        f'<article class="card" data-index="{index}" data-name="{escape(image.name)}">\n',
        f'<header><h3 class="name">{escape(image.name)}</h3>'
        f'<span class="status status-{image.status}">{image.status}</span></header>\n',
        _pictures(image, page),
    ]
    if image.change is not None and page.is_plan:
        parts.append(_change(image.change))
    parts.append(f'<p class="prompt">{escape(image.prompt)}</p>\n')
    if image.description:
        parts.append(f'<p class="description">{escape(image.description)}</p>\n')
    parts.append(_inputs(image.inputs))
    parts.append(_meta(image))
    if image.detail:
        parts.append(f'<p class="detail">{escape(image.detail)}</p>\n')
    if image.tags:
        tags = "".join(f"<li>{escape(tag)}</li>" for tag in image.tags)
        parts.append(f'<ul class="tags">{tags}</ul>\n')
    parts.append(_file(image, page))
    if image.source:
        parts.append(f'<p class="source">{escape(image.source)}</p>\n')
    parts.append("</article>\n")
    return "".join(parts)


def _pictures(image: GalleryImage, page: _Page) -> str:
    change = image.change if page.is_plan else None
    figures = []
    if image.digest is not None:
        caption = "now" if change is not None and change.action is not Action.NOOP else None
        figures.append(_figure(image, page, image.digest, caption))
    if change is not None and change.action is not Action.NOOP:
        figures.append(_after(change, page, image))
    if not figures:
        figures.append(_figure(image, page, None, None))
    return f'<div class="pictures">{"".join(figures)}</div>\n'


def _after(change: PlannedChange, page: _Page, image: GalleryImage) -> str:
    if change.after_digest is not None and change.after_digest in page.thumbnails:
        # Not linked: the output file holds this picture only once apply has run.
        return _figure(image, page, change.after_digest, _WILL[change.action], linked=False)
    text = _WILL[change.action]
    if change.related is not None and change.action in (Action.MOVE, Action.REUSE):
        text += f" ({change.related})"
    if change.is_regenerated:
        text += f" · {_count(change.cost, 'credit')}"
    return (
        f'<figure><div class="thumb placeholder will">{escape(text)}</div>'
        f"<figcaption>after apply</figcaption></figure>"
    )


def _figure(
    image: GalleryImage,
    page: _Page,
    digest: str | None,
    caption: str | None,
    *,
    linked: bool = True,
) -> str:
    uri = None if digest is None else page.thumbnails.get(digest)
    if uri is not None:
        img = f'<img src="{uri}" alt="{escape(image.name)}">'
        href = escape(page.link(image.output))
        picture = (
            f'<a class="thumb" href="{href}">{img}</a>'
            if linked
            else f'<div class="thumb">{img}</div>'
        )
    else:
        text = "picture not available" if digest is not None else (image.detail or "no picture")
        picture = f'<div class="thumb placeholder">{escape(text)}</div>'
    figcaption = "" if caption is None else f"<figcaption>{escape(caption)}</figcaption>"
    return f"<figure>{picture}{figcaption}</figure>"


def _change(change: PlannedChange) -> str:
    cost = f" · {_count(change.cost, 'credit')}" if change.cost else ""
    related = f" ({escape(change.related)})" if change.related else ""
    text = (
        f'<p class="change action-{change.action.value}"><b>{change.action.value}</b>{related}: '
        f"{escape(change.reason)}{cost}</p>\n"
    )
    if change.changed:
        text += _changed_inputs(change.changed)
    return text


def _changed_inputs(changed: Sequence[FieldChange]) -> str:
    rows = "".join(
        f'<tr><th>{escape(c.field)}</th><td class="old">{escape(_shown(c.old))}</td>'
        f'<td>→</td><td class="new">{escape(_shown(c.new))}</td></tr>\n'
        for c in changed
    )
    return f'<table class="changed"><caption>changed inputs</caption>\n{rows}</table>\n'


def _shown(value: object) -> str:
    return "(none)" if value is None else str(value)


def _inputs(inputs: Sequence[tuple[str, str]]) -> str:
    rows = "".join(f"<dt>{escape(name)}</dt><dd>{escape(value)}</dd>" for name, value in inputs)
    return f'<dl class="inputs">{rows}</dl>\n'


def _meta(image: GalleryImage) -> str:
    cost = f"{image.cost:g} credits" + (" (estimated)" if image.cost_is_estimate else "")
    job = f" · job <code>{escape(image.job_id)}</code>" if image.job_id else ""
    return f'<p class="meta">{cost}{job}</p>\n'


def _file(image: GalleryImage, page: _Page) -> str:
    if image.digest is None:
        return f'<p class="file">{escape(image.output)}</p>\n'
    href = escape(page.link(image.output))
    return f'<p class="file"><a href="{href}">{escape(image.output)}</a></p>\n'


# -- small helpers -----------------------------------------------------------------------


def _count(n: float, noun: str) -> str:
    return f"{n:g} {noun}" + ("" if n == 1 else "s")


def _data_uri(data: bytes) -> str:
    return "data:image/webp;base64," + base64.b64encode(data).decode("ascii")


def _relative_href(target: Path, page_dir: Path) -> str:
    """`target` as a URL relative to `page_dir`: `/`-separated, every other byte quoted.

    Quoting matters: an output named `out/a%3A1.png` (a `:` made file-safe) must link to
    `a%253A1.png`, or the browser would decode it to a file that does not exist.
    """
    relative = os.path.relpath(target, page_dir)
    return quote(Path(relative).as_posix(), safe="/")
