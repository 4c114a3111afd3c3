"""Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: JSON messages
ended by NUL, read on fd 3 and written on fd 4), so a test reads a page as laid out at a given width, not only
its markup, with no WebSocket library. What the test evaluates is not bound by the page's
Content-Security-Policy, which forbids script to the page's own markup."""

from __future__ import annotations

import base64
import json
import os
import select
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

AXE = Path(__file__).parent.parent / "node_modules" / "axe-core" / "axe.min.js"
COMMAND = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--remote-debugging-pipe"]


class Chromium:
    """One browser with one tab; `open` loads a URL at a window size. FLAGS: more of Chromium's command-line
    switches (a name's address, certificate errors ignored)."""

    def __init__(self, timeout: float = 60, flags: Sequence[str] = ()) -> None:
        self._timeout = timeout
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser = os.pipe()
        # posix_spawn puts the pipes on fds 3 and 4 without running Python in the child, which a Popen
        # preexec_fn would, unsafely with the tests' server threads running
        self._pid = os.posix_spawnp(
            COMMAND[0],
            [*COMMAND, *flags, "about:blank"],
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, to_browser, 3),
                (os.POSIX_SPAWN_DUP2, from_browser, 4),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            ],
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._events: list[dict[str, Any]] = []
        self._last_id = 0
        self._session: str | None = None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable")

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._session = None
        try:
            self.call("Browser.close")
        except (OSError, EOFError, TimeoutError):
            pass
        deadline = time.monotonic() + 10
        while os.waitpid(self._pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(self._pid, signal.SIGKILL)
                os.waitpid(self._pid, 0)
                break
            time.sleep(0.1)
        os.close(self._to_browser)
        os.close(self._from_browser)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """METHOD's result, on the tab once attached; events read meanwhile are kept for `wait_for`."""
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params}
        if self._session:
            message["sessionId"] = self._session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply["result"])
            self._events.append(reply)

    def wait_for(self, event: str) -> dict[str, Any]:
        while True:
            for index, message in enumerate(self._events):
                if message.get("method") == event:
                    return dict(self._events.pop(index).get("params", {}))
            self._events.append(self._read())

    def open(self, url: str, width: int, height: int = 800, mobile: bool = False) -> None:
        """URL loaded in a window WIDTH CSS pixels wide (a phone's when MOBILE: its viewport meta applies)."""
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=mobile)
        self._events.clear()
        self.call("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")

    def scripts(self, enabled: bool) -> None:
        """Whether pages from now on run JavaScript: off, as a reader who turned it off reads them, typing and
        clicking below still work; on for `accessibility_violations`, whose axe-core is a script."""
        self.call("Emulation.setScriptExecutionDisabled", value=not enabled)

    def type_into(self, selector: str, text: str) -> None:
        """TEXT typed into the form field SELECTOR finds, as keyboard input (no script of the page's involved)."""
        self.call("DOM.focus", nodeId=self._node(selector))
        self.call("Input.insertText", text=text)

    def click(self, selector: str, loads: bool = True) -> None:
        """A mouse click in the middle of the element SELECTOR finds; waits for the page it LOADS (a button that
        sends a form), if any is loaded within the timeout; a radio button or a checkbox loads none."""
        node = self._node(selector)
        self.call("DOM.scrollIntoViewIfNeeded", nodeId=node)
        quad = self.call("DOM.getContentQuads", nodeId=node)["quads"][0]
        x, y = sum(quad[0::2]) / 4, sum(quad[1::2]) / 4
        self._events.clear()
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)
        if loads:
            self.wait_for("Page.loadEventFired")

    def choose_file(self, selector: str, file: Path) -> None:
        """FILE chosen in the file input SELECTOR finds, as a person picks it in the file dialog."""
        self.call("DOM.setFileInputFiles", nodeId=self._node(selector), files=[str(file)])

    def _node(self, selector: str) -> int:
        root = self.call("DOM.getDocument", depth=0)["root"]["nodeId"]
        node = int(self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"])
        if not node:
            raise LookupError(f"no element matches {selector!r}")
        return node

    def accessibility_violations(self) -> list[dict[str, Any]]:
        """axe-core's violations on the page now loaded (npm's axe-core, which scripts/test installs), each with
        its rule id, impact and the elements it found."""
        self.evaluate(AXE.read_text())
        found = self.evaluate(
            "axe.run(document).then(r => r.violations.map(v => ({id: v.id, impact: v.impact, "
            "help: v.help, nodes: v.nodes.map(n => n.html.slice(0, 120))})))",
            wait=True,
        )
        return list(found)

    def evaluate(self, expression: str, wait: bool = False) -> Any:
        """EXPRESSION's value (JSON-able) in the page; a promise's when WAIT."""
        reply = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=wait)
        if "exceptionDetails" in reply:
            raise RuntimeError(reply["exceptionDetails"]["exception"]["description"])
        return reply["result"].get("value")

    def screenshot(self, path: Path) -> None:
        """The whole page, top to bottom, as PNG."""
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        shot = self.call("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def _read(self) -> dict[str, Any]:
        deadline = time.monotonic() + self._timeout
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"chromium said nothing for {self._timeout} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise EOFError("chromium closed its DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return dict(json.loads(raw))
