"""The gallery page as text: escaping, links, statuses, the plan view and the thumbnail cache.

Every command is a real `ltx-reconcile` child process against the emulator; the page is
read back as the file it wrote. The same page in a real browser: test_browser.py.
"""

from __future__ import annotations

import base64
import io
import json
import re
from urllib.parse import unquote

from PIL import Image

from ltx_reconcile.emulator.config import FaultConfig, FaultKind, FaultRule
from ltx_reconcile.errors import ExitCode

HOSTILE = "</script><img src=x onerror=alert(1)>"


def _page(ws, directory: str = "gallery") -> str:
    return (ws.root / directory / "index.html").read_text(encoding="utf-8")


def _card(page: str, name: str) -> str:
    """The `<article>` of image `name` (names in attributes are escaped as the page does)."""
    match = re.search(
        rf'<article class="card" data-index="\d+" data-name="{re.escape(name)}">.*?</article>',
        page,
        flags=re.DOTALL,
    )
    assert match is not None, f"no card for {name}"
    return match.group(0)


def _found(pattern: str, text: str) -> str:
    """The first group of `pattern`'s first match in `text`, which must exist."""
    match = re.search(pattern, text, flags=re.DOTALL)
    assert match is not None, pattern
    return match.group(1)


def _data(page: str) -> dict[str, list[dict[str, object]]]:
    return json.loads(
        _found(r'<script type="application/json" id="gallery-data">(.*?)</script>', page)
    )


def _gallery(ws, *args: str) -> str:
    """Run `gallery ARGS` and return the line it printed; it must succeed."""
    done = ws.run("gallery", *args)
    assert done.returncode == ExitCode.OK, done.stderr
    return done.stdout.strip()


def test_hostile_text_is_escaped_in_the_cards_and_in_the_embedded_data(workspace):
    """A prompt, description and tag written to break out of HTML stay inert text."""
    ws = workspace
    ws.specs(
        f"""
        images:
          hostile:
            prompt: "{HOSTILE}"
            description: 'a <b>bold</b> & "quoted" claim'
            tags: ["<i>tag</i>"]
        """
    )
    assert ws.apply().returncode == ExitCode.OK
    _gallery(ws)
    page = _page(ws)
    card = _card(page, "hostile")
    assert HOSTILE not in page
    assert "<i>tag</i>" not in page
    assert '<p class="prompt">&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;</p>' in card
    assert (
        '<p class="description">a &lt;b&gt;bold&lt;/b&gt; &amp; &quot;quoted&quot; claim</p>'
        in card
    )
    assert '<ul class="tags"><li>&lt;i&gt;tag&lt;/i&gt;</li></ul>' in card
    assert '<option value="&lt;i&gt;tag&lt;/i&gt;">&lt;i&gt;tag&lt;/i&gt;</option>' in page
    # Exactly the page's own two scripts, and one picture: nothing was injected.
    assert page.count("<script") == 2
    assert page.count("<img ") == 1
    raw = _found(r'id="gallery-data">(.*?)</script>', page)
    assert "<" not in raw
    assert _data(page)["images"] == [
        {
            "name": "hostile",
            "tags": ["<i>tag</i>"],
            "model": "flux",
            "status": "present",
            "action": None,
        }
    ]


def test_links_to_output_files_are_relative_to_the_page_and_reach_each_file(workspace):
    """Full-size links climb from the page to out/, quoted so `[`, `=` and `%3A` survive."""
    ws = workspace
    ws.specs(
        """
        images:
          ranger:
            prompt: A ranger, {mood} expression
            grid:
              mood: [calm, fierce]
            output: out/ranger/{mood}.png
          poster:
            prompt: A poster
            grid:
              aspect_ratio: ["16:9", "1:1"]
        """
    )
    assert ws.apply().returncode == ExitCode.OK
    _gallery(ws, "--out", "site/gallery")
    page = _page(ws, "site/gallery")
    page_dir = ws.root / "site" / "gallery"
    assert '<a href="../../out/ranger/calm.png">out/ranger/calm.png</a>' in page
    assert (
        '<a href="../../out/poster%5Baspect_ratio%3D16%253A9%5D.png">'
        "out/poster[aspect_ratio=16%3A9].png</a>" in page
    )
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert len(hrefs) == 8  # four images: the picture and the file name link each one
    for href in hrefs:
        assert href.startswith("../../out/")
        assert (page_dir / unquote(href)).resolve().is_file(), href


def test_grid_members_are_laid_out_in_a_table_by_their_axes(workspace):
    """A two-axis grid is one table: a column per value of the last axis, a row per other."""
    ws = workspace
    ws.specs(
        """
        images:
          ranger:
            prompt: A ranger, {mood} expression
            grid:
              seed: [12, 9]
              mood: [calm, fierce]
        """
    )
    _gallery(ws)
    page = _page(ws)
    assert "<h2>ranger <small>grid: seed \N{MULTIPLICATION SIGN} mood</small></h2>" in page
    assert (
        '<thead><tr><th></th><th scope="col">mood=calm</th><th scope="col">mood=fierce</th>'
        "</tr></thead>" in page
    )
    rows = re.findall(r'<tr><th scope="row">([^<]*)</th>(.*?)</tr>', page, re.DOTALL)
    cells = [(row, re.findall(r'data-name="([^"]*)"', cells)) for row, cells in rows]
    assert cells == [
        ("seed=9", ["ranger[seed=9,mood=calm]", "ranger[seed=9,mood=fierce]"]),
        ("seed=12", ["ranger[seed=12,mood=calm]", "ranger[seed=12,mood=fierce]"]),
    ]


def test_each_card_shows_its_status_from_the_state_the_journal_and_the_store(workspace, emulator):
    """present, failed (with the API's message), pending and missing; the state unchanged."""
    ws = workspace
    ws.specs("images: {kept: {prompt: a kept fox, seed: 1}, lost: {prompt: a lost fox}}")
    assert ws.apply().returncode == ExitCode.OK
    ws.specs("images: {doomed: {prompt: a doomed fox}}", name="doomed.yaml")
    rule = FaultRule(FaultKind.FAIL_JOB, endpoint="images/create", message="Moderation: no")
    emulator.set_faults(FaultConfig(rules=(rule,)))
    assert ws.apply().returncode == ExitCode.PARTIAL
    ws.specs("images: {later: {prompt: a later fox}}", name="later.yaml")
    lost = ws.images()["lost"]
    ws.store.path_for(lost.digest).unlink()
    (ws.root / lost.output).unlink()
    serial = ws.snapshot().serial

    line = _gallery(ws)

    assert line == "Wrote gallery/index.html: 4 images (1 present, 1 pending, 1 failed, 1 missing)."
    page = _page(ws)
    kept = _card(page, "kept")
    assert '<span class="status status-present">present</span>' in kept
    job_id = ws.snapshot().artifacts[ws.images()["kept"].digest].job_id
    assert f'<p class="meta">28 credits · job <code>{job_id}</code></p>' in kept
    assert kept.count("<img ") == 1
    doomed = _card(page, "doomed")
    assert '<span class="status status-failed">failed</span>' in doomed
    assert '<p class="detail">Moderation: no</p>' in doomed
    later = _card(page, "later")
    assert '<span class="status status-pending">pending</span>' in later
    assert '<div class="thumb placeholder">not generated yet</div>' in later
    assert '<p class="meta">28 credits (estimated)</p>' in later
    missing = _card(page, "lost")
    assert '<span class="status status-missing">missing</span>' in missing
    assert '<div class="thumb placeholder">picture not available</div>' in missing
    assert ws.snapshot().serial == serial
    assert not (ws.root / "state" / "state.db-wal").exists()


def test_a_picture_missing_from_the_store_is_shown_from_its_output_file(workspace):
    """A fresh clone has out/ but no store: the card shows the output file, if it is intact."""
    ws = workspace
    ws.specs("images: {fox: {prompt: a fox}}")
    assert ws.apply().returncode == ExitCode.OK
    ws.store.path_for(ws.images()["fox"].digest).unlink()
    _gallery(ws)
    card = _card(_page(ws), "fox")
    assert '<span class="status status-missing">missing</span>' in card
    assert card.count("<img ") == 1


def test_thumbnails_are_cached_beside_the_store_and_reused(workspace):
    """The second run embeds the cached thumbnail as it is, without drawing it again."""
    ws = workspace
    ws.specs("images: {fox: {prompt: a fox}}")
    assert ws.apply().returncode == ExitCode.OK
    _gallery(ws)
    digest = ws.images()["fox"].digest
    cached = ws.root / "state" / "cache" / "thumbs" / f"{digest}-256.webp"
    with Image.open(cached) as thumbnail:
        assert max(thumbnail.size) == 256
    marker = io.BytesIO()
    Image.new("RGB", (3, 2), "red").save(marker, "WEBP")
    cached.write_bytes(marker.getvalue())

    _gallery(ws)

    encoded = base64.b64encode(marker.getvalue()).decode()
    assert f'<img src="data:image/webp;base64,{encoded}" alt="fox">' in _page(ws)


def test_plan_gallery_shows_the_current_picture_beside_what_the_plan_will_do(workspace):
    """A replace shows its picture, "will be regenerated" and each changed input old -> new."""
    ws = workspace
    ws.specs("images: {fox: {prompt: a red fox, seed: 1}, owl: {prompt: an owl, seed: 2}}")
    assert ws.apply().returncode == ExitCode.OK
    ws.specs(
        """
        images:
          fox: {prompt: a red fox at dawn, seed: 1, style: anime}
          owl: {prompt: an owl, seed: 2}
          cat: {prompt: a cat, model: nano-banana}
        """
    )
    assert ws.run("plan", "--out", "plan.json").returncode == ExitCode.OK
    serial = ws.snapshot().serial

    line = _gallery(ws, "--plan", "plan.json")

    assert line == (
        "Wrote gallery/index.html: 3 images (2 present, 1 pending); "
        "the plan changes 2, estimated 77 credits."
    )
    page = _page(ws)
    assert (
        '<p class="summary plan-summary">Plan: 1 to create, 1 to replace, 1 unchanged · '
        "estimated cost 77 credits</p>"
    ) in page
    fox = _card(page, "fox")
    assert fox.count("<img ") == 1
    assert "<figcaption>now</figcaption>" in fox
    assert (
        '<div class="thumb placeholder will">will be regenerated · 28 credits</div>'
        "<figcaption>after apply</figcaption>"
    ) in fox
    assert '<tr><th>prompt</th><td class="old">a red fox</td><td>→</td>' in fox
    assert (
        '<tr><th>prompt</th><td class="old">a red fox</td><td>→</td>'
        '<td class="new">a red fox at dawn</td></tr>\n'
        '<tr><th>style</th><td class="old">(none)</td><td>→</td>'
        '<td class="new">anime</td></tr>\n'
    ) in fox
    cat = _card(page, "cat")
    assert "<img " not in cat
    assert '<div class="thumb placeholder will">will be generated · 49 credits</div>' in cat
    owl = _card(page, "owl")
    assert owl.count("<img ") == 1
    assert "placeholder" not in owl
    actions = {item["name"]: item["action"] for item in _data(page)["images"]}
    assert actions == {"cat": "create", "fox": "replace", "owl": "no-op"}
    assert ws.snapshot().serial == serial


def test_plan_gallery_shows_moves_with_their_picture_and_deletes_with_theirs(workspace):
    """A renamed image shows the stored picture it moves to; a removed one, "will be deleted"."""
    ws = workspace
    ws.specs("images: {fox: {prompt: a fox, seed: 1}, owl: {prompt: an owl}}")
    assert ws.apply().returncode == ExitCode.OK
    ws.specs("images: {vixen: {prompt: a fox, seed: 1}}")
    assert ws.run("plan", "--out", "plan.json").returncode == ExitCode.OK
    _gallery(ws, "--plan", "plan.json")
    page = _page(ws)
    vixen = _card(page, "vixen")
    assert '<p class="change action-move"><b>move</b> (fox): ' in vixen
    assert re.search(
        r'<figure><div class="thumb"><img src="data:image/webp;base64,[^"]+" alt="vixen"></div>'
        r"<figcaption>moves here</figcaption></figure>",
        vixen,
    )
    assert "href=" not in vixen.split('<p class="change')[0]
    owl = _card(page, "owl")
    assert owl.count("<img ") == 1
    assert '<div class="thumb placeholder will">will be deleted</div>' in owl


def test_the_gallery_is_never_written_into_the_store(workspace):
    """--out inside state/objects is refused before anything is written."""
    ws = workspace
    ws.specs("images: {fox: {prompt: a fox}}")
    done = ws.run("gallery", "--out", "state/objects/gallery")
    assert done.returncode == ExitCode.INVALID_INPUT
    assert done.stderr.splitlines()[0] == (
        "Error: the gallery cannot be written inside the store (state/objects)"
    )
    assert not (ws.root / "state" / "objects" / "gallery").exists()


def test_the_page_fetches_nothing(workspace):
    """Only inline style and script, by hash, and data: images; no src or href leaves."""
    ws = workspace
    ws.specs("images: {fox: {prompt: a fox}}")
    assert ws.apply().returncode == ExitCode.OK
    _gallery(ws)
    page = _page(ws)
    policy = _found(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    assert policy.startswith("default-src 'none'; img-src data:; style-src 'sha256-")
    assert re.findall(r'src="([^":]*):', page) == ["data"]
    assert "<link" not in page
    assert "@import" not in page
    assert "url(" not in page
    assert re.findall(r'href="(\w+):', page) == []


def test_cards_follow_the_specs_in_address_order_with_one_grid_table(workspace):
    """Images off grids flow in cards; the page lists every image once, in address order."""
    ws = workspace
    ws.specs(
        """
        images:
          b: {prompt: b}
          a: {prompt: a}
          g:
            prompt: g {v}
            grid: {v: [x, y]}
        """
    )
    _gallery(ws)
    page = _page(ws)
    assert re.findall(r'data-name="([^"]*)"', page) == ["a", "b", "g[v=x]", "g[v=y]"]
    assert page.count('<section class="group grid"') == 1
    assert page.count('<section class="group singles">') == 1
