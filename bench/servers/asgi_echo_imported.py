"""``asgi_echo`` in a process that has also imported trioapi and built its echo app.

Serves exactly what ``asgi_echo`` serves; it only measures what importing the
framework (a larger heap, more modules) costs the bare app's connections.
"""

from bench.servers import trioapi_echo  # noqa: F401  (imported for its footprint only)
from bench.servers.asgi_echo import app

__all__ = ["app"]
