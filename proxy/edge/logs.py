"""hostfit's log lines: JSON for collectors, text for people, each with its request id.

The request id lives in a context variable (`request_id`) set by the observing middleware
(`proxy.edge.observe`); asyncio copies the context into every task a request starts, so
upstream fetches, gate refusals and analysis submissions made on its behalf carry it too.
`RequestIdFilter` sits on the handler (a logger's own filters skip propagated records), so
every line that reaches it, hostfit's, uvicorn's or httpx's, gets the id of its request.

`configure` is called in the serving process and again in each ``--workers`` process
(uvicorn starts them fresh), so no worker's lines are lost or left unformatted.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import time
from contextvars import ContextVar
from typing import Any, Literal, TextIO

LogFormat = Literal["json", "text", "auto"]
FORMATS: tuple[LogFormat, ...] = ("json", "text", "auto")

request_id: ContextVar[str | None] = ContextVar("hostfit_request_id", default=None)

# What every LogRecord has; anything else was passed as ``extra`` and goes into the line.
_STANDARD = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "request_id", "taskName"}
)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _timestamp(created: float) -> str:
    return f"{_second(int(created))}.{int(created % 1 * 1000):03d}Z"


@functools.lru_cache(maxsize=4)
def _second(second: int) -> str:
    """Every line of one second shares its text (an access line a request)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: timestamp, level, logger, message, request_id, pid, extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "pid": os.getpid(),  # which --workers process
        }
        for key, value in _extras(record).items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _ENCODER.encode(line)


class TextFormatter(logging.Formatter):
    """``2026-01-01T12:00:00.000Z INFO hostfit.access [id] message key=value ...``."""

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        parts = [_timestamp(record.created), record.levelname, record.name]
        if rid:
            parts.append(f"[{rid}]")
        parts.append(record.getMessage())
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def formatter_for(fmt: LogFormat, stream: TextIO) -> logging.Formatter:
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    return JsonFormatter() if fmt == "json" else TextFormatter()


def configure(fmt: LogFormat = "auto", stream: TextIO | None = None) -> None:
    """The root logger writes to ``stream`` (stderr) in ``fmt``; earlier handlers go."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter_for(fmt, stream))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # No line shows where a call was made, or the thread's or process's name: logging's
    # documented switches spare every record finding them (an access line a request).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.getLogger("httpx").setLevel(logging.WARNING)
