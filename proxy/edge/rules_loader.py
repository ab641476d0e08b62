"""Rules from disk: a file, or every ``*.toml`` of a directory, plus hostfit's shipped knowledge.

`ActiveRules` holds the rules in force. A reload builds a complete new `Rules` value
and swaps one reference: no request waits or fails for it. Each serving layer takes
one snapshot of the rules when it runs, so a request under way while the swap happens
may meet the old rules in one layer and the new ones in the next. A reload that
fails validation keeps the old rules and logs why; so does one that fails in any other
way (an unreadable directory, a bug): the watcher keeps watching, whatever happens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from proxy.core.rules import Rules, load_rules, shipped_texts
from proxy.errors import ConfigError

log = logging.getLogger("hostfit.rules")

Stamp = tuple[tuple[str, int, int], ...]
POLL_SECONDS = 2.0


def rule_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.glob("*.toml") if p.is_file())
    if path.is_file():
        return [path]
    raise ConfigError(f"{path}: no such rules file or directory")


def read_rules(path: Path | None) -> Rules:
    """Shipped knowledge, then the operator's files in name order; raises `ConfigError`."""
    texts = shipped_texts()
    for file in rule_files(path) if path is not None else []:
        try:
            texts[str(file)] = file.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read: {exc}") from None
    return load_rules(texts)


def stamp(path: Path | None) -> Stamp:
    """What changes when a rules file is edited, added or removed."""
    if path is None:
        return ()
    try:
        files = rule_files(path)
    except (ConfigError, OSError):
        return ()
    result = []
    for file in files:
        try:
            info = file.stat()
        except OSError:
            continue
        result.append((str(file), info.st_mtime_ns, info.st_size))
    return tuple(result)


class ActiveRules:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._stamp = stamp(path)
        self.current = read_rules(path)
        self._listeners: list[Callable[[Rules], None]] = []
        self.on_reloaded: list[Callable[[str], None]] = []  # told "ok" or "failed" (metrics)

    def _reloaded(self, outcome: str) -> None:
        for tell in self.on_reloaded:
            tell(outcome)

    def on_change(self, listener: Callable[[Rules], None]) -> None:
        self._listeners.append(listener)
        listener(self.current)

    def reload(self) -> bool:
        """Read the rules again; False (old rules kept, reason logged) if they are bad."""
        self._stamp = stamp(self.path)
        try:
            rules = read_rules(self.path)
        except ConfigError as exc:
            log.error("rules not reloaded, the previous rules stay in force: %s", exc)
            self._reloaded("failed")
            return False
        except Exception:
            log.exception("rules not reloaded, the previous rules stay in force")
            self._reloaded("failed")
            return False
        self._reloaded("ok")
        if rules.digest == self.current.digest:
            return True
        self.current = rules
        for listener in self._listeners:
            listener(rules)
        log.info("rules reloaded from %s (digest %s)", self.path, rules.digest[:12])
        return True

    def changed_on_disk(self) -> bool:
        return stamp(self.path) != self._stamp


@contextlib.asynccontextmanager
async def watch_rules(rules: ActiveRules, poll: float = POLL_SECONDS) -> AsyncIterator[None]:
    """Reload on SIGHUP (where this thread may handle signals) and when a file changes."""
    if rules.path is None:
        yield
        return
    loop = asyncio.get_running_loop()
    on_signal = threading.current_thread() is threading.main_thread()
    if on_signal:
        loop.add_signal_handler(signal.SIGHUP, rules.reload)
    task = asyncio.create_task(_poll(rules, poll))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if on_signal:
            loop.remove_signal_handler(signal.SIGHUP)


async def _poll(rules: ActiveRules, interval: float) -> None:
    failing = ""  # the error last logged: a lasting one is said once, not every poll
    while True:
        await asyncio.sleep(interval)
        try:
            if await asyncio.to_thread(rules.changed_on_disk):
                rules.reload()
        except Exception as exc:
            # A task that ends stops every later edit from being seen, silently.
            if repr(exc) != failing:
                log.exception("rules not checked for changes, still watching")
            failing = repr(exc)
        else:
            failing = ""
