"""Log output: one line per event, as text (default) or JSON lines (``log.format = "json"``).

Every line of one client connection carries ``conn=N`` (its connection id, per process), so one device's
connection can be followed through connect, requests, errors and disconnect. Text lines are
``<time> <LEVEL> <logger> <message>``; a traceback stays on the event's line, its line breaks written as
``\\n``. JSON lines have ``ts`` (ISO 8601, UTC), ``level``, ``logger``, ``msg`` and, with a traceback,
``exc``. What is logged never includes a token, a secret, a device token or a message body (the code
logs ids, codes and sizes; tests/test_logs.py runs a whole scenario and searches every line).
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import TextIO

from gateway.config import LogConfig

#: Third-party loggers that would log a line per HTTP request (the webhooks' client): warnings only.
QUIET_LOGGERS = ("httpx", "httpcore", "hpack")


def _iso(created: float) -> str:
    return datetime.datetime.fromtimestamp(created, datetime.UTC).isoformat(timespec="milliseconds")


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_iso(record.created)} {record.levelname} {record.name} {record.getMessage()}"
        if record.exc_info:
            line += " " + self.formatException(record.exc_info)
        return line.replace("\r", "\\r").replace("\n", "\\n")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": _iso(record.created), "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def formatter(config: LogConfig) -> logging.Formatter:
    return JsonFormatter() if config.format == "json" else TextFormatter()


def configure(config: LogConfig, stream: TextIO | None = None) -> logging.Handler:
    """Send every log line of the process to ``stream`` (default stderr) in the configured format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(config))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(config.level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    return handler
