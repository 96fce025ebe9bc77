"""Debian's headless Chromium driven through the DevTools protocol over
--remote-debugging-pipe, with the standard library alone.

Chromium reads commands from fd 3 and writes replies and events to fd 4,
each a JSON object ended by a NUL byte. One page target is attached with a
flat session; `evaluate` runs an expression in the page and returns its
value. Every wait is bounded; the browser is stopped by its PID.

    with Browser() as b:
        b.navigate("http://127.0.0.1:8500/ui/")
        b.wait_for("document.querySelector('#connection').dataset.state === 'live'")
"""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

CHROMIUM = os.environ.get("LATTICE_CHROMIUM", "/usr/bin/chromium")

# This machine's network is closed: without the background-networking flags
# Chromium keeps opening connections that are refused.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--disable-default-apps", "--mute-audio", "--remote-debugging-pipe"]


class BrowserError(RuntimeError):
    pass


class Browser:
    def __init__(self, width=1400, height=1000, ignore_certificate_errors=False):
        self.profile = tempfile.mkdtemp(prefix="lattice-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def child_fds():
            # The pipe ends land on fds 3 and 4, whatever numbers they had.
            a, b = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, "--user-data-dir=" + self.profile, "--window-size=%d,%d" % (width, height)]
            + (["--ignore-certificate-errors"] if ignore_certificate_errors else []) + ["about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=child_fds, close_fds=False)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next_id = 0
        self._replies = {}
        self._console = []
        self._cond = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        targets = self.command("Target.getTargets")["targetInfos"]
        page = next((t for t in targets if t["type"] == "page"), None)
        if page is None:
            page = {"targetId": self.command("Target.createTarget", url="about:blank")["targetId"]}
        self.session = self.command("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
        self.command("Page.enable", session=True)
        self.command("Runtime.enable", session=True)
        self.command("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                     deviceScaleFactor=1, mobile=False)

    def _read(self):
        buffer = b""
        while True:
            try:
                chunk = os.read(self._from_browser, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self._closed = True
                    self._cond.notify_all()
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                with self._cond:
                    if "id" in message:
                        self._replies[message["id"]] = message
                    elif message.get("method") == "Runtime.consoleAPICalled":
                        args = message["params"].get("args", [])
                        self._console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in args))
                    elif message.get("method") == "Runtime.exceptionThrown":
                        self._console.append("exception: " + json.dumps(message["params"]["exceptionDetails"])[:2000])
                    self._cond.notify_all()

    def command(self, method, session=False, timeout=20.0, **params):
        with self._cond:
            self._next_id += 1
            mid = self._next_id
        message = {"id": mid, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    raise BrowserError("%s: no reply (%s)" % (method, "browser gone" if self._closed else "timeout"))
                self._cond.wait(left)
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise BrowserError("%s: %s" % (method, reply["error"]))
        return reply.get("result", {})

    def emulate(self, width, height, mobile):
        """The viewport of another screen (a phone: mobile=True)."""
        self.command("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                     deviceScaleFactor=1, mobile=mobile)

    def navigate(self, url):
        self.command("Page.navigate", session=True, url=url)

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.command("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                              awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError("evaluate %r: %s" % (expression[:80], result["exceptionDetails"].get("text")))
        return result["result"].get("value")

    def wait_for(self, expression, timeout=15.0, interval=0.1):
        """Polls the live DOM until `expression` is truthy; its last value
        (falsy) after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                value = self.evaluate(expression)
            except BrowserError:
                value = None  # a page mid-navigation has no context yet
            if value or time.monotonic() >= deadline:
                return value
            time.sleep(interval)

    def screenshot(self, path):
        data = self.command("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def console(self):
        with self._cond:
            return list(self._console)

    def close(self):
        try:
            if self.proc.poll() is None:
                try:
                    self.command("Browser.close", timeout=5)
                except BrowserError:
                    pass
                self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(5)
            for fd in (self._to_browser, self._from_browser):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
