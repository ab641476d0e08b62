"""What must hold after every fault (issue 10): nothing corrupt cached, no temp file left,
no traceback in the log."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# uvicorn's own loggers do not propagate to the root logger, where pytest listens.
WATCHED = ("", "uvicorn", "uvicorn.error", "uvicorn.asgi")


class LogWatch(logging.Handler):
    """Every record of the proxy and of the server running it, tracebacks included."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> str:
        return "\n".join(record.getMessage() for record in self.records)

    def tracebacks(self) -> list[str]:
        return [
            f"{record.name}: {record.getMessage()}"
            for record in self.records
            if record.exc_info is not None or "Traceback" in record.getMessage()
        ]


@contextmanager
def watch_logs() -> Iterator[LogWatch]:
    watch = LogWatch()
    loggers = [logging.getLogger(name) for name in WATCHED]
    hostfit = logging.getLogger("hostfit")
    level = hostfit.level
    for logger in loggers:
        logger.addHandler(watch)
    hostfit.setLevel(logging.INFO)
    try:
        yield watch
    finally:
        for logger in loggers:
            logger.removeHandler(watch)
        hostfit.setLevel(level)


def assert_cache_sound(cache_dir: Path) -> list[str]:
    """No temp file; every blob's bytes hash to its name. Returns the blobs' digests."""
    files = cache_dir / "files"
    leftovers = list((files / "tmp").iterdir()) if (files / "tmp").exists() else []
    assert not leftovers, f"temp files left: {leftovers}"
    digests = []
    for blob in (files / "sha256").rglob("*"):
        if blob.is_file():
            digest = hashlib.sha256()
            with blob.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            assert digest.hexdigest() == blob.name, f"corrupt blob cached: {blob}"
            digests.append(blob.name)
    return digests


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text, text[-4000:]
