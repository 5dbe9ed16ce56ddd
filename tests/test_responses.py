"""The responses a ported app reaches for: ``FileResponse``, ``RedirectResponse``, cookies."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import os
import uuid
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path

import attrs
import pytest

from trioapi import TrioAPI
from trioapi.encoders import jsonable_encoder
from trioapi.responses import FileResponse, PlainTextResponse, RedirectResponse
from trioapi.testing import TestClient

# -- FileResponse -----------------------------------------------------------------


async def test_a_file_response_sends_the_file_with_type_length_and_validators(tmp_path: Path) -> None:
    page = tmp_path / "chat.html"
    page.write_text("<p>chat</p>")
    app = TrioAPI()

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(page)

    async with TestClient(app) as client:
        response = await client.get("/")
    status = page.stat()
    assert response.status_code == 200
    assert response.text == "<p>chat</p>"
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-length"] == str(status.st_size)
    assert response.headers["last-modified"] == formatdate(status.st_mtime, usegmt=True)
    assert response.headers["etag"].startswith('"') and response.headers["etag"].endswith('"')


async def test_a_file_larger_than_a_chunk_arrives_whole(tmp_path: Path) -> None:
    data = os.urandom(3 * FileResponse.chunk_size + 5)
    blob = tmp_path / "blob.bin"
    blob.write_bytes(data)
    app = TrioAPI()

    @app.get("/blob")
    async def get_blob() -> FileResponse:
        return FileResponse(blob)

    async with TestClient(app) as client:
        response = await client.get("/blob")
    assert response.content == data
    assert response.headers["content-type"] == "application/octet-stream"


async def test_head_gets_the_headers_without_the_body(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello")
    app = TrioAPI()
    app.add_api_route("/a", lambda: FileResponse(tmp_path / "a.txt"))
    async with TestClient(app) as client:
        response = await client.request("HEAD", "/a")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == "5"


async def test_a_filename_makes_it_an_attachment_quoted_when_not_ascii(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("a,b")
    app = TrioAPI()
    app.add_api_route("/plain", lambda: FileResponse(tmp_path / "r.csv", filename="report.csv"))
    app.add_api_route("/accented", lambda: FileResponse(tmp_path / "r.csv", filename="résumé.csv"))
    async with TestClient(app) as client:
        plain = await client.get("/plain")
        accented = await client.get("/accented")
    assert plain.headers["content-disposition"] == 'attachment; filename="report.csv"'
    assert plain.headers["content-type"] == "text/csv; charset=utf-8"
    assert accented.headers["content-disposition"] == "attachment; filename*=utf-8''r%C3%A9sum%C3%A9.csv"


async def test_a_missing_file_is_an_error_in_the_app(tmp_path: Path) -> None:
    app = TrioAPI()
    app.add_api_route("/gone", lambda: FileResponse(tmp_path / "gone.txt"))
    async with TestClient(app) as client:
        with pytest.raises(RuntimeError, match="does not exist"):
            await client.get("/gone")


# -- RedirectResponse -------------------------------------------------------------


async def test_a_redirect_is_a_307_with_the_location_percent_encoded() -> None:
    app = TrioAPI()
    app.add_api_route("/old", lambda: RedirectResponse("/new page?room=é"))
    app.add_api_route("/form", lambda: RedirectResponse("/done", status_code=303), methods=["POST"])
    async with TestClient(app) as client:
        old = await client.get("/old")
        form = await client.post("/form")
    assert (old.status_code, old.headers["location"], old.content) == (307, "/new%20page?room=%C3%A9", b"")
    assert (form.status_code, form.headers["location"]) == (303, "/done")


# -- cookies ----------------------------------------------------------------------


def _set_cookie_headers(response: PlainTextResponse) -> list[str]:
    return [value.decode() for name, value in response.raw_headers if name == b"set-cookie"]


def test_set_cookie_writes_the_attributes_asked_for() -> None:
    response = PlainTextResponse("ok")
    response.set_cookie("session", "abc", max_age=60, secure=True, httponly=True, samesite="strict")
    response.set_cookie("theme", "dark", path=None, samesite=None)
    assert _set_cookie_headers(response) == [
        "session=abc; HttpOnly; Max-Age=60; Path=/; SameSite=strict; Secure",
        "theme=dark",
    ]


def test_set_cookie_expires_takes_a_datetime_or_seconds_from_now() -> None:
    response = PlainTextResponse("ok")
    response.set_cookie("a", "1", expires=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC))
    response.set_cookie("b", "2", expires=0, samesite=None, path=None)
    first, second = _set_cookie_headers(response)
    assert "expires=Wed, 02 Jan 2030 03:04:05 GMT" in first
    assert second.startswith("b=2; expires=") and second.endswith(" GMT")


def test_delete_cookie_expires_it_now() -> None:
    response = PlainTextResponse("ok")
    response.delete_cookie("session")
    (header,) = _set_cookie_headers(response)
    assert header.startswith('session=""; expires=') and "Max-Age=0" in header


def test_an_unknown_samesite_is_refused() -> None:
    with pytest.raises(ValueError, match="samesite"):
        PlainTextResponse("ok").set_cookie("a", "1", samesite="sometimes")  # type: ignore[arg-type]


async def test_an_endpoint_may_return_attrs_dataclass_and_other_json_unfriendly_values() -> None:
    @attrs.frozen
    class Member:
        name: str
        joined: dt.datetime

    @dataclasses.dataclass
    class Room:
        id: uuid.UUID
        members: list[Member]
        tags: frozenset[str]
        fee: decimal.Decimal

    app = TrioAPI()

    @app.get("/room")
    async def room() -> Room:
        when = dt.datetime(2026, 12, 5, 10, 30, tzinfo=dt.UTC)
        return Room(uuid.UUID(int=7), [Member("ann", when)], frozenset({"quiet"}), decimal.Decimal("2.50"))

    async with TestClient(app) as client:
        response = await client.get("/room")
    assert response.json() == {
        "id": "00000000-0000-0000-0000-000000000007",
        "members": [{"name": "ann", "joined": "2026-12-05T10:30:00+00:00"}],
        "tags": ["quiet"],
        "fee": 2.5,
    }


def test_jsonable_encoder_turns_values_into_json_ready_data() -> None:
    class Colour(enum.Enum):
        RED = "red"

    assert jsonable_encoder({1: (Colour.RED, dt.date(2026, 1, 2)), "t": dt.timedelta(seconds=90)}) == {
        "1": ["red", "2026-01-02"],
        "t": 90.0,
    }
    with pytest.raises(TypeError, match="is not JSON serializable"):
        jsonable_encoder(object())
