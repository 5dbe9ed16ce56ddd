"""trioapi installs like a real package: ``python -m build`` makes an sdist and a wheel, and
the wheel, installed into a fresh virtual environment, serves the chat example.

Offline and fast: the build uses this environment's hatchling (``--no-isolation``),
and the venv sees this environment's dependencies (``--system-site-packages``) so
that only the wheel itself is installed (``--no-deps``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from redis_server import kill_process_group
from servers import free_port
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent


@attrs.frozen
class Dist:
    """The files ``python -m build`` made."""

    wheel: Path
    sdist: Path


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = out.glob("trioapi-*-py3-none-any.whl")
    (sdist,) = out.glob("trioapi-*.tar.gz")
    return Dist(wheel, sdist)


def test_the_wheel_holds_the_package_with_its_type_marker_and_nothing_else(dist: Dist) -> None:
    names = set(zipfile.ZipFile(dist.wheel).namelist())
    package = {name for name in names if not name.startswith("trioapi-")}
    source = {path.relative_to(ROOT).as_posix() for path in (ROOT / "trioapi").rglob("*.py")}
    assert package == source | {"trioapi/py.typed"}
    info = {name.split("/", 1)[1] for name in names - package}
    assert info == {"METADATA", "WHEEL", "entry_points.txt", "RECORD", "licenses/LICENSE"}


def test_the_wheel_declares_the_command_the_pytest_plugin_and_the_extras(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as wheel:
        (info,) = {name.split("/")[0] for name in wheel.namelist() if ".dist-info/" in name}
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()
        metadata = wheel.read(f"{info}/METADATA").decode()
    assert "trioapi = trioapi.cli:main" in entry_points
    assert "trioapi = trioapi.pytest_plugin" in entry_points
    assert "License-Expression: MIT" in metadata
    assert "Requires-Dist: coredis<7,>=6.9; extra == 'redis'" in metadata
    assert "Classifier: Typing :: Typed" in metadata


def test_the_sdist_holds_the_sources_tests_and_docs_but_no_build_debris(dist: Dist) -> None:
    with tarfile.open(dist.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in ("pyproject.toml", "README.md", "LICENSE", "trioapi/py.typed", "examples/chat.html"):
        assert needed in names
    tops = {name.split("/")[0] for name in names}
    assert {"trioapi", "tests", "docs", "examples"} <= tops
    assert not tops & {".ci", "dist", "site", ".git"}
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


@pytest.fixture(scope="module")
def venv(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with the wheel installed (its dependencies seen from this one)."""
    where = tmp_path_factory.mktemp("venv")
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(where)],
        check=True,
        timeout=60,
    )
    python = where / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(dist.wheel)],
        check=True,
        env=clean_env(),
        timeout=120,
    )
    return where


def clean_env() -> dict[str, str]:
    """This environment without the PYTHONPATH that points the tests at the checkout."""
    return {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """A folder outside the checkout holding a copy of the examples, as a user's project would."""
    shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_installed_package_is_imported_from_the_venv(venv: Path, app_dir: Path) -> None:
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import trioapi; print(trioapi.__file__)"],
        cwd=app_dir,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    assert Path(found).is_relative_to(venv)


@pytest.fixture
def served_chat(venv: Path, app_dir: Path) -> Iterator[int]:
    """``trioapi run examples.chat:app``, with the venv's ``trioapi`` command; yields the port."""
    port = free_port()
    process = subprocess.Popen(
        [str(venv / "bin" / "trioapi"), "run", "examples.chat:app", "--port", str(port)],
        cwd=app_dir,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    assert json.load(response) == {"status": "ok"}
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError(
                f"the installed trioapi did not serve the chat within 20 s (exit {process.poll()})"
            )
        yield port
        # Ctrl-C's twin: the installed command says goodbye and exits cleanly.
        os.killpg(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
        assert process.returncode == 0, output
        assert b"Traceback" not in output
    finally:
        kill_process_group(process)


def test_the_installed_command_serves_the_chat_example(served_chat: int) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{served_chat}/?room=lobby", timeout=5) as response:
        assert b"<title>trioapi chat</title>" in response.read()
    with connect(f"ws://127.0.0.1:{served_chat}/ws/lobby/ann", open_timeout=10) as ann:
        events = [json.loads(ann.recv(timeout=10)) for _ in range(2)]
        assert {"type": "joined", "client": "ann"} in events
        ann.send("hello from an installed trioapi")
        said = {"type": "message", "client": "ann", "text": "hello from an installed trioapi"}
        received = []
        for _ in range(3):  # a presence update may come first
            received.append(json.loads(ann.recv(timeout=10)))
            if received[-1] == said:
                break
        assert received[-1] == said, received
