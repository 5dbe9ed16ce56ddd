"""The chat example in a real browser: headless Chromium, served by ``trioapi run``.

Each test leaves screenshots in its ``tmp_path`` (pytest keeps the last runs'),
one per step and one of every page at the end, pass or fail; a failing test
prints where they are.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from redis_server import RedisServer, redis_server  # noqa: F401 -- the fixture
from servers import ServerProcess, running_server
from websockets.sync.client import connect

from examples.chat import UNAVAILABLE

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
TIMEOUT = 15_000  # ms, for each expectation
# Reconnection backs off up to 10 s (jittered): a restart may take a few attempts.
RECONNECT_TIMEOUT = 30_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module; each test opens its own contexts."""
    expect.set_options(timeout=TIMEOUT)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            yield browser
        finally:
            browser.close()


class Screenshots:
    """Numbered screenshots in one folder; ``pages`` are shot once more at the end of the test."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pages: dict[str, Page] = {}
        self.taken = 0

    def open(self, browser: Browser, name: str, url: str) -> Page:
        """A page in a fresh browser context (a separate user), remembered for the final shot."""
        page = browser.new_context(viewport={"width": 900, "height": 600}).new_page()
        page.set_default_timeout(TIMEOUT)
        page.goto(url)
        self.pages[name] = page
        return page

    def take(self, page: Page, step: str) -> Path:
        self.taken += 1
        path = self.folder / f"{self.taken:02d}-{step}.png"
        page.screenshot(path=path)
        return path


@pytest.fixture
def screenshots(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Screenshots]:
    shots = Screenshots(tmp_path)
    try:
        yield shots
    finally:
        for name, page in shots.pages.items():
            if not page.is_closed():
                shots.take(page, f"final-{name}")
                page.context.close()
        print(f"screenshots of {request.node.name}: {tmp_path}")


def chat_url(server: ServerProcess, name: str, room: str = "browser") -> str:
    return f"http://127.0.0.1:{server.port}/?room={room}&name={name}"


def say(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.click("#send")


def test_two_users_talk_and_see_who_is_in_the_room(browser: Browser, screenshots: Screenshots) -> None:
    with running_server("trioapi-hypercorn", "examples.chat:app") as server:
        ann = screenshots.open(browser, "ann", chat_url(server, "ann"))
        expect(ann.locator("#status")).to_have_text("connected")
        expect(ann.locator("#people li")).to_have_text(["ann (you)"])
        bob = screenshots.open(browser, "bob", chat_url(server, "bob"))
        expect(bob.locator("#status")).to_have_text("connected")

        # Both lists show both people, each marked on their own page.
        expect(ann.locator("#people li")).to_have_text(["ann (you)", "bob"])
        expect(bob.locator("#people li")).to_have_text(["ann", "bob (you)"])
        expect(ann.locator("#count")).to_have_text("2 here")
        expect(ann.locator("#messages")).to_contain_text("bob joined")

        say(ann, "hello from ann")
        expect(bob.locator("#messages li").last).to_have_text("ann: hello from ann")
        say(bob, "hi ann")
        expect(ann.locator("#messages li").last).to_have_text("bob: hi ann")
        # Ann's own message, confirmed by the server's echo, is no longer marked as pending.
        expect(ann.locator("#messages li.pending")).to_have_count(0)
        screenshots.take(ann, "ann-talking")
        screenshots.take(bob, "bob-talking")

        bob.context.close()
        expect(ann.locator("#people li")).to_have_text(["ann (you)"])
        expect(ann.locator("#messages li").last).to_have_text("bob left")
        screenshots.take(ann, "bob-left")
        assert "Traceback" not in server.output


def test_a_server_restart_is_shown_in_words_and_queued_messages_are_sent_after_it(
    browser: Browser, screenshots: Screenshots
) -> None:
    with running_server("trioapi-hypercorn", "examples.chat:app") as first:
        port = first.port
        ann = screenshots.open(browser, "ann", chat_url(first, "ann"))
        bob = screenshots.open(browser, "bob", chat_url(first, "bob"))
        expect(ann.locator("#status")).to_have_text("connected")
        expect(bob.locator("#status")).to_have_text("connected")

        # SIGTERM: trioapi run closes every WebSocket with 1001 Going Away, then exits.
        assert first.terminate(signal.SIGTERM) == 0
        expect(ann.locator("#status")).to_contain_text("server restarting — reconnecting")
        expect(ann.locator("#status")).to_have_attribute("data-state", "reconnecting")
        screenshots.take(ann, "server-restarting")

        say(ann, "typed while the server was down")
        queued = ann.locator("#messages li.pending")
        expect(queued).to_contain_text("queued: sent when reconnected")
        screenshots.take(ann, "message-queued")

    with running_server("trioapi-hypercorn", "examples.chat:app", port=port) as second:
        expect(ann.locator("#status")).to_have_text("connected", timeout=RECONNECT_TIMEOUT)
        expect(bob.locator("#status")).to_have_text("connected", timeout=RECONNECT_TIMEOUT)
        # Sent once reconnected, and confirmed: the server echoed it to the room. (Bob sees
        # it only if his page was back first: the chat keeps no history.)
        expect(ann.locator("#messages li.pending")).to_have_count(0)
        confirmed = ann.locator("#messages li:not([class])", has_text="typed while the server was down")
        expect(confirmed).to_have_text(["ann: typed while the server was down"])
        say(bob, "welcome back")
        expect(ann.locator("#messages li", has_text="welcome back")).to_have_text(["bob: welcome back"])
        expect(ann.locator("#people li")).to_have_text(["ann (you)", "bob"])
        screenshots.take(ann, "reconnected")
        assert "Traceback" not in second.output


def test_a_long_history_scrolls_inside_the_page_and_the_input_stays_visible(
    browser: Browser, screenshots: Screenshots
) -> None:
    with running_server("trioapi-hypercorn", "examples.chat:app") as server:
        ann = screenshots.open(browser, "ann", chat_url(server, "ann", room="history"))
        expect(ann.locator("#status")).to_have_text("connected")
        # A second user says 100 things, each once the server has echoed the one before.
        with connect(f"ws://127.0.0.1:{server.port}/ws/history/bot", open_timeout=10) as bot:
            for number in range(1, 101):
                bot.send(f"message {number} of a long history")
                while json.loads(bot.recv(timeout=10))["type"] != "message":
                    pass
        expect(ann.locator("#messages li", has_text="of a long history")).to_have_count(100)

        for width, height in ((900, 600), (390, 640)):  # a laptop window, then a phone
            ann.set_viewport_size({"width": width, "height": height})
            layout = ann.evaluate(
                """() => {
                  const list = document.querySelector("#messages");
                  const box = (selector) => document.querySelector(selector).getBoundingClientRect();
                  const last = list.lastElementChild.getBoundingClientRect();
                  return {
                    pageScrolls: document.scrollingElement.scrollHeight > innerHeight,
                    listScrolls: list.scrollHeight > list.clientHeight,
                    input: box("#text"), send: box("#send"), list: box("#messages"), last,
                    viewport: {width: innerWidth, height: innerHeight},
                  };
                }"""
            )
            screenshots.take(ann, f"history-{width}x{height}")
            assert not layout["pageScrolls"], layout
            assert layout["listScrolls"], layout
            for control in ("input", "send"):
                assert layout[control]["top"] >= 0 and layout[control]["bottom"] <= height, layout
                assert layout[control]["left"] >= 0 and layout[control]["right"] <= width, layout
            # The list followed the conversation: the newest message is in view.
            assert layout["list"]["top"] <= layout["last"]["top"], layout
            assert layout["last"]["bottom"] <= layout["list"]["bottom"] + 1, layout
        expect(ann.locator("#messages li", has_text="bot: message 100 of a long history")).to_be_in_viewport()
        expect(ann.locator("#text")).to_be_in_viewport()


def test_a_refused_name_is_explained_and_not_retried(browser: Browser, screenshots: Screenshots) -> None:
    with running_server("trioapi-hypercorn", "examples.chat:app") as server:
        attempts: list[str] = []
        page = browser.new_context().new_page()
        page.set_default_timeout(TIMEOUT)
        page.on("websocket", lambda ws: attempts.append(ws.url))
        screenshots.pages["refused"] = page
        page.goto(chat_url(server, "no%20spaces"))
        status = page.locator("#status")
        expect(status).to_contain_text("refused by the server: a name or room is 1 to 32 letters")
        expect(status).to_have_attribute("data-state", "refused")
        expect(page.locator("#text")).to_be_disabled()
        # The first retry would come 0.5 s (at most 0.63 s) after a close it retries.
        page.wait_for_timeout(1500)
        assert len(attempts) == 1
        expect(status).to_have_attribute("data-state", "refused")
        screenshots.take(page, "refused")


def test_a_message_sent_while_redis_is_down_is_marked_undelivered_and_can_be_retried(
    browser: Browser,
    screenshots: Screenshots,
    redis_server: RedisServer,  # noqa: F811
) -> None:
    env = {"BROADCAST_URL": redis_server.url}
    with running_server("trioapi-hypercorn", "examples.chat:app", env=env) as server:
        ann = screenshots.open(browser, "ann", chat_url(server, "ann"))
        expect(ann.locator("#status")).to_have_text("connected")

        redis_server.stop()
        say(ann, "said during the outage")
        failed = ann.locator("#messages li.failed")
        expect(failed).to_contain_text(f"not delivered: {UNAVAILABLE}")
        # The connection was not at fault, and stays open.
        expect(ann.locator("#status")).to_have_text("connected")
        screenshots.take(ann, "undelivered")

        redis_server.start()
        # Retry until the hub has resubscribed (with back-off): each refusal is marked again.
        delivered = ann.locator("#messages li:not([class])", has_text="said during the outage")
        for _ in range(15):
            ann.locator("#messages li.failed button", has_text="Retry").last.click()
            try:
                expect(delivered).to_have_count(1, timeout=2_000)
                break
            except AssertionError:
                continue
        expect(delivered).to_have_text(["ann: said during the outage"])
        screenshots.take(ann, "delivered-after-retry")
        assert "Traceback" not in server.output
