"""Headless Chromium for checking and screenshotting HTML reports, with no extra packages.

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe``: the browser
reads JSON commands from file descriptor 3 and writes replies and events to descriptor 4, each
message terminated by a NUL byte (POSIX only: the pipes are moved to 3 and 4 between fork and
exec). That needs only the standard library (no websocket client, no
Playwright), and opens no TCP port.

Typical use::

    from resyn_bench.reports.browser import screenshot
    screenshot("report/index.html", "shots/report.png", width=1280, height=900)

    with Browser() as browser:
        page = browser.open("report/index.html")
        page.evaluate("document.title")
        page.click("#summary th[data-col='2']")
        print(page.problems())          # console errors, uncaught exceptions, network fetches

:func:`find_chromium` looks at ``$RESYN_BENCH_CHROMIUM`` first, then the usual binary names on
``PATH`` (Debian's package is ``chromium``).
"""
from __future__ import annotations

import base64
import json
import os
import selectors
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from resyn_bench.errors import UserError

#: binary names tried on PATH, in order
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")

#: flags for a quiet, isolated, offline headless browser
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-default-apps", "--disable-extensions", "--no-first-run",
          "--no-default-browser-check", "--mute-audio", "--hide-scrollbars",
          "--remote-debugging-pipe")


class BrowserError(UserError, RuntimeError):
    """Chromium is missing, did not start, or a DevTools command failed."""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary, or None. ``$RESYN_BENCH_CHROMIUM`` wins when set."""
    env = os.environ.get("RESYN_BENCH_CHROMIUM")
    if env:
        return env if Path(env).exists() else shutil.which(env)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _high_fd(fd: int) -> int:
    import fcntl

    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


def file_url(path: str | Path) -> str:
    return Path(path).resolve().as_uri()


class Browser:
    """One headless Chromium process, spoken to over the DevTools pipe. Use as a context
    manager; :meth:`open` gives a :class:`Page`."""

    def __init__(self, binary: str | None = None, timeout: float = 30.0):
        self.binary = binary or find_chromium()
        if not self.binary:
            raise BrowserError("no Chromium found: install it (Debian: apt-get install chromium) "
                               "or set RESYN_BENCH_CHROMIUM to the browser binary")
        self.timeout = timeout
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict[str, Any]] = []
        self._profile = tempfile.TemporaryDirectory(prefix="resyn-chromium-")
        # Chromium's own log goes to a file: an unread pipe would fill up and block it
        self._log = open(Path(self._profile.name) / "chromium.log", "wb")
        # our ends: write commands into to_child, read messages from from_child
        child_in, self._to_child = os.pipe()
        self._from_child, child_out = os.pipe()
        # above 9, so moving them to 3 and 4 never clobbers one of them; close-on-exec, so
        # only the moved copies reach the browser
        child_in, child_out = _high_fd(child_in), _high_fd(child_out)

        def to_fds_3_and_4():  # runs in the child between fork and exec
            os.dup2(child_in, 3)
            os.dup2(child_out, 4)

        cmd = [self.binary, *_FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"]
        try:
            # close_fds=False: the fds we place at 3 and 4 must survive; every other descriptor
            # Python opens is non-inheritable anyway (PEP 446)
            self._proc = subprocess.Popen(cmd, close_fds=False, preexec_fn=to_fds_3_and_4,
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=self._log)
        finally:
            os.close(child_in)
            os.close(child_out)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._from_child, selectors.EVENT_READ)
        try:
            self.send("Browser.getVersion")
        except BrowserError:
            self.close()
            raise

    # -- protocol ----------------------------------------------------------------------------

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("timed out waiting for Chromium")
            if not self._selector.select(left):
                continue
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                err = self._log_tail()
                raise BrowserError(f"Chromium exited (code {self._proc.poll()}): {err}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def _log_tail(self, n: int = 2000) -> str:
        try:
            self._log.flush()
            return (Path(self._profile.name) / "chromium.log").read_bytes()[-n:].decode(errors="replace")
        except (OSError, ValueError):
            return ""

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None, timeout: float | None = None) -> dict[str, Any]:
        """Send one command and wait for its reply (events that arrive meanwhile are kept)."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        data = json.dumps(msg).encode() + b"\0"
        try:
            while data:
                data = data[os.write(self._to_child, data):]
        except OSError as exc:  # the browser has gone (crashed or closed its pipe)
            raise BrowserError(f"{method}: cannot talk to the browser: {exc}") from None
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self._events.append(reply)

    def wait_event(self, method: str, session: str | None = None, timeout: float | None = None
                   ) -> dict[str, Any]:
        """The first (kept or incoming) event called ``method``; it is consumed."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, ev in enumerate(self._events):
                if ev["method"] == method and (session is None or ev.get("sessionId") == session):
                    return self._events.pop(i)
            msg = self._read_message(deadline)
            if "method" in msg:   # a late reply to a command that timed out is not an event
                self._events.append(msg)

    def pump(self, seconds: float = 0.05) -> None:
        """Collect the events that arrive within ``seconds``."""
        deadline = time.monotonic() + seconds
        try:
            while True:
                msg = self._read_message(deadline)
                if "method" in msg:
                    self._events.append(msg)
        except BrowserError:
            if self._proc.poll() is not None:
                raise

    def events(self, session: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self._events if session is None or e.get("sessionId") == session]

    # -- pages -------------------------------------------------------------------------------

    def open(self, path_or_url: str | Path, width: int = 1280, height: int = 900) -> Page:
        """A new tab showing ``path_or_url`` (a local file path or a URL), loaded."""
        url = str(path_or_url)
        if "://" not in url and not url.startswith(("about:", "data:")):
            url = file_url(url)
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        page.resize(width, height)
        page.navigate(url)
        return page

    def close(self) -> None:
        if getattr(self, "_proc", None) is not None and self._proc.poll() is None:
            try:
                self.send("Browser.close", timeout=5)
            except (BrowserError, OSError):
                pass
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for fd in (getattr(self, "_to_child", None), getattr(self, "_from_child", None)):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._to_child = self._from_child = None
        self._log.close()
        self._profile.cleanup()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Page:
    """One tab. Every call goes through the owning :class:`Browser`."""

    def __init__(self, browser: Browser, session: str):
        self.browser = browser
        self.session = session

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session)

    def resize(self, width: int, height: int) -> None:
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def navigate(self, url: str) -> None:
        reply = self.send("Page.navigate", {"url": url})
        if reply.get("errorText"):
            raise BrowserError(f"cannot load {url}: {reply['errorText']}")
        self.browser.wait_event("Page.loadEventFired", self.session)

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        """The JSON value of a JavaScript expression; a thrown exception raises BrowserError."""
        reply = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                               "awaitPromise": await_promise})
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"JavaScript error: {text}")
        return reply.get("result", {}).get("value")

    def click(self, selector: str) -> None:
        """Click the first element matching a CSS selector (a DOM click event)."""
        found = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                              " if (!e) return false; e.click(); return true; })()")
        if not found:
            raise BrowserError(f"nothing matches {selector!r}")

    def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        """Poll until a JavaScript expression is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {expression!r}")
            self.browser.pump(0.05)

    def problems(self) -> list[str]:
        """Console errors/warnings, uncaught exceptions, failed loads, and any request that
        left the local file system (a self-contained report makes none)."""
        self.browser.pump(0.1)
        out = []
        for ev in self.browser.events(self.session):
            m, p = ev["method"], ev.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append("exception: " + str(d.get("exception", {}).get("description")
                                               or d.get("text")))
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
                args = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                out.append(f"console.{p['type']}: {args}")
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
                e = p["entry"]
                out.append(f"log {e.get('level')}: {e.get('text')} {e.get('url', '')}".rstrip())
            elif m == "Network.requestWillBeSent":
                url = p.get("request", {}).get("url", "")
                if not url.startswith(("file:", "data:", "blob:", "about:")):
                    out.append(f"network request: {url}")
            elif m == "Network.loadingFailed" and not p.get("canceled"):
                out.append(f"load failed: {p.get('errorText')} ({p.get('type')})")
        return out

    def screenshot(self, png_path: str | Path, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
            size = self.evaluate("[document.documentElement.scrollWidth,"
                                 " document.documentElement.scrollHeight]")
            params["clip"] = {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}
        data = self.send("Page.captureScreenshot", params)["data"]
        out = Path(png_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(data))
        return out


def screenshot(html_path: str | Path, png_path: str | Path, width: int = 1280, height: int = 900,
               full_page: bool = False, binary: str | None = None) -> Path:
    """Load a page from disk in headless Chromium and save a PNG of it (e.g. docs/reports.md's
    report screenshot). Raises :class:`BrowserError` when no browser is available."""
    with Browser(binary) as browser:
        page = browser.open(html_path, width, height)
        page.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))",
                      await_promise=True)
        return page.screenshot(png_path, full_page=full_page)


def main(argv: list[str] | None = None) -> int:
    """``python -m resyn_bench.reports.browser REPORT.html OUT.png [--width W --height H --full]``:
    the report screenshot of docs/reports.md, made by the project itself."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("html")
    ap.add_argument("png")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument("--full", action="store_true", help="the whole page, not just the first screen")
    args = ap.parse_args(argv)
    try:
        print(screenshot(args.html, args.png, args.width, args.height, full_page=args.full))
    except BrowserError as exc:
        print(f"error: {exc}")
        return 1
    return 0


__all__ = ["Browser", "BrowserError", "Page", "find_chromium", "file_url", "screenshot", "main"]


if __name__ == "__main__":
    raise SystemExit(main())
