"""Run the code of ``docs/snippets/``, so that every snippet the docs show is tested.

pytest collects the test functions and fixtures imported into this module.
"""

from __future__ import annotations

import importlib
import json
from functools import partial
from pathlib import Path

import pytest
import trio
from hypercorn.config import Config
from trio_websocket import ConnectionClosed, open_websocket_url

from docs.snippets import embedding
from docs.snippets.chat_test import (  # noqa: F401
    test_a_message_too_long_is_refused_to_its_sender_only,
    test_an_invalid_name_is_refused_with_1008_and_a_reason,
    test_rooms_are_separate,
    test_the_chat_page_is_served,
    test_two_people_chat_in_a_room,
)
from docs.snippets.client import talk
from docs.snippets.push_feed import test_a_push_loop_ends_when_its_client_leaves  # noqa: F401
from docs.snippets.testing_clock import (  # noqa: F401
    test_a_bug_in_the_app_fails_the_test,
    test_three_minutes_pass_instantly,
    test_what_the_client_sees_when_the_app_fails,
)
from docs.snippets.testing_fixtures import (  # noqa: F401
    app,
    test_in_memory,
    test_on_a_real_server,
)
from docs.snippets.testing_ported import (  # noqa: F401
    test_a_session_cookie_logs_the_socket_in,
    test_the_manager_knows_a_client_as_soon_as_it_is_connected,
    test_the_other_room_gets_nothing,
)
from trioapi.server import serve

ROOT = Path(__file__).resolve().parent.parent


# The terminal sessions the tutorial pages show, replayed against real servers.
@pytest.mark.parametrize(
    ("example", "path", "messages", "expected"),
    [
        ("basic", "/ws", ["hello"], ["< Message text was: hello"]),
        ("path_params", "/ws/abc", ["hi"], ["handshake refused: HTTP 403"]),
        (
            "json_messages",
            "/ws/json",
            ['{"n": 1}', "{oops"],
            [
                '< {"type":"response","original_message":{"n":1},"timestamp":"2023-01-01T00:00:00Z"}',
                "closed by the server: 1007 invalid JSON: Expecting property name enclosed in double quotes"
                " at position 1",
            ],
        ),
        ("dependencies", "/ws", ["hi"], ['handshake refused: HTTP 401 {"detail":"Not authenticated"}']),
        (
            "custom_close",
            "/ws/custom-close",
            ["hello", "error"],
            ["< Received: hello", "closed by the server: 1011 Server error occurred"],
        ),
        ("routes", "/nowhere", [], ["handshake refused: HTTP 404"]),
        ("routes", "/v1/rooms/blue", ["hi"], ['< {"room":"blue","url":"/v1/rooms/blue"}', "< blue: hi"]),
        (
            "query_params",
            "/ws?room=lobby&user_id=7",
            ["yo"],
            ["< Welcome to room lobby, user 7!", "< [lobby] User 7: yo"],
        ),
        (
            "error_handling",
            "/ws/safe",
            ["{nope", '{"action": "go"}'],
            ['< {"error":"Invalid JSON format"}', '< {"success":true,"action":"go","data":null}'],
        ),
    ],
)
async def test_the_tutorial_client_prints_what_the_tutorial_shows(
    example: str, path: str, messages: list[str], expected: list[str]
) -> None:
    example_app = importlib.import_module(f"examples.{example}").app
    async with trio.open_nursery() as nursery:
        port = await nursery.start(partial(serve, example_app, port=0, shutdown_trigger=trio.sleep_forever))
        with trio.fail_after(10):
            lines = await talk(f"ws://127.0.0.1:{port}{path}", messages, wait=0.2)
        nursery.cancel_scope.cancel()
    assert lines == expected


async def test_the_embedding_example_serves_until_stopped_and_says_goodbye() -> None:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        port = await nursery.start(embedding.main, stop)
        with trio.fail_after(10):
            async with open_websocket_url(f"ws://127.0.0.1:{port}/ws/lobby/ann") as ws:
                events = [json.loads(await ws.get_message()) for _ in range(2)]
                # Ann's "joined", and the list of who is in the room, in either order.
                assert {"type": "joined", "client": "ann"} in events
                stop.set()
                with pytest.raises(ConnectionClosed) as info:
                    await ws.get_message()
    assert info.value.reason.code == 1001


def test_the_hypercorn_config_file_loads_with_the_documented_values() -> None:
    config = Config.from_toml(ROOT / "docs" / "snippets" / "hypercorn.toml")
    assert config.worker_class == "trio"
    assert config.workers == 4
    assert config.websocket_ping_interval is None  # pings end hypercorn 0.18's worker (deployment guide)
    assert config.read_timeout is None
    assert config.websocket_max_message_size == 1024 * 1024
    assert config.graceful_timeout == 5.0
