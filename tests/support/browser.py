"""A real headless Chromium for tests, driven over the Chrome DevTools Protocol.

Debian's ``chromium`` package (scripts/test installs it); ``HOSTFIT_CHROMIUM`` names
another binary. No WebDriver, no downloads: the browser is started with
``--remote-debugging-port=0``, tells its port in ``DevToolsActivePort``, and one page
target is driven over a websocket (``websockets``' sync client, which uvicorn[standard]
already brings).

Input goes through the browser's own input pipeline (`Page.type`, `Page.press`), so a
form is submitted the way a person does it from the keyboard. JavaScript dialogs and
console messages are recorded: a test that shows hostile text must see none.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import httpx
from websockets.sync.client import ClientConnection, connect

TIMEOUT = 30.0


def chromium_binary() -> str | None:
    explicit = os.environ.get("HOSTFIT_CHROMIUM")
    if explicit:
        return explicit
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class CdpError(RuntimeError):
    pass


class Page:
    """One tab. ``events`` keeps every event the page sent, in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []
        self.send("Page.enable")
        self.send("Runtime.enable")

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self.ids)
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + TIMEOUT
        while True:
            message = self._receive(deadline)
            if message.get("id") == ident:
                if "error" in message:
                    raise CdpError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def _receive(self, deadline: float) -> dict[str, Any]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer from the browser")
        message: dict[str, Any] = json.loads(self.ws.recv(timeout=left))
        if "method" in message:
            self.events.append(message)
            if message["method"] == "Page.javascriptDialogOpening":
                # Never leave a page blocked on a dialog; the test sees the event.
                self.ws.send(
                    json.dumps(
                        {
                            "id": next(self.ids),
                            "method": "Page.handleJavaScriptDialog",
                            "params": {"accept": True},
                        }
                    )
                )
        return message

    def wait_for(self, method: str, since: int) -> dict[str, Any]:
        """The first event ``method`` after index ``since`` of `events`."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            for event in self.events[since:]:
                if event["method"] == method:
                    return event
            self._receive(deadline)

    def goto(self, url: str) -> None:
        mark = len(self.events)
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise CdpError(f"{url}: {result['errorText']}")
        self.wait_for("Page.loadEventFired", mark)

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise CdpError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def text(self, selector: str = "body") -> str:
        value = self.evaluate(f"document.querySelector({json.dumps(selector)}).innerText")
        return str(value)

    def count(self, selector: str) -> int:
        return int(self.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length"))

    @property
    def url(self) -> str:
        return str(self.evaluate("location.href"))

    def focus(self, selector: str) -> None:
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")

    def type(self, text: str) -> None:
        self.send("Input.insertText", text=text)

    _KEYS: ClassVar[dict[str, tuple[str, int, str | None]]] = {
        # name: (DOM key, Windows virtual key code, text typed)
        "Enter": ("Enter", 13, "\r"),
        "Tab": ("Tab", 9, None),
        "Space": (" ", 32, " "),
    }

    def press(self, name: str) -> None:
        key, code, text = self._KEYS[name]
        params = {"key": key, "code": name, "windowsVirtualKeyCode": code}
        typed = {"text": text} if text else {}
        self.send("Input.dispatchKeyEvent", type="keyDown", **params, **typed)
        self.send("Input.dispatchKeyEvent", type="keyUp", **params)

    def submit_by_keyboard(self) -> None:
        """Enter in the focused field, then wait for the page it leads to."""
        mark = len(self.events)
        self.press("Enter")
        self.wait_for("Page.loadEventFired", mark)

    def viewport(self, width: int, height: int, *, mobile: bool = False) -> None:
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=mobile,
        )

    def color_scheme(self, scheme: str) -> None:
        self.send(
            "Emulation.setEmulatedMedia",
            features=[{"name": "prefers-color-scheme", "value": scheme}],
        )

    def screenshot(self, path: Path, *, full_page: bool = False, height: int = 6000) -> Path:
        """The viewport, or with ``full_page`` the whole page down to ``height`` pixels."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            size = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": min(size["height"], height),
                "scale": 1,
            }
        data = self.send("Page.captureScreenshot", **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def dialogs(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["method"] == "Page.javascriptDialogOpening"]


class Browser:
    def __init__(self, binary: str, log: Path) -> None:
        self.binary = binary
        self.log = log
        self.profile = Path(tempfile.mkdtemp(prefix="hostfit-chromium-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> Browser:
        args = [
            self.binary,
            "--headless",
            "--no-sandbox",  # tests may run as root, where the sandbox refuses to start
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--remote-debugging-port=0",
            "--remote-allow-origins=*",
            f"--user-data-dir={self.profile}",
            "--window-size=1200,900",
            "about:blank",
        ]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=log)
        active = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + TIMEOUT
        while not (active.is_file() and len(active.read_text().split()) >= 2):
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited: {self.log.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not open its DevTools port")
            time.sleep(0.05)
        self.port = int(active.read_text().split()[0])
        return self

    @contextlib.contextmanager
    def new_page(self) -> Iterator[Page]:
        """A fresh tab, closed afterwards."""
        base = f"http://127.0.0.1:{self.port}"
        target = httpx.put(f"{base}/json/new?about:blank", timeout=TIMEOUT).json()
        try:
            with connect(target["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024) as ws:
                yield Page(ws)
        finally:
            httpx.get(f"{base}/json/close/{target['id']}", timeout=TIMEOUT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
