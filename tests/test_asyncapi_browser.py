"""The ``/asyncapi`` page in headless Chromium shows the typed chat's channels and messages.

The page loads the AsyncAPI component from the server itself (tests/apps/asyncapi_offline.py
serves the copy npm installed in tests/js), so it renders with no internet. On
failure a screenshot is kept in the test's temporary directory, and its path printed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from js_packages import ensure_installed
from playwright.sync_api import Page, expect, sync_playwright
from servers import running_server
from test_chat_browser import CHROMIUM, CHROMIUM_ARGS


@contextmanager
def screenshot_on_failure(page: Page, folder: Path) -> Iterator[None]:
    try:
        yield
    except BaseException:
        screenshot = folder / "asyncapi.png"
        page.screenshot(path=screenshot, full_page=True)
        print(f"screenshot of the failing page: {screenshot}")
        raise


def test_the_docs_page_shows_the_channels_and_message_names(tmp_path: Path) -> None:
    ensure_installed()
    with (
        running_server("hypercorn", "tests.apps.asyncapi_offline:app") as server,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            page = browser.new_page()
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            with screenshot_on_failure(page, tmp_path):
                page.goto(f"http://127.0.0.1:{server.port}/asyncapi", timeout=15_000)
                expect(page.locator("#introduction")).to_contain_text("Typed chat 1.0.0", timeout=20_000)
                body = page.locator("body")
                for text in ["/chat", "/chat/forgiving", "RECEIVE", "SEND"]:
                    expect(body).to_contain_text(text, timeout=10_000)
                for message in ["Join", "Say", "Leave", "Joined", "Said", "Left", "Problem"]:
                    expect(page.get_by_text(message, exact=True).first).to_be_attached(timeout=10_000)
                expect(body).to_contain_text("Say something in a room you have joined.")
                # Everything came from this machine: the component too, not a CDN.
                prefix = f"http://127.0.0.1:{server.port}/"
                assert [url for url in requested if not url.startswith(prefix)] == []
                assert f"{prefix}asyncapi-ui/browser/standalone/index.js" in requested
        finally:
            browser.close()
