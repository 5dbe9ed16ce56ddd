"""The JavaScript packages the suite runs (tests/js): installed from the npm registry on first need.

``.ci/run`` installs them up front (``npm ci --prefix tests/js``); a plain
``python -m pytest`` on a fresh clone installs them here, once, from the
committed lock file, so the README's test command needs nothing more than node
and npm on the PATH.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

JS = Path(__file__).resolve().parent / "js"
COMPONENT = JS / "node_modules" / "@asyncapi" / "react-component"
PARSER = JS / "node_modules" / "@asyncapi" / "parser"


def ensure_installed() -> None:
    """Install tests/js/package-lock.json's packages unless they are there; fail clearly if impossible."""
    if PARSER.is_dir() and COMPONENT.is_dir():
        return
    npm = shutil.which("npm")
    assert npm is not None, "npm is needed for the AsyncAPI tests: apt-get install nodejs npm"
    result = subprocess.run(
        [npm, "ci", "--prefix", str(JS), "--ignore-scripts", "--no-audit", "--no-fund"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"npm ci --prefix tests/js failed:\n{result.stdout}\n{result.stderr}"
