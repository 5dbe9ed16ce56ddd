"""The chat example in a real browser: headless Chromium, two tabs, one room."""

from __future__ import annotations

from playwright.sync_api import expect, sync_playwright
from servers import running_server

CHROMIUM = "/usr/bin/chromium"
# No sandbox as root; no background traffic to hosts this closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def test_a_message_sent_in_one_tab_appears_in_the_other() -> None:
    with running_server("hypercorn", "examples.chat:app") as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            page = f"http://127.0.0.1:{server.port}/?room=browser"
            ann, bob = browser.new_page(), browser.new_page()
            ann.goto(f"{page}&name=ann", timeout=15_000)
            bob.goto(f"{page}&name=bob", timeout=15_000)
            expect(ann.locator("#status")).to_have_text("connected", timeout=10_000)
            expect(bob.locator("#status")).to_have_text("connected", timeout=10_000)
            expect(ann.locator("#messages")).to_contain_text("bob joined", timeout=10_000)

            ann.fill("#text", "hello from ann")
            ann.click("#send")

            expect(bob.locator("#messages li").last).to_have_text("ann: hello from ann", timeout=10_000)
            expect(ann.locator("#messages li").last).to_have_text("ann: hello from ann", timeout=10_000)
        finally:
            browser.close()
