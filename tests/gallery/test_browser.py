"""The gallery in a real headless Chromium: it loads cleanly, shows every thumbnail, filters.

Driven through Selenium and Debian's `chromium` and `chromium-driver` (same version, both
installed by .ci/run). Skipped, with the reason, only when no browser can be found outside
CI; in CI (`CI` set) a missing browser fails the test instead. The screenshot is kept in
`test-artifacts/` (ignored by git).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ltx_reconcile.errors import ExitCode

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
HOSTILE = "</script><img src=x onerror=alert(1)>"


def _missing_browser() -> str | None:
    """Why no browser can be driven here, or None when one can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    for program in ("chromium", "chromedriver"):
        if shutil.which(program) is None:
            return (
                f"{program} is not on PATH; install Debian's chromium and chromium-driver "
                "(apt-get install chromium chromium-driver), as .ci/run does"
            )
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """A headless Chromium with its console log kept, for the module's tests."""
    reason = _missing_browser()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test, but {reason}")
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,900"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        options=options, service=Service(executable_path=shutil.which("chromedriver"))
    )
    try:
        yield driver
    finally:
        driver.quit()


def _example_specs() -> dict[str, str]:
    specs = {path.name: path.read_text() for path in sorted((ROOT / "specs").glob("*.yaml"))}
    specs["hostile.yaml"] = f'images: {{hostile: {{prompt: "{HOSTILE}", tags: [odd]}}}}\n'
    return specs


def _shown(driver) -> set[str]:
    """The names of the cards a person can see."""
    from selenium.webdriver.common.by import By

    return {
        card.get_attribute("data-name")
        for card in driver.find_elements(By.CSS_SELECTOR, ".card")
        if card.is_displayed()
    }


def _choose(driver, facet: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.CSS_SELECTOR, f'select[data-filter="{facet}"]')).select_by_value(
        value
    )


def test_the_gallery_of_the_example_specs_loads_shows_every_thumbnail_and_filters(
    workspace, browser
):
    """No console error, every thumbnail decoded, each filter shows exactly its cards."""
    from selenium.webdriver.common.by import By

    ws = workspace
    ws.gen({"specs": _example_specs()})
    assert ws.apply().returncode == ExitCode.OK
    ws.specs("images: {later: {prompt: a castle not yet drawn, model: nano-banana}}", "later.yaml")
    assert ws.run("gallery").returncode == ExitCode.OK
    generated = set(ws.images())
    everything = {*generated, "later"}

    driver = browser
    driver.get((ws.root / "gallery" / "index.html").as_uri())

    assert driver.title == "ltx-reconcile gallery"
    thumbnails = driver.find_elements(By.CSS_SELECTOR, ".card img")
    assert len(thumbnails) == len(generated) == 10
    assert driver.execute_script(
        "return Array.from(document.querySelectorAll('.card img'))"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )
    assert _shown(driver) == everything
    _choose(driver, "model", "nano-banana")
    assert _shown(driver) == {"tavern", "later"}
    assert not driver.find_element(By.CSS_SELECTOR, 'section[data-group="ranger"]').is_displayed()
    assert driver.find_element(By.ID, "shown").text == "2"
    _choose(driver, "status", "pending")
    assert _shown(driver) == {"later"}
    _choose(driver, "model", "")
    _choose(driver, "status", "present")
    assert _shown(driver) == generated
    _choose(driver, "status", "")
    _choose(driver, "tags", "character")
    assert _shown(driver) == {
        "knight",
        "knight-night",
        "ranger[seed=11,mood=calm]",
        "ranger[seed=11,mood=fierce]",
        "ranger[seed=12,mood=calm]",
        "ranger[seed=12,mood=fierce]",
    }
    _choose(driver, "tags", "")
    assert _shown(driver) == everything
    ARTIFACTS.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / "gallery-browser.png"))
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []


def test_the_plan_gallery_loads_cleanly_and_filters_by_change(workspace, browser):
    """A plan's page: current pictures load, and the change filter picks the replaced one."""
    from selenium.webdriver.common.by import By

    ws = workspace
    ws.specs("images: {fox: {prompt: a red fox, seed: 1}, owl: {prompt: an owl, seed: 2}}")
    assert ws.apply().returncode == ExitCode.OK
    ws.specs("images: {fox: {prompt: a red fox at dawn, seed: 1}, owl: {prompt: an owl, seed: 2}}")
    assert ws.run("plan", "--out", "plan.json").returncode == ExitCode.OK
    assert ws.run("gallery", "--plan", "plan.json").returncode == ExitCode.OK

    driver = browser
    driver.get((ws.root / "gallery" / "index.html").as_uri())

    assert driver.title == "ltx-reconcile plan gallery"
    assert driver.execute_script(
        "const imgs = Array.from(document.querySelectorAll('.card img'));"
        "return imgs.length === 2 && imgs.every(img => img.complete && img.naturalWidth > 0)"
    )
    _choose(driver, "action", "replace")
    assert _shown(driver) == {"fox"}
    assert driver.find_element(By.CSS_SELECTOR, ".card .changed").is_displayed()
    ARTIFACTS.mkdir(exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / "gallery-plan-browser.png"))
    errors = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == []
