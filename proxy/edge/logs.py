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

import asyncio
import functools
import itertools
import json
import logging
import os
import sys
import time
import weakref
from contextvars import ContextVar
from typing import Any, Literal, TextIO

import orjson

LogFormat = Literal["json", "text", "auto"]
FORMATS: tuple[LogFormat, ...] = ("json", "text", "auto")

request_id: ContextVar[str | None] = ContextVar("hostfit_request_id", default=None)

# What every LogRecord has; anything else was passed as ``extra`` and goes into the line.
_BLANK = vars(logging.LogRecord("", 0, "", 0, "", None, None))
_STANDARD = frozenset(_BLANK.keys() | {"message", "asctime", "request_id", "taskName"})
# A record's own attributes come first, set by its __init__; ``extra`` is added after
# them (logging refuses an extra that would overwrite one), so only the tail is read.
_OWN = len(_BLANK)


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


# uvicorn's words for a response its app left unfinished, at error level. The download
# gate ends a misfit's transfer that way on purpose, and says why on a line of its own.
UNFINISHED = "ASGI callable returned without completing response."
_ended_short: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()


def ended_short() -> None:
    """This request's response ends before its last byte, on purpose: uvicorn's error line
    about it is left out (the line that says why is hostfit's)."""
    task = asyncio.current_task()
    if task is not None:
        _ended_short.add(task)


class EndedShortFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != UNFINISHED or record.name != "uvicorn.error":
            return True
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no loop running
            return True
        return task is None or task not in _ended_short


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    tail = itertools.islice(vars(record).items(), _OWN, None)
    return {k: v for k, v in tail if k not in _STANDARD and not k.startswith("_")}


def _timestamp(created: float) -> str:
    return f"{_second(int(created))}.{int(created % 1 * 1000):03d}Z"


@functools.lru_cache(maxsize=4)
def _second(second: int) -> str:
    """Every line of one second shares its text (an access line a request)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


# orjson writes an access line's object in about a microsecond, json in ten. Dataclasses
# and datetimes go to ``default=str`` as they did with json: orjson would write every
# field of a dataclass, those its repr hides (credentials) too. What orjson refuses (an
# int past 64 bits, a lone surrogate) goes to json; what json refuses as well (a key
# that is not a string, a cycle) goes as its repr, so no line is lost.
_ORJSON_OPTIONS = (
    orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME
)
_FALLBACK = json.JSONEncoder(default=str, ensure_ascii=True)


def _encoded(line: dict[str, Any]) -> str:
    try:
        return orjson.dumps(line, default=str, option=_ORJSON_OPTIONS).decode()
    except (orjson.JSONEncodeError, TypeError):
        pass
    try:
        return _FALLBACK.encode(line)
    except (TypeError, ValueError):
        plain = {k: v if isinstance(v, _PLAIN) else repr(v) for k, v in line.items()}
        return _FALLBACK.encode(plain)


_PLAIN = (str, int, float, bool, type(None))


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
        return _encoded(line)


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
    handler.addFilter(EndedShortFilter())
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
