"""The typed chat with its ``/asyncapi`` page loading the AsyncAPI component from this server.

The component comes from ``tests/js/node_modules`` (installed from the npm
registry by ``.ci/run``), served under ``/asyncapi-ui``, so the browser test
renders the page with no internet.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from examples.typed_chat import app
from trioapi import HTTPException
from trioapi.responses import Response

COMPONENT = Path(__file__).resolve().parent.parent / "js" / "node_modules" / "@asyncapi" / "react-component"
# (tests/js_packages.py installs it; this module runs in the server process, so it only reads it.)

app.asyncapi_ui_url = "/asyncapi-ui"


@app.get("/asyncapi-ui/{path:path}")
async def component_file(path: str) -> Response:
    """A file of the installed component package (only the two the page loads)."""
    if path not in ("browser/standalone/index.js", "styles/default.min.css"):
        raise HTTPException(404)
    media_type = mimetypes.guess_type(path)[0] or "application/octet-stream"
    return Response((COMPONENT / path).read_bytes(), media_type=media_type)
