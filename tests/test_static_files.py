"""``StaticFiles`` and ``app.mount``: a folder of assets served beside the sockets."""

from __future__ import annotations

from email.utils import formatdate
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from trioapi import TrioAPI, WebSocket
from trioapi.pytest_plugin import LiveServer
from trioapi.routing import APIRouter, NoMatchFound
from trioapi.staticfiles import StaticFiles
from trioapi.testing import TestClient, WebSocketRejected


@pytest.fixture
def assets(tmp_path: Path) -> Path:
    """A folder of assets, with a secret file beside it."""
    root = tmp_path / "static"
    (root / "css").mkdir(parents=True)
    (root / "app.js").write_text("console.log('hi');")
    (root / "css" / "chat.css").write_text("body { color: red; }")
    (root / "docs").mkdir()
    (root / "docs" / "index.html").write_text("<h1>docs</h1>")
    (tmp_path / "secret.txt").write_text("password")
    return root


def _app(directory: Path, **options: bool) -> TrioAPI:
    app = TrioAPI()
    app.mount("/static", StaticFiles(directory=directory, **options), name="static")
    return app


# -- StaticFiles ------------------------------------------------------------------


async def test_files_are_served_under_the_mount_with_their_content_type(assets: Path) -> None:
    async with TestClient(_app(assets)) as client:
        script = await client.get("/static/app.js")
        style = await client.get("/static/css/chat.css")
    assert (script.status_code, script.text) == (200, "console.log('hi');")
    assert script.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
    assert (style.text, style.headers["content-type"]) == ("body { color: red; }", "text/css; charset=utf-8")


async def test_a_missing_file_or_a_directory_is_a_404(assets: Path) -> None:
    async with TestClient(_app(assets)) as client:
        for path in ("/static/nope.js", "/static/css", "/static/css/", "/static/"):
            response = await client.get(path)
            assert (response.status_code, response.json()) == (404, {"detail": "Not Found"}), path


@pytest.mark.parametrize(
    "path",
    [
        "/static/../secret.txt",
        "/static/css/../../secret.txt",
        "/static/..",
        "/static//etc/passwd",
        "/static/app.js\x00.png",
    ],
)
async def test_no_path_leads_outside_the_directory(assets: Path, path: str) -> None:
    async with TestClient(_app(assets)) as client:
        response = await client.get(path)
    assert response.status_code == 404
    assert b"password" not in response.content


async def test_a_symlink_out_of_the_directory_is_a_404_unless_followed(assets: Path) -> None:
    (assets / "leak.txt").symlink_to(assets.parent / "secret.txt")
    async with TestClient(_app(assets)) as client:
        assert (await client.get("/static/leak.txt")).status_code == 404
    async with TestClient(_app(assets, follow_symlink=True)) as client:
        assert (await client.get("/static/leak.txt")).text == "password"


async def test_head_is_served_and_other_methods_are_405(assets: Path) -> None:
    async with TestClient(_app(assets)) as client:
        head = await client.request("HEAD", "/static/app.js")
        post = await client.post("/static/app.js")
    assert (head.status_code, head.content, head.headers["content-length"]) == (200, b"", "18")
    assert (post.status_code, post.headers["allow"]) == (405, "GET, HEAD")


async def test_a_matching_etag_gets_304_without_a_body(assets: Path) -> None:
    async with TestClient(_app(assets)) as client:
        first = await client.get("/static/app.js")
        etag = first.headers["etag"]
        again = await client.get("/static/app.js", headers={"if-none-match": etag})
        weak = await client.get("/static/app.js", headers={"if-none-match": f'"x", W/{etag}'})
        other = await client.get("/static/app.js", headers={"if-none-match": '"other"'})
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    assert "content-length" not in again.headers
    assert weak.status_code == 304
    assert (other.status_code, other.text) == (200, "console.log('hi');")


async def test_if_modified_since_gets_304_unless_the_file_is_newer(assets: Path) -> None:
    async with TestClient(_app(assets)) as client:
        last_modified = (await client.get("/static/app.js")).headers["last-modified"]
        same = await client.get("/static/app.js", headers={"if-modified-since": last_modified})
        older = await client.get("/static/app.js", headers={"if-modified-since": formatdate(0, usegmt=True)})
        garbage = await client.get("/static/app.js", headers={"if-modified-since": "yesterday"})
    assert same.status_code == 304
    assert older.status_code == 200
    assert garbage.status_code == 200


async def test_html_mode_serves_index_redirects_to_the_slash_and_uses_404_html(assets: Path) -> None:
    async with TestClient(_app(assets, html=True)) as client:
        index = await client.get("/static/docs/")
        bare = await client.get("/static/docs?x=1")
        missing = await client.get("/static/nope")
        (assets / "404.html").write_text("<h1>lost</h1>")
        custom = await client.get("/static/nope")
    assert (index.status_code, index.text) == (200, "<h1>docs</h1>")
    assert (bare.status_code, bare.headers["location"]) == (307, "/static/docs/?x=1")
    assert missing.status_code == 404
    assert (custom.status_code, custom.text) == (404, "<h1>lost</h1>")


def test_a_missing_directory_is_refused_unless_checking_is_off(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="does not exist"):
        StaticFiles(directory=tmp_path / "nowhere")
    StaticFiles(directory=tmp_path / "nowhere", check_dir=False)


async def test_an_unchecked_missing_directory_answers_404(tmp_path: Path) -> None:
    async with TestClient(_app(tmp_path / "nowhere", check_dir=False)) as client:
        assert (await client.get("/static/app.js")).status_code == 404


# -- Mount ------------------------------------------------------------------------


def test_url_path_for_builds_a_mounted_file_path(assets: Path) -> None:
    app = _app(assets)
    assert app.url_path_for("static", path="app.js") == "/static/app.js"
    assert app.url_path_for("static", path="/css/chat.css") == "/static/css/chat.css"
    with pytest.raises(NoMatchFound):
        app.url_path_for("static")


async def test_url_for_in_a_handler_gives_the_absolute_asset_url(assets: Path) -> None:
    app = _app(assets)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(websocket.url_for("static", path="app.js"))

    async with TestClient(app) as client, client.websocket_connect("/ws") as session:
        assert await session.receive_text() == "ws://testserver/static/app.js"


async def test_a_mounted_app_sees_the_rest_of_the_path_and_the_prefix_as_root_path() -> None:
    sub = TrioAPI()

    @sub.get("/health/{name}")
    async def health(name: str) -> dict[str, str]:
        return {"name": name}

    app = TrioAPI()
    app.mount("/api", sub, name="api")
    async with TestClient(app) as client:
        response = await client.get("/api/health/db")
    assert response.json() == {"name": "db"}
    assert app.url_path_for("api:health", name="db") == "/api/health/db"


def test_url_path_for_looks_into_an_unnamed_mounted_app_and_past_foreign_apps() -> None:
    async def foreign(scope: Any, receive: Any, send: Any) -> None: ...

    sub = TrioAPI()

    @sub.get("/rooms/{room}")
    async def room_page(room: str) -> dict[str, str]:
        return {"room": room}

    @sub.websocket("/live")
    async def live(websocket: WebSocket) -> None: ...

    app = TrioAPI()
    app.mount("/legacy", foreign)
    app.mount("/v2", sub)
    assert app.url_path_for("room_page", room="a") == "/v2/rooms/a"
    with pytest.raises(NoMatchFound):
        app.url_path_for("nothing")
    with pytest.raises(NoMatchFound):  # a mount takes no handshakes: no URL that would fail
        app.url_path_for("live")


async def test_mounts_keep_router_and_include_prefixes(assets: Path) -> None:
    router = APIRouter(prefix="/v1")
    router.mount("/static", StaticFiles(directory=assets), name="static")
    app = TrioAPI()
    app.include_router(router, prefix="/site")
    async with TestClient(app) as client:
        assert (await client.get("/site/v1/static/app.js")).status_code == 200
    assert app.url_path_for("static", path="app.js") == "/site/v1/static/app.js"


async def test_a_mount_does_not_take_websocket_handshakes(assets: Path) -> None:
    async with TestClient(_app(assets)) as client:
        with pytest.raises(WebSocketRejected) as info:
            async with client.websocket_connect("/static/app.js"):
                pass
    assert info.value.status_code == 404


async def test_earlier_routes_win_over_a_mount_at_the_root(assets: Path) -> None:
    app = TrioAPI()

    @app.get("/health")
    async def health() -> dict[str, bool]:
        return {"ok": True}

    app.mount("/", StaticFiles(directory=assets, html=True))
    async with TestClient(app) as client:
        assert (await client.get("/health")).json() == {"ok": True}
        assert (await client.get("/app.js")).text == "console.log('hi');"


async def test_files_are_served_under_the_autojump_clock_given_a_threshold(
    assets: Path, autojump_clock: trio.testing.MockClock
) -> None:
    # The disk is read in worker threads; without a threshold the clock would jump while they work.
    autojump_clock.autojump_threshold = 0.05
    async with TestClient(_app(assets)) as client:
        for _ in range(3):
            assert (await client.get("/static/app.js")).status_code == 200


# -- on a real server -------------------------------------------------------------


@pytest.fixture
def app(assets: Path) -> TrioAPI:
    """The app the ``live_server`` fixture serves."""
    return _app(assets)


async def _http_get(port: int, target: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """``GET target`` over a plain socket, as a browser would send it (``Connection: close``)."""
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    with trio.fail_after(10):
        async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
            await stream.send_all(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            data = b""
            for _ in range(10_000):
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), parsed, body


@pytest.mark.parametrize("live_server", ["hypercorn"], indirect=True)
async def test_a_real_server_serves_files_and_refuses_ways_out(live_server: LiveServer) -> None:
    status, headers, body = await _http_get(live_server.port, "/static/css/chat.css")
    assert (status, headers["content-type"], body) == (
        200,
        "text/css; charset=utf-8",
        b"body { color: red; }",
    )
    status, _, body = await _http_get(live_server.port, "/static/app.js", if_none_match=headers["etag"])
    assert (status, body) == (200, b"console.log('hi');")  # another file's ETag
    _, js_headers, _ = await _http_get(live_server.port, "/static/app.js")
    status, _, body = await _http_get(live_server.port, "/static/app.js", if_none_match=js_headers["etag"])
    assert (status, body) == (304, b"")
    for target in ("/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/..%2fsecret.txt"):
        status, _, body = await _http_get(live_server.port, target)
        assert status == 404 and b"password" not in body, target
