"""Logging for a process trioapi runs: one format for trioapi's lines and the server's.

``trioapi run`` calls ``configure_logging`` once, before serving. Every line,
trioapi's (``trioapi``, ``trioapi.access``, ``trioapi.native``, ...) and
hypercorn's (``hypercorn.error``, which trioapi's serving hands its own logger),
goes through one handler on the root logger, in one of two formats:

- ``text`` (the default), for people::

      2026-12-05 10:30:00,123 INFO [4711] trioapi.access: 127.0.0.1:50421 - "WebSocket /ws" accepted

  (``[4711 w2]`` when the process is worker 2 of ``--workers``);
- ``json``, one object per line for log shippers, with the record's fields
  (``time``, ``level``, ``logger``, ``pid``, ``worker``, ``message``) and the
  access log's own (``client``, ``path``, ``event``, ``code``, ``closed_by``,
  ``duration``, ``status``, ...).

A ``logging.config`` dictionary in a file (``--log-config``, JSON, or YAML when
PyYAML is installed) replaces all of this, as uvicorn's ``--log-config`` does.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
from pathlib import Path
from typing import Any, Literal

__all__ = ["JSONFormatter", "LogFormat", "TextFormatter", "configure_logging"]

#: The two built-in formats.
LogFormat = Literal["text", "json"]

#: The environment variables through which ``trioapi run --workers N`` tells each worker
#: its number, and how many there are.
WORKER_ENV = "TRIOAPI_WORKER"
WORKERS_ENV = "TRIOAPI_WORKERS"

#: The attributes every ``LogRecord`` has; anything else on a record came as ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "worker"}


class _WorkerFilter(logging.Filter):
    """Puts ``worker`` (``" w2"``, or ``""`` for a single process) on every record."""

    def __init__(self, worker: str) -> None:
        super().__init__()
        self.worker = f" w{worker}" if worker else ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.worker = self.worker
        return True


class TextFormatter(logging.Formatter):
    """``time LEVEL [pid wN] logger: message``, and the traceback, if any, below."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s [%(process)d%(worker)s] %(name)s: %(message)s")


class JSONFormatter(logging.Formatter):
    """One JSON object per record: the standard fields, then whatever came as ``extra``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "worker": getattr(record, "worker", "").strip() or None,
            "message": record.getMessage(),
        }
        entry.update((key, value) for key, value in record.__dict__.items() if key not in _STANDARD)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(
    level: str = "info",
    log_format: LogFormat = "text",
    *,
    access_log: bool = True,
    config_file: str | None = None,
) -> None:
    """Send every logger's records through one handler on the root logger, in ``log_format``.

    ``level`` applies to trioapi's and hypercorn's loggers; ``access_log=False``
    silences ``trioapi.access`` (one line per connection and per HTTP request).
    With ``config_file`` (a ``logging.config`` dictionary as JSON or YAML), that
    configuration is used instead and the other arguments are ignored.
    """
    if config_file is not None:
        logging.config.dictConfig(_load_config(Path(config_file)))
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(_WorkerFilter(os.environ.get(WORKER_ENV, "")))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)  # other libraries' chatter
    numeric = logging.getLevelName(level.upper())
    for name in ("trioapi", "hypercorn.error"):
        logging.getLogger(name).setLevel(numeric)
    logging.getLogger("trioapi.access").setLevel(numeric if access_log else logging.WARNING)


def _load_config(path: Path) -> dict[str, Any]:
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError:
            raise SystemExit(f"trioapi: {path} is YAML, which needs PyYAML: pip install pyyaml") from None
        loaded = yaml.safe_load(text)
    else:
        try:
            loaded = json.loads(text)
        except ValueError as exc:
            raise SystemExit(f"trioapi: --log-config {path}: not JSON ({exc})") from None
    if not isinstance(loaded, dict):
        raise SystemExit(f"trioapi: --log-config {path} must hold a logging.config dictionary")
    return loaded
