"""The documentation cannot drift from the code.

- Every name in the ``__all__`` of a public module is in the API reference.
- The tutorial and guides hold no Python typed into the page: code comes from
  files under ``examples/``, ``tests/`` or ``docs/snippets/`` (which the suite
  runs), and every ``module:app`` a shell block mentions is importable.
- ``mkdocs build --strict`` succeeds (broken links, missing files and missing
  references fail it), and the built reference has an anchor for every name.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

import trioapi.server

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "reference"

#: The modules users may import from; each has a page in docs/reference/.
PUBLIC_MODULES = [
    "trioapi",
    "trioapi.websockets",
    "trioapi.messages",
    "trioapi.asyncapi",
    "trioapi.routing",
    "trioapi.exceptions",
    "trioapi.params",
    "trioapi.security",
    "trioapi.requests",
    "trioapi.responses",
    "trioapi.encoders",
    "trioapi.staticfiles",
    "trioapi.endpoints",
    "trioapi.datastructures",
    "trioapi.status",
    "trioapi.testing",
    "trioapi.testclient",
    "trioapi.middleware",
    "trioapi.pytest_plugin",
    "trioapi.server",
    "trioapi.broadcast",
]

#: Pages whose code must come from files: the tutorial, the guides, the home page.
PROSE_PAGES = sorted([DOCS / "index.md", *(DOCS / "tutorial").glob("*.md"), *(DOCS / "guides").glob("*.md")])

#: Where included code may come from: files the test suite runs.
INCLUDE_ROOTS = ("examples/", "tests/", "docs/snippets/")

PYTHON_FENCES = {"", "python", "py", "python3", "pycon", "ipython"}
#: Fence languages allowed to hold text typed into the page (none of them Python).
OTHER_FENCES = {
    "console",
    "bash",
    "shell",
    "sh",
    "toml",
    "nginx",
    "mermaid",
    "text",
    "ini",
    "json",
    "dockerfile",
    "javascript",
}
SHELL_FENCES = {"console", "bash", "shell", "sh"}

_DIRECTIVE = re.compile(r"^::: *([\w.]+) *$")
_INCLUDE = re.compile(r'^\s*--8<--\s+"([^"]+)"\s*$')
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<ticks>`{3,}|~{3,})(?P<info>.*)$")
_TARGET = re.compile(r"(?<![\w./:-])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):([A-Za-z_]\w*)\b")
_REPO_PATH = re.compile(r"(?<![\w/.-])((?:examples|tests|docs)/[\w/.-]+\.(?:py|toml|md))\b")


# -- the API reference ------------------------------------------------------------------


def reference_directives() -> dict[str, list[str] | None]:
    """Every ``::: module`` directive in docs/reference: its ``members`` list, or None if rendered whole."""
    found: dict[str, list[str] | None] = {}
    for page in sorted(REFERENCE.glob("*.md")):
        lines = page.read_text().splitlines()
        for index, line in enumerate(lines):
            match = _DIRECTIVE.match(line)
            if match is None:
                continue
            block = []
            for option_line in lines[index + 1 :]:
                if not option_line.startswith("    "):
                    break
                block.append(option_line[4:])
            options: dict[str, Any] = (yaml.safe_load("\n".join(block)) or {}).get("options") or {}
            members = options.get("members")
            found[match.group(1)] = None if members is None else list(members)
    return found


def _covers(directives: dict[str, list[str] | None], module: str, name: str) -> bool:
    if module not in directives:
        return False
    members = directives[module]
    return members is None or name in members


def documented_as(module_name: str, name: str, directives: dict[str, list[str] | None]) -> str | None:
    """The identifier under which the reference documents ``module_name.name``, or None.

    A name counts when its module's directive renders it (the module whole, or the
    name in ``members``), or when it is a re-export of an object that another
    public module exports and renders under the same name (``trioapi.WebSocket``
    is documented as ``trioapi.websockets.WebSocket``); a submodule counts when
    it has a directive of its own.
    """
    module = importlib.import_module(module_name)
    if _covers(directives, module_name, name):
        return f"{module_name}.{name}"
    value = getattr(module, name)
    if isinstance(value, ModuleType):
        return value.__name__ if value.__name__ in directives else None
    for home in PUBLIC_MODULES:
        if home == module_name:
            continue
        other = importlib.import_module(home)
        if (
            name in getattr(other, "__all__", ())
            and getattr(other, name) is value
            and _covers(directives, home, name)
        ):
            return f"{home}.{name}"
    return None


def missing_names(module_name: str, directives: dict[str, list[str] | None]) -> list[str]:
    """The names in ``module_name.__all__`` that the reference does not document."""
    module = importlib.import_module(module_name)
    return [name for name in module.__all__ if documented_as(module_name, name, directives) is None]


def test_every_public_module_has_a_reference_page() -> None:
    directives = reference_directives()
    assert [module for module in PUBLIC_MODULES if module not in directives] == []


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_is_in_the_reference(module_name: str) -> None:
    assert missing_names(module_name, reference_directives()) == []


def test_the_reference_check_notices_a_missing_name() -> None:
    # If a members list forgot a name, or a module lost its page, the check above would say so.
    directives = reference_directives()
    everything_but_the_config = [name for name in trioapi.server.__all__ if name != "ServerConfig"]
    assert missing_names("trioapi.server", {**directives, "trioapi.server": everything_but_the_config}) == [
        "ServerConfig"
    ]
    without_websockets = {key: value for key, value in directives.items() if key != "trioapi.websockets"}
    assert "WebSocket" in missing_names("trioapi", without_websockets)
    assert "status" in missing_names(
        "trioapi", {k: v for k, v in directives.items() if k != "trioapi.status"}
    )


# -- code blocks in the tutorial and guides -------------------------------------------------


def fenced_blocks(page: Path) -> list[tuple[int, str, list[str]]]:
    """``(line number, language, lines)`` of every fenced block of ``page``."""
    blocks = []
    lines = page.read_text().splitlines()
    index = 0
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        ticks, indent = match.group("ticks"), match.group("indent")
        info = match.group("info").strip().lstrip("{").strip()
        language = info.split()[0].lstrip(".").lower() if info else ""
        end = index + 1
        while end < len(lines) and lines[end].strip() != ticks:
            end += 1
        body = [line[len(indent) :] if line.startswith(indent) else line for line in lines[index + 1 : end]]
        blocks.append((index + 1, language, body))
        index = end + 1
    return blocks


def _check_include(spec: str) -> str | None:
    """Why the include ``spec`` (``path`` or ``path:section``) is wrong, or None."""
    path, _, section = spec.partition(":")
    if not path.startswith(INCLUDE_ROOTS):
        return f"{spec}: include only files under {', '.join(INCLUDE_ROOTS)}"
    file = ROOT / path
    if not file.is_file():
        return f"{spec}: no such file"
    if section and f"--8<-- [start:{section}]" not in file.read_text():
        return f"{spec}: no section {section!r} in {path}"
    return None


@pytest.mark.parametrize("page", PROSE_PAGES, ids=lambda page: str(page.relative_to(DOCS)))
def test_code_on_the_page_comes_from_files_the_suite_runs(page: Path) -> None:
    problems = []
    for line_number, language, body in fenced_blocks(page):
        where = f"{page.relative_to(ROOT)}:{line_number}"
        includes = [match.group(1) for line in body if (match := _INCLUDE.match(line))]
        for spec in includes:
            if (problem := _check_include(spec)) is not None:
                problems.append(f"{where}: {problem}")
        if language in PYTHON_FENCES:
            typed = [line for line in body if line.strip() and not _INCLUDE.match(line)]
            if typed or not includes:
                problems.append(f"{where}: Python typed into the page; include it from a file instead")
        elif language not in OTHER_FENCES:
            problems.append(f"{where}: unexpected code block language {language!r}")
    assert problems == []


@pytest.mark.parametrize("page", PROSE_PAGES, ids=lambda page: str(page.relative_to(DOCS)))
def test_shell_blocks_name_apps_and_files_that_exist(page: Path) -> None:
    problems = []
    for line_number, language, body in fenced_blocks(page):
        if language not in SHELL_FENCES:
            continue
        text = "\n".join(body)
        for module_name, attribute in _TARGET.findall(text):
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                problems.append(f"{page.name}:{line_number}: {module_name}:{attribute}: {exc}")
                continue
            if not hasattr(module, attribute):
                problems.append(f"{page.name}:{line_number}: {module_name} has no {attribute!r}")
        for path in _REPO_PATH.findall(text):
            if not (ROOT / path).exists():
                problems.append(f"{page.name}:{line_number}: {path} does not exist")
    assert problems == []


def test_the_shell_check_finds_app_targets() -> None:
    line = "BROADCAST_URL=redis://127.0.0.1:6379/0 hypercorn -b 0.0.0.0:8000 examples.chat:app"
    assert _TARGET.findall(line) == [("examples.chat", "app")]


@pytest.mark.parametrize("snippet", sorted((DOCS / "snippets").iterdir()), ids=lambda path: path.name)
def test_every_snippet_file_is_run_by_a_test(snippet: Path) -> None:
    tests = "\n".join(path.read_text() for path in (ROOT / "tests").glob("test_*.py"))
    if snippet.suffix == ".py":
        name = re.escape(snippet.stem)
        imported = re.search(
            rf"from docs\.snippets\.{name} import|from docs\.snippets import [^\n]*\b{name}\b", tests
        )
        assert imported, f"no test imports docs/snippets/{snippet.name}"
    else:
        assert snippet.name in tests, f"no test reads docs/snippets/{snippet.name}"


# -- the site -------------------------------------------------------------------------


def test_every_page_is_in_the_nav() -> None:
    # Our own file; the full loader is needed for its !!python/name tags.
    config = yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=yaml.Loader)
    listed: set[str] = set()

    def walk(entry: Any) -> None:
        if isinstance(entry, str):
            listed.add(entry)
        elif isinstance(entry, dict):
            for value in entry.values():
                walk(value)
        elif isinstance(entry, list):
            for value in entry:
                walk(value)

    walk(config["nav"])
    pages = {str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md") if "snippets" not in path.parts}
    assert sorted(pages - listed) == []


def test_readme_documentation_links_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert links
    assert [link for link in links if not (ROOT / link).is_file()] == []


def test_the_site_builds_strictly_and_documents_every_public_name(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    html = "\n".join(path.read_text() for path in (site / "reference").rglob("*.html"))
    directives = reference_directives()
    absent = []
    for module_name in PUBLIC_MODULES:
        for name in importlib.import_module(module_name).__all__:
            identifier = documented_as(module_name, name, directives)
            if identifier is None or f'id="{identifier}"' not in html:
                absent.append(f"{module_name}.{name}")
    assert absent == []
