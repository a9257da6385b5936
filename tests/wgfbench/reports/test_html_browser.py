"""The HTML report opened in a real browser: headless Debian chromium driven by Python playwright,
on the leaderboard of the small real campaign of ``conftest.py``.

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``) and the ``playwright`` package
(``pip install playwright``; its own browser downloads are never used): skipped, saying which, when
either is missing. The page must load without a console error or page error, hold every table of
the leaderboard and show every embedded figure (``naturalWidth`` > 0), with no network request.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from wgfbench.reports.leaderboard import Leaderboard

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install playwright (or the 'dev' extra)")
    if not CHROMIUM.is_file() and shutil.which("chromium") is None:
        pytest.skip(f"no chromium at {CHROMIUM}: apt-get install -y chromium")
    executable = str(CHROMIUM) if CHROMIUM.is_file() else shutil.which("chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def test_html_report_renders_in_chromium(browser, real_board: Leaderboard) -> None:
    page_file = real_board.out_dir / "leaderboard.html"
    page = browser.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("request", lambda request: requests.append(request.url))
    page.goto(page_file.as_uri(), wait_until="load")

    assert errors == []
    # the page itself and its data: URIs; nothing from the network
    assert all(url.startswith(("file://", "data:")) for url in requests), requests
    assert page.locator("table").count() == len(real_board.tables())
    headings = page.locator("h2").all_inner_texts()
    for title in real_board.tables():
        assert title in headings
    images = page.locator("img")
    n_png = len([p for p in real_board.files if p.suffix == ".png"])
    assert images.count() == n_png > 0
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
    assert len(widths) == n_png and all(w > 0 for w in widths), widths
    # the matrix keeps its marks: bold first places, the failed mark
    assert page.locator("table strong").count() > 0
    assert page.get_by_text("✗ failed").count() > 0
    page.close()
