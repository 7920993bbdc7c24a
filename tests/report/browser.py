"""Headless Chromium driven over the Chrome DevTools Protocol, just enough for page tests.

Debian's ``chromium`` is started with ``--remote-debugging-port=0`` and a fresh profile; the
port it picked is read from ``DevToolsActivePort`` in that profile. One page target is driven
over its websocket (``websocket-client``): navigate, evaluate JavaScript, collect console
errors (console.error/assert, uncaught exceptions, browser log errors such as failed loads)
and take a full-page screenshot. The browser's process group is ended when done.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Self

#: Flags every run uses: no sandbox (containers), no GPU, no network chatter of its own.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
)
INSTALL_HINT = (
    "Debian's chromium is required for the report browser test: apt-get install -y chromium "
    "(.ci/apt-packages lists it, so .ci/run installs it)"
)


def chromium_binary() -> str:
    """Path of the Chromium executable; AssertionError with the install hint if missing."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    raise AssertionError(INSTALL_HINT)


class Page:
    """One browser tab over its DevTools websocket."""

    def __init__(self, websocket_url: str, timeout_s: float = 30.0) -> None:
        import websocket

        # No Origin header: Chromium rejects DevTools websockets from unlisted origins.
        self.ws = websocket.create_connection(
            websocket_url, timeout=timeout_s, suppress_origin=True
        )
        self.timeout_s = timeout_s
        self.events: list[dict] = []
        self._ids = itertools.count(1)
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")

    def send(self, method: str, **params: Any) -> dict:
        """Call a DevTools method and return its result (events seen meanwhile are kept)."""
        message_id = next(self._ids)
        self.ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)
        raise TimeoutError(f"{method}: no answer within {self.timeout_s}s")

    def wait_for_event(self, method: str) -> dict:
        """Block until the event ``method`` arrives (or was already seen since the last clear)."""
        for event in self.events:
            if event["method"] == method:
                return event
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if "method" in message:
                self.events.append(message)
                if message["method"] == method:
                    return message
        raise TimeoutError(f"{method}: not seen within {self.timeout_s}s")

    def navigate(self, url: str) -> None:
        """Open ``url`` and wait for its load event; events of the previous page are dropped."""
        self.events.clear()
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise RuntimeError(f"navigate {url}: {result['errorText']}")
        self.wait_for_event("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        """Evaluate JavaScript in the page and return its JSON-able value."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluate: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def console_errors(self) -> list[str]:
        """console.error/assert calls, uncaught exceptions and error log entries so far."""
        self.send("Runtime.evaluate", expression="0")  # flush events queued before now
        errors = []
        for event in self.events:
            params = event.get("params", {})
            if event["method"] == "Runtime.consoleAPICalled" and params.get("type") in (
                "error",
                "assert",
            ):
                errors.append(
                    " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
                )
            elif event["method"] == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                errors.append(
                    details.get("exception", {}).get("description") or details.get("text")
                )
            elif event["method"] == "Log.entryAdded" and params["entry"].get("level") == "error":
                errors.append(f"{params['entry'].get('source')}: {params['entry'].get('text')}")
        return errors

    def screenshot(self, path: Path, width: int = 1200) -> Path:
        """Save a PNG of the whole page (not just the viewport) at ``width`` CSS pixels."""
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=800,
            deviceScaleFactor=1,
            mobile=False,
        )
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        shot = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path = Path(path)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        """Close the websocket."""
        self.ws.close()


class HeadlessChromium:
    """``with HeadlessChromium(profile_dir) as browser: page = browser.page()``."""

    def __init__(self, profile_dir: Path, startup_timeout_s: float = 60.0) -> None:
        self.profile_dir = Path(profile_dir)
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen | None = None
        self.port: int | None = None
        self.log_path = self.profile_dir.parent / f"{self.profile_dir.name}-chromium.log"
        self._pages: list[Page] = []

    def __enter__(self) -> Self:
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        command = [chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={self.profile_dir}"]
        with self.log_path.open("w") as log:
            # Own process group: the wrapper script, the browser and its helpers end together.
            self.process = subprocess.Popen(
                [*command, "about:blank"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        active = self.profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"chromium exited with {self.process.returncode}: {self.log_path.read_text()[-2000:]}"
                )
            if active.exists() and active.read_text().strip():
                self.port = int(active.read_text().splitlines()[0])
                return self
            time.sleep(0.1)
        self.__exit__(None, None, None)
        raise TimeoutError(
            f"chromium did not open its DevTools port within {self.startup_timeout_s}s"
        )

    def page(self) -> Page:
        """The first page target (the about:blank tab the browser opened)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=10) as r:
            targets = json.loads(r.read())
        target = next(t for t in targets if t.get("type") == "page")
        page = Page(target["webSocketDebuggerUrl"])
        self._pages.append(page)
        return page

    def __exit__(self, *exc_info: object) -> None:
        for page in self._pages:
            page.close()
        if self.process is None or self.process.poll() is not None:
            return
        # The group this run started, by its id; it may be gone already (suppress).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
