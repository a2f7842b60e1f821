"""The results page in a real browser: headless Chromium (the Debian package, driven by Playwright) opens the
example site of test_results.py from a file:// URL, sorts it by clicking headers, and is watched for console
errors (a script blocked by the page's Content-Security-Policy would be one) and for any request that is not a
local file.

With VMB_DOCS_SCREENSHOT=1 the test also writes docs/img/results_page.png, the screenshot docs/SCORING.md shows.
"""
from __future__ import annotations

import os
import pathlib
import re
import shutil

import matplotlib.image
import numpy as np
import pytest

from test_results import EXAMPLE, build_example_site

CHROMIUM = pathlib.Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DOCS_SCREENSHOT = pathlib.Path(__file__).resolve().parents[2] / "docs" / "img" / "results_page.png"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the playwright Python package is not installed (pip install playwright)")
if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is not installed (Debian: apt-get install chromium)", allow_module_level=True)

pytestmark = pytest.mark.usefixtures("tiny_benchmarks")


@pytest.fixture
def browser_page():
    """A fresh page of headless Chromium, with the console errors, page errors and requests it saw."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1800, "height": 600})
        seen = {"errors": [], "requests": []}
        page.on("console", lambda message: seen["errors"].append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: seen["errors"].append(str(error)))
        page.on("request", lambda request: seen["requests"].append(request.url))
        yield page, seen
        browser.close()


def submissions(page) -> list[str]:
    return page.eval_on_selector_all("#ranked tbody tr", "rows => rows.map(r => r.cells[1].textContent)")


def sort_by(page, name: str) -> str:
    """Click the header `name`; its aria-sort afterwards. (Matched by its text: the sort arrow, CSS content,
    joins the button's accessible name.)"""
    header = page.locator("#ranked thead th").filter(has_text=re.compile(f"^{re.escape(name)}$"))
    header.get_by_role("button").click()
    return header.get_attribute("aria-sort")


def test_results_page_sorts_in_a_browser(browser_page, fake_run, tmp_path, capsys, monkeypatch):
    site, _ = build_example_site(fake_run, tmp_path, capsys, monkeypatch)
    page, seen = browser_page
    page.goto((site / "index.html").as_uri())
    assert page.title() == "VMB results"
    assert submissions(page) == ["alpha", "beta"]  # ranked by benchmark score
    assert page.locator("#ranked th[aria-sort]").all_inner_texts() == ["#"]
    assert page.locator("#not-ranked tbody tr td").first.inner_text() == "tampered"
    assert "<script>alert(1)</script>" in page.locator("#ranked tbody tr").nth(1).inner_text()  # shown as text

    screenshot = tmp_path / "results_page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.read_bytes().startswith(PNG_MAGIC)
    pixels = matplotlib.image.imread(screenshot)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 1000
    assert len(np.unique(pixels.reshape(-1, pixels.shape[2]), axis=0)) > 50  # text and table, not a blank page
    if os.environ.get("VMB_DOCS_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(screenshot, DOCS_SCREENSHOT)

    # The transformer scores (alpha 2.5, beta 0.5) order the rows the other way round from the ranking.
    assert EXAMPLE["alpha"][1] < EXAMPLE["beta"][1]
    assert sort_by(page, "transformer score") == "ascending"
    assert submissions(page) == ["beta", "alpha"]
    assert page.locator("#ranked th[aria-sort]").count() == 1
    assert sort_by(page, "transformer score") == "descending"
    assert submissions(page) == ["alpha", "beta"]
    assert sort_by(page, "CNN score") == "ascending"  # alpha 1.25, beta 2.0
    assert submissions(page) == ["alpha", "beta"]
    assert sort_by(page, "CNN score") == "descending"
    assert submissions(page) == ["beta", "alpha"]
    assert sort_by(page, "submission") == "ascending"  # text
    assert submissions(page) == ["alpha", "beta"]
    assert sort_by(page, "#") == "ascending"
    assert submissions(page) == ["alpha", "beta"]

    # A cell without a value ("-") sorts last in either direction.
    page.eval_on_selector("#ranked tbody tr:first-child td:nth-child(8)",
                          "cell => { cell.setAttribute('data-sort', ''); cell.textContent = '-'; }")
    assert sort_by(page, "CNN score") == "ascending"
    assert submissions(page) == ["beta", "alpha"]
    assert sort_by(page, "CNN score") == "descending"
    assert submissions(page) == ["beta", "alpha"]

    # Each name links to its report, which opens from the file too.
    page.get_by_role("link", name="beta", exact=True).click()
    assert page.url == (site / "submissions" / "beta" / "report.html").as_uri()
    assert "VALID" in page.locator("body").inner_text()

    assert seen["errors"] == []
    assert seen["requests"] and all(url.startswith("file://") for url in seen["requests"]), seen["requests"]
