"""The README's code runs as shown: its app block and its test block, together."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)


def _shell_commands() -> list[str]:
    first_block = re.search(r"```(?:bash|console)?\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert first_block is not None
    return [line for line in first_block.group(1).splitlines() if line.strip()]


def test_quick_start_is_two_commands_serving_the_chat_and_running_the_suite() -> None:
    serve, test = _shell_commands()
    assert "examples.chat:app" in serve
    assert "pytest" in test and ".[test]" in test
    assert test in (README.parent / ".ci" / "run").read_text()


async def test_the_readme_example_and_its_test_run() -> None:
    app_block, test_block = _python_blocks()
    namespace: dict[str, Any] = {}
    exec(compile(app_block + "\n" + test_block, str(README), "exec"), namespace)
    await namespace["test_echo"]()
