"""The web console in a real browser (CTest label `ui`): Debian's headless
Chromium, driven over the DevTools protocol (browser.py), against three real
latticed processes on loopback. Every wait polls the live DOM or the API
with a bound; no sleep stands in for synchronization.

    LATTICED=build/apps/latticed /usr/bin/python3 tests/ui/test_console.py [-k name]

LATTICE_UI_SCREENSHOT names where the screenshot of the cluster is written
(default: console.png in the current directory).
"""
import http.client
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "daemon"))
sys.path.insert(0, os.path.dirname(__file__))
from browser import Browser  # noqa: E402
from harness import Daemon, eventually  # noqa: E402

TOKEN = "console-write-token"
AUTH = {"Authorization": "Bearer " + TOKEN}


def js_string(text):
    import json
    return json.dumps(text)


class Console(unittest.TestCase):
    """Three daemons that need a write token, and a browser on the first."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="lattice-ui-test-")
        self.token_file = os.path.join(self.dir, "token")
        with open(self.token_file, "w") as f:
            f.write(TOKEN)
        self.daemons = []
        self.a = self.spawn()
        self.b = self.spawn(seeds=[self.a.gossip])
        self.c = self.spawn(seeds=[self.a.gossip])
        self.assertTrue(eventually(lambda: all(
            len([m for m in d.get("/v1/lattice/members")[2] if m["state"] == "alive"]) == 3 for d in self.daemons),
            timeout=10), "members did not converge")
        self.browser = Browser()
        self.browser.navigate("http://%s/ui/" % self.a.http)
        self.assertTrue(self.wait("document.querySelector('#connection')?.dataset.state === 'live'"),
                        self.browser.console())

    def spawn(self, *extra, **kw):
        d = Daemon("--token-file", self.token_file, *extra, **kw)
        self.daemons.append(d)
        return d

    def tearDown(self):
        self.browser.close()
        for d in self.daemons:
            d.close()
            shutil.rmtree(d.data_dir, ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)

    def wait(self, expression, timeout=15.0):
        return self.browser.wait_for(expression, timeout=timeout)

    def text_of(self, selector):
        return self.browser.evaluate("document.querySelector(%s)?.innerText ?? null" % js_string(selector))

    def member_row(self, daemon):
        return "#members-body tr[data-member=%s]" % js_string(daemon.id)

    def instance_row(self, path, instance_id):
        return "[data-instance=%s]" % js_string(path + " " + instance_id)

    def register(self, daemon, path, body):
        status, _, answer = daemon.put("/v1/lattice/instances" + path, body, headers=AUTH)
        self.assertEqual(status, 200, answer)

    def fill_and_submit_config(self, key, value):
        self.browser.evaluate("""(() => {
            document.getElementById('config-result').textContent = '';
            document.getElementById('config-key').value = %s;
            document.getElementById('config-value').value = %s;
            document.querySelector('#config-form button[type=submit]').click();
        })()""" % (js_string(key), js_string(value)))


class ConsoleTest(Console):
    def test_the_page_follows_registrations_config_and_a_killed_provider(self):
        # Every member alive, and every peer's registry digest the same as a's.
        self.assertTrue(self.wait("document.querySelectorAll('#members-body tr[data-state=alive]').length === 3"))
        self.assertTrue(self.wait("document.querySelectorAll('#members-body tr[data-digest=same]').length === 2"),
                        self.text_of("#members-body"))
        self.assertIn("(this daemon)", self.text_of(self.member_row(self.a)))

        # Registered through b and c: listed on a's page with what the registry holds.
        self.register(self.b, "/shop/cart", {"id": "cart-1", "address": "10.0.0.5", "port": 8080,
                                             "tags": {"version": "2.1"}, "weight": 40})
        self.register(self.c, "/shop/payments", {"id": "pay-1", "address": "10.0.0.7", "port": 9090})
        self.assertTrue(self.wait("!!document.querySelector(%s)" % js_string(self.instance_row("/shop/cart", "cart-1"))))
        cart = self.text_of(self.instance_row("/shop/cart", "cart-1"))
        for text in ("10.0.0.5:8080", "provider", "version=2.1", "40", self.b.gossip, "passing"):
            self.assertIn(text, cart)
        self.assertTrue(self.wait("!!document.querySelector(%s)" % js_string(self.instance_row("/shop/payments", "pay-1"))))
        # A Consul service with a TTL check, through b: its check's status and output.
        status, _, answer = self.b.put("/v1/agent/service/register", {
            "Name": "web", "ID": "web-1", "Address": "10.0.0.9", "Port": 80,
            "Check": {"CheckID": "web-ttl", "TTL": "60s"}}, headers=AUTH)
        self.assertEqual(status, 200, answer)
        status, _, answer = self.b.put("/v1/agent/check/pass/web-ttl?note=serving", headers=AUTH)
        self.assertEqual(status, 200, answer)
        web = self.instance_row("/web", "web-1")
        self.assertTrue(self.wait("document.querySelector(%s)?.dataset.health === 'passing'" % js_string(web)),
                        self.text_of("#services-list"))
        self.assertIn("serving", self.text_of(web))

        # A config key written through c, with its stamp.
        status, _, answer = self.c.put("/v1/lattice/config/shop/currency", "EUR", headers=AUTH)
        self.assertEqual(status, 200, answer)
        row = "#config-body tr[data-key='/shop/currency']"
        self.assertTrue(self.wait("document.querySelector(%s)?.innerText.includes('EUR')" % js_string(row)))
        self.assertRegex(self.text_of(row), r"\d{4}")  # the write's date

        # The events feed saw each of them.
        feed = "document.getElementById('events-list').innerText"
        self.assertTrue(self.wait(feed + ".includes('cart-1 listed under /shop/cart')"))
        self.assertTrue(self.wait(feed + ".includes('/shop/currency = EUR')"))

        # The picture of the cluster the README shows.
        self.assertTrue(self.wait("document.querySelectorAll('.spark polyline').length >= 3"))
        self.browser.screenshot(os.environ.get("LATTICE_UI_SCREENSHOT", "console.png"))

        # c, the owner of pay-1, is killed: its row turns dead and pay-1 disappears.
        self.c.kill9()
        self.assertTrue(self.wait("document.querySelector(%s)?.dataset.state === 'dead'" % js_string(self.member_row(self.c))),
                        self.text_of("#members-body"))
        self.assertTrue(self.wait("!document.querySelector(%s)" % js_string(self.instance_row("/shop/payments", "pay-1"))),
                        self.text_of("#services-list"))
        self.assertTrue(self.wait(feed + ".includes('pay-1 removed from /shop/payments')"))
        # A path left without instances is no longer listed.
        self.assertTrue(self.wait("!document.querySelector('section[data-path=\"/shop/payments\"]')"))
        self.assertTrue(self.wait(feed + ".includes(%s)" % js_string(self.c.gossip + ": ")))
        # What b registered stays.
        self.assertTrue(self.browser.evaluate("!!document.querySelector(%s)" % js_string(self.instance_row("/shop/cart", "cart-1"))))

    def test_a_write_without_the_token_is_refused_in_the_page(self):
        self.fill_and_submit_config("/ui/flag", "on")
        self.assertTrue(self.wait("document.getElementById('config-result').dataset.outcome === 'refused'"))
        self.assertIn("write token", self.text_of("#config-result"))
        # Refused by a (403 before any write was issued): a has no such key.
        self.assertEqual(self.a.get("/v1/lattice/config/ui/flag", headers=AUTH)[0], 404)

        # With the token entered in the page, the same write goes through and
        # reaches b; the page shows it, and its Delete button erases it.
        self.browser.evaluate("""(() => {
            document.getElementById('token').value = %s;
            document.querySelector('#token-form button[type=submit]').click();
        })()""" % js_string(TOKEN))
        self.assertEqual(self.browser.evaluate("sessionStorage.getItem('lattice.token')"), TOKEN)
        self.assertEqual(self.browser.evaluate("localStorage.length"), 0)
        self.fill_and_submit_config("/ui/flag", "on")
        self.assertTrue(self.wait("document.getElementById('config-result').dataset.outcome === 'ok'"),
                        self.text_of("#config-result"))
        self.assertTrue(eventually(lambda: self.b.get("/v1/lattice/config/ui/flag")[2] == {"key": "/ui/flag", "value": "on"}))
        row = "#config-body tr[data-key='/ui/flag']"
        self.assertTrue(self.wait("!!document.querySelector(%s)" % js_string(row)))
        self.browser.evaluate("document.querySelector(%s + ' button[aria-label^=Delete]').click()" % js_string(row))
        self.assertTrue(eventually(lambda: self.b.get("/v1/lattice/config/ui/flag")[0] == 404))
        self.assertTrue(self.wait("!document.querySelector(%s)" % js_string(row)))

    def test_the_page_reconnects_after_its_daemon_restarts(self):
        self.register(self.b, "/shop/cart", {"id": "cart-1", "address": "10.0.0.5", "port": 8080})
        row = self.instance_row("/shop/cart", "cart-1")
        self.assertTrue(self.wait("!!document.querySelector(%s)" % js_string(row)))
        http_address, gossip = self.a.http, self.a.gossip
        self.assertEqual(self.a.terminate(), 0)
        self.assertTrue(self.wait("document.getElementById('connection').dataset.state === 'reconnecting'"))
        self.assertIn("Reconnecting", self.text_of("#connection"))
        # Same data directory, same ports; seeded by b as every production
        # daemon is (a left gracefully, so nobody probes it back).
        self.a.seeds = [self.b.gossip]
        self.a.start(gossip=gossip, http=http_address)
        self.assertTrue(self.wait("document.getElementById('connection').dataset.state === 'live'", timeout=30))
        self.assertTrue(self.wait("!!document.querySelector(%s)" % js_string(row)),
                        (self.text_of("main"), self.browser.console(), self.a.get("/v1/lattice/services")))
        self.assertTrue(self.wait("document.querySelectorAll('#members-body tr[data-state=alive]').length === 3"))


    def test_call_counters_follow_a_consumer_live(self):
        # A real provider and consumer (examples/hello_world, each embedding
        # its own replica) joined to the cluster: the consumer's calls move
        # the provider's served count on a's page without any view change.
        hello = os.environ.get("HELLO_WORLD", "build/examples/hello_world")
        procs, reader = [], None
        try:
            provider = subprocess.Popen([hello, "provider", "--seeds", self.a.gossip], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
            procs.append(provider)
            # Its output read by a thread (select() cannot see lines already in
            # Python's buffer, and logs come before the ready line); every line
            # is read, so that a full pipe never stalls it.
            lines = queue.Queue()
            reader = threading.Thread(target=lambda: [lines.put(l) for l in provider.stdout], daemon=True)
            reader.start()
            line, deadline = "", time.monotonic() + 20
            while not line.startswith("provider ready") and time.monotonic() < deadline:
                try:
                    line = lines.get(timeout=max(0.01, deadline - time.monotonic()))
                except queue.Empty:
                    break
            self.assertTrue(line.startswith("provider ready"), line)
            provider_id = line.split("id=")[1].split()[0]
            consumer = subprocess.Popen([hello, "consumer", "--seeds", self.b.gossip, "--calls", "0",
                                         "--interval-ms", "50"], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
            procs.append(consumer)
            served = "Number(document.querySelector(%s)?.children[9]?.innerText ?? -1)" % js_string(
                self.instance_row("/HelloWorldService/1.0.0", provider_id))
            self.assertTrue(self.wait(served + " > 0", timeout=20), self.text_of("#services-list"))
            first = self.browser.evaluate(served)
            self.assertTrue(self.wait("%s > %d" % (served, first), timeout=20))
            # The same counts through the API the page reads.
            status, _, load = self.a.get("/v1/lattice/load/HelloWorldService")
            self.assertEqual(status, 200)
            mine = [l for l in load if l["id"] == provider_id and l["kind"] == "provider"]
            self.assertEqual(len(mine), 1, load)
            self.assertGreater(mine[0]["served"], first - 1)
            self.assertEqual(self.a.get("/v1/lattice/load/bad//path")[0], 400)
        finally:
            for p in procs:
                p.kill()
                p.wait(5)
            if reader is not None:
                reader.join(5)  # at the killed provider's end of output
            if procs:
                procs[0].stdout.close()

    def test_the_page_fits_a_phone(self):
        self.register(self.b, "/shop/cart", {"id": "cart-1", "address": "10.0.0.5", "port": 8080,
                                             "tags": {"version": "2.1", "region": "eu-west-1"}})
        self.browser.emulate(390, 844, mobile=True)
        self.browser.navigate("http://%s/ui/" % self.a.http)
        self.assertTrue(self.wait("document.querySelector('#connection')?.dataset.state === 'live'"))
        self.assertTrue(self.wait("!!document.querySelector(%s)" % js_string(self.instance_row("/shop/cart", "cart-1"))))
        # Nothing wider than the screen but the tables, which scroll inside their own box.
        self.assertTrue(self.browser.evaluate("document.documentElement.scrollWidth <= window.innerWidth"),
                        self.browser.evaluate("[document.documentElement.scrollWidth, window.innerWidth]"))
        self.assertTrue(self.browser.evaluate(
            "[...document.querySelectorAll('table')].every(t => getComputedStyle(t.parentElement).overflowX === 'auto')"))
        # Every control is reachable by keyboard: buttons and inputs, none taken out of the tab order.
        self.assertEqual(self.browser.evaluate(
            "document.querySelectorAll('button[tabindex=\"-1\"], input[tabindex=\"-1\"]').length"), 0)


class ConsoleHttpsTest(unittest.TestCase):
    """The console served over HTTPS (--https-cert): the same page, its
    streams over TLS. The certificate is the transport tests' (a CA no
    browser trusts), so Chromium is told to accept it."""

    def test_the_console_works_over_https(self):
        import ssl
        fixtures = os.path.join(os.path.dirname(__file__), "..", "transport", "tls")
        d = Daemon("--https-cert", os.path.join(fixtures, "node.pem"), "--https-key", os.path.join(fixtures, "node.key"))
        d.ssl_context = ssl._create_unverified_context()
        browser = Browser(ignore_certificate_errors=True)
        try:
            self.assertEqual(d.scheme, "https")
            browser.navigate("https://%s/ui/" % d.http)
            self.assertTrue(browser.wait_for("document.querySelector('#connection')?.dataset.state === 'live'"),
                            browser.console())
            status, _, answer = d.put("/v1/lattice/instances/secure/api", {"id": "api-1", "address": "10.0.0.4",
                                                                           "port": 443})
            self.assertEqual(status, 200, answer)
            self.assertTrue(browser.wait_for("!!document.querySelector('[data-instance=\"/secure/api api-1\"]')"))
            self.assertEqual(browser.evaluate("location.protocol"), "https:")
        finally:
            browser.close()
            d.close()
            shutil.rmtree(d.data_dir, ignore_errors=True)


class ReadTokenTest(unittest.TestCase):
    """A daemon whose reads need a token: the page says so, then works."""

    def test_the_page_asks_for_the_read_token(self):
        directory = tempfile.mkdtemp(prefix="lattice-ui-test-")
        token_file = os.path.join(directory, "read")
        with open(token_file, "w") as f:
            f.write("reader")
        with open(token_file + ".w", "w") as f:
            f.write("writer")
        d = Daemon("--read-token-file", token_file, "--token-file", token_file + ".w")
        browser = Browser()
        try:
            browser.navigate("http://%s/ui/" % d.http)
            self.assertTrue(browser.wait_for("document.getElementById('connection').dataset.state === 'refused'"))
            self.assertFalse(browser.evaluate("document.getElementById('notice').hidden"))
            self.assertEqual(browser.evaluate("document.querySelectorAll('#members-body tr').length"), 0)
            browser.evaluate("""(() => {
                document.getElementById('token').value = 'reader';
                document.querySelector('#token-form button[type=submit]').click();
            })()""")
            self.assertTrue(browser.wait_for("document.getElementById('connection').dataset.state === 'live'",
                                             timeout=40))
            self.assertTrue(browser.evaluate("document.getElementById('notice').hidden"))
            self.assertEqual(browser.evaluate("document.querySelectorAll('#members-body tr').length"), 1)
        finally:
            browser.close()
            d.close()
            shutil.rmtree(d.data_dir, ignore_errors=True)
            shutil.rmtree(directory, ignore_errors=True)


class ConsoleFilesTest(unittest.TestCase):
    """The embedded files, as HTTP serves them (no browser needed)."""

    def setUp(self):
        self.d = Daemon()

    def tearDown(self):
        self.d.close()
        shutil.rmtree(self.d.data_dir, ignore_errors=True)

    def fetch(self, method, path, headers=None):
        host, port = self.d.http.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request(method, path, headers=headers or {})
            res = conn.getresponse()
            return res.status, dict(res.getheaders()), res.read()
        finally:
            conn.close()

    def test_files_are_served_from_the_binary_with_their_headers(self):
        status, headers, body = self.fetch("GET", "/")
        self.assertEqual((status, headers["Location"]), (302, "/ui/"))
        status, headers, body = self.fetch("GET", "/ui/")
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "text/html; charset=utf-8")
        self.assertIn(b'<script type="module" src="console.js">', body)
        self.assertIn("default-src 'none'", headers["Content-Security-Policy"])
        self.assertEqual(headers["X-Content-Type-Options"], "nosniff")
        etag = headers["ETag"]
        self.assertRegex(etag, r'^"[0-9a-f]{16}"$')
        status, headers, body = self.fetch("GET", "/ui/", {"If-None-Match": etag})
        self.assertEqual((status, body), (304, b""))
        status, headers, body = self.fetch("GET", "/ui/console.js")
        self.assertEqual((status, headers["Content-Type"]), (200, "text/javascript; charset=utf-8"))
        self.assertNotEqual(headers["ETag"], etag)
        status, headers, body = self.fetch("HEAD", "/ui/console.css")
        self.assertEqual((status, body), (200, b""))
        self.assertGreater(int(headers["Content-Length"]), 0)
        self.assertEqual(self.fetch("GET", "/ui/missing.js")[0], 404)
        self.assertEqual(self.fetch("GET", "/ui/../metrics")[0], 404)
        self.assertEqual(self.fetch("POST", "/ui/")[0], 405)
        # The console's route in the HTTP metrics.
        metrics = self.fetch("GET", "/metrics")[2].decode()
        self.assertIn('route="/ui/",code="200"', metrics)


if __name__ == "__main__":
    unittest.main(verbosity=2)
