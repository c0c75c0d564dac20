"""A headless Chromium (Debian's ``chromium``) driven over the Chrome DevTools Protocol.

Just what the report and status page tests need: open a URL, evaluate JavaScript, type
and click with real input events, take a screenshot, and see what the page tried to do
(console errors, dialogs, network requests). The browser runs with a fresh profile,
no sandbox (root in CI), and every background service off, so it makes no connection
but the ones a page asks for; ``requests`` records those.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests
import websocket

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("DIRCONNECTOR_TEST_ARTIFACTS", ROOT / "build" / "test-artifacts"))
"""Screenshots and captured messages of the report, status page and notification tests
(searched for secrets at the end of the session, tests/conftest.py ``watch_artifacts``)."""
SCREENSHOTS = ARTIFACTS / "screenshots"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
"""The copies the README shows, refreshed when DIRCONNECTOR_UPDATE_DOCS=1 (a normal run
leaves the work tree as it was)."""
EVIL = '<script>window.__xss=1</script><img src=x onerror="window.__xss=2">'
"""A display name that would run if any page put it in as HTML."""

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--hide-scrollbars",
         "--mute-audio", "--remote-debugging-port=0"]


def chromium() -> str | None:
    """The browser's path, or None when it is not installed."""
    return shutil.which("chromium")


class Browser:
    """One Chromium process and one page (tab) in it."""

    def __init__(self, width: int = 1280, height: int = 900) -> None:
        exe = chromium()
        if exe is None:
            raise RuntimeError("chromium is not installed (scripts/test installs it)")
        self.profile = Path(tempfile.mkdtemp(prefix="dirconnector-chromium-"))
        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={self.profile}",
                                      f"--window-size={width},{height}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        pages = [t for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
                 if t["type"] == "page"]
        self.ws = websocket.create_connection(pages[0]["webSocketDebuggerUrl"], timeout=60,
                                              suppress_origin=True)
        self._id = 0
        self.events: list[dict[str, Any]] = []
        self.requests: list[str] = []
        """Every URL the page asked for (the page's own navigation included)."""
        self.console_errors: list[str] = []
        self.dialogs: list[str] = []
        self.url = "about:blank"
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    # ------------------------------------------------------------------ protocol
    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        ident = self._id
        self.ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == ident:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                result: dict[str, Any] = msg.get("result", {})
                return result
            self._event(msg)

    def _event(self, msg: dict[str, Any]) -> None:
        self.events.append(msg)
        method, params = msg.get("method"), msg.get("params", {})
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Runtime.exceptionThrown":
            self.console_errors.append(json.dumps(params["exceptionDetails"])[:500])
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            self.console_errors.append(json.dumps(params.get("args"))[:500])
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            self.console_errors.append(params["entry"].get("text", "")[:500])
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append(params.get("message", ""))
            self.ws.send(json.dumps({"id": 0, "method": "Page.handleJavaScriptDialog",
                                     "params": {"accept": True}}))

    def _pump(self, seconds: float) -> None:
        """Read events for a while (there is no command to wait on)."""
        self.ws.settimeout(seconds)
        try:
            while True:
                self._event(json.loads(self.ws.recv()))
        except websocket.WebSocketTimeoutException:
            pass
        finally:
            self.ws.settimeout(60)

    # ------------------------------------------------------------------ page
    def open(self, url: str, ready: str = "document.readyState === 'complete'",
             timeout: float = 30.0) -> float:
        """Navigate and wait until ``ready`` (JavaScript) is true; the seconds it took."""
        self.reset()
        self.url = url
        started = time.monotonic()
        self.send("Page.navigate", url=url)
        self.wait(ready, timeout)
        return time.monotonic() - started

    def wait(self, condition: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.eval(f"(() => {{ try {{ return !!({condition}); }} catch (e) {{ return false; }} }})()"):
                return
            self._pump(0.02)
        raise AssertionError(f"page never met: {condition}")

    def eval(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def text(self, selector: str = "body") -> str:
        return str(self.eval(f"document.querySelector({json.dumps(selector)}).innerText"))

    def cells(self, grid: str, column: int) -> list[str]:
        """The texts of one column of a grid's visible page."""
        value = self.eval(
            f"Array.from(document.querySelectorAll('[data-grid={json.dumps(grid)}] tbody tr'))"
            f".map(tr => tr.children[{column}] ? tr.children[{column}].innerText : '')")
        return list(value)

    def _centre(self, selector: str) -> tuple[float, float]:
        box = self.eval(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                        f"e.scrollIntoView({{block: 'center'}}); const r = "
                        f"e.getBoundingClientRect(); return [r.x + r.width / 2, "
                        f"r.y + r.height / 2]; }})()")
        return float(box[0]), float(box[1])

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element."""
        x, y = self._centre(selector)
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left",
                      clickCount=1)

    def type(self, selector: str, text: str) -> None:
        """Click into a field and type, as a keyboard would."""
        self.click(selector)
        self.eval(f"document.querySelector({json.dumps(selector)}).select()")
        self.send("Input.insertText", text=text)

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png", "captureBeyondViewport": full_page}
        if full_page:
            size = self.eval("[document.documentElement.scrollWidth, "
                             "Math.min(document.documentElement.scrollHeight, 6000)]")
            params["clip"] = {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}
        data = self.send("Page.captureScreenshot", **params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def save(self, name: str, full_page: bool = True, docs: bool = False) -> Path:
        """A screenshot under the test artifacts (and, with ``docs``, the README's copy)."""
        path = self.screenshot(SCREENSHOTS / name, full_page)
        if docs and os.environ.get("DIRCONNECTOR_UPDATE_DOCS") == "1":
            DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, DOCS_SCREENSHOTS / name)
        return path

    def reset(self) -> None:
        """Forget what earlier pages did (requests, errors, dialogs)."""
        self._pump(0.01)
        self.requests.clear()
        self.console_errors.clear()
        self.dialogs.clear()

    def assert_inert(self, payload: str = EVIL) -> None:
        """``payload`` is on the page as text and did nothing: no script of its own ran,
        no element was made from it, nothing was fetched but the page itself."""
        assert self.eval("typeof window.__xss") == "undefined", "an injected script ran"
        assert not self.dialogs, self.dialogs
        assert self.eval("document.querySelectorAll('img').length") == 0
        assert self.eval("Array.from(document.scripts).every(s => !s.textContent.includes("
                         "'__xss') || s.type === 'application/json')")
        assert payload in self.text(), "the payload is not shown as text"
        assert set(self.requests) <= {self.url}, self.requests  # nothing fetched but the page

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
