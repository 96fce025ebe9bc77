"""latticed against real processes on loopback (CTest label `daemon`).

    LATTICED=build/apps/latticed LATTICE_CLI=build/apps/lattice \
        /usr/bin/python3 tests/daemon/test_daemon.py [TestClass]
"""
import base64
import json
import urllib.request
import os
import random
import select
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from harness import LATTICE_CLI, LATTICED, Daemon, EventStream, blocked, cli, eventually, metric, providers  # noqa: E402

PATH = "/HelloWorldService/1.0.0"


def instance(port, **extra):
    return dict({"address": "127.0.0.1", "port": port, "protocol": "http"}, **extra)


class Cluster(unittest.TestCase):
    """Three daemons joined through the first."""

    def setUp(self):
        self.daemons = []
        first = self.spawn()
        for _ in range(2):
            self.spawn(seeds=[first.gossip])
        self.assertTrue(eventually(lambda: all(
            len([m for m in d.get("/v1/lattice/members")[2] if m["state"] == "alive"]) == 3 for d in self.daemons),
            timeout=5), "members did not converge")

    def spawn(self, *extra, **kw):
        d = Daemon(*extra, **kw)
        self.daemons.append(d)
        return d

    def tearDown(self):
        for d in self.daemons:
            d.close()
            shutil.rmtree(d.data_dir, ignore_errors=True)


class CrossDaemonTest(Cluster):
    def test_register_on_one_is_seen_by_the_others(self):
        a, b, c = self.daemons
        status, _, stored = a.put("/v1/lattice/instances" + PATH, instance(9001))
        self.assertEqual(status, 200, stored)
        self.assertEqual(stored["id"], "127.0.0.1:9001")
        self.assertEqual(stored["owner"], a.id)
        for d in (b, c):
            self.assertTrue(eventually(lambda: providers(d, PATH) == ["127.0.0.1:9001"]))
        # Deregistration propagates too.
        status, _, _ = a.delete("/v1/lattice/instances" + PATH + "?id=127.0.0.1:9001")
        self.assertEqual(status, 200)
        for d in (b, c):
            self.assertTrue(eventually(lambda: providers(d, PATH) == []))

    def test_a_provider_reports_the_calls_it_serves_and_every_daemon_reads_them(self):
        a, b, c = self.daemons
        status, _, _ = a.put("/v1/lattice/instances" + PATH, instance(9001))
        self.assertEqual(status, 200)
        for d in (b, c):
            self.assertTrue(eventually(lambda: providers(d, PATH) == ["127.0.0.1:9001"]))
        counts = "/v1/lattice/load" + PATH + "?id=127.0.0.1:9001"

        def seen(d):
            entries = [e for e in d.get("/v1/lattice/load" + PATH)[2] if e["id"] == "127.0.0.1:9001"]
            return (entries[0]["in_flight"], entries[0]["served"]) if entries else None

        # Only the daemon it was registered through counts what it serves;
        # bad reports are refused and change nothing.
        self.assertEqual(b.put(counts, {"in_flight": 7})[0], 404)
        for bad in ({"in_flight": -1}, {"in_flight": 1, "queue": 2}, {"served": 3}, [1], {"in_flight": "7"}):
            self.assertEqual(a.put(counts, bad)[0], 400, bad)
        self.assertEqual(a.put("/v1/lattice/load" + PATH, {"in_flight": 7})[0], 400)  # no ?id=
        status, _, body = a.put(counts, {"in_flight": 7, "served": 30})
        self.assertEqual(status, 200, body)
        for d in (a, b, c):
            self.assertTrue(eventually(lambda: seen(d) == (7, 30)), d.get("/v1/lattice/load" + PATH)[2])
        # Stopped: callers count again (none here).
        status, _, body = a.delete(counts)
        self.assertEqual((status, body["counted"]), (200, True))
        for d in (b, c):
            self.assertTrue(eventually(lambda: seen(d) == (0, 0)))

    def test_a_report_of_calls_served_that_is_not_renewed_stops_counting(self):
        a, b, _ = self.daemons
        # A daemon whose reports stand for 2 s without another.
        d = self.spawn("--load-report-ttl", "2s", seeds=[a.gossip])
        status, _, _ = d.put("/v1/lattice/instances" + PATH, instance(9005))
        self.assertEqual(status, 200)
        self.assertTrue(eventually(lambda: providers(b, PATH) == ["127.0.0.1:9005"]))

        def seen(daemon):
            entries = [e for e in daemon.get("/v1/lattice/load" + PATH)[2] if e["id"] == "127.0.0.1:9005"]
            return (entries[0]["in_flight"], entries[0]["served"]) if entries else None

        status, _, body = d.put("/v1/lattice/load" + PATH + "?id=127.0.0.1:9005", {"in_flight": 4, "served": 9})
        self.assertEqual((status, body.get("expires_in_seconds")), (200, 2.0), body)

        # Counted, and the metric says so. The report is renewed while we
        # wait, so a slow run (a sanitizer) cannot see it lapse first.
        def counted_and_seen():
            d.put("/v1/lattice/load" + PATH + "?id=127.0.0.1:9005", {"in_flight": 4, "served": 9})
            return metric(d, "lattice_load_provider_counted_instances") == 1 and seen(b) == (4, 9)

        self.assertTrue(eventually(counted_and_seen), b.get("/v1/lattice/load" + PATH)[2])
        # Not renewed: the report lapses, the totals are erased everywhere.
        self.assertTrue(eventually(lambda: metric(d, "lattice_load_provider_counted_instances") == 0, timeout=10))
        self.assertTrue(eventually(lambda: seen(b) == (0, 0), timeout=10), b.get("/v1/lattice/load" + PATH)[2])
        # A lapsed report is gone, not hidden: the next one counts again.
        self.assertEqual(d.put("/v1/lattice/load" + PATH + "?id=127.0.0.1:9005", {"in_flight": 2})[0], 200)
        self.assertTrue(eventually(lambda: seen(b) == (2, 0)), b.get("/v1/lattice/load" + PATH)[2])

    def test_watch_stream_sends_the_current_list_then_every_change(self):
        a, _, c = self.daemons
        a.put("/v1/lattice/instances" + PATH, instance(9001))
        self.assertTrue(eventually(lambda: providers(c, PATH) == ["127.0.0.1:9001"]))
        events = []
        sock = socket.create_connection(tuple(c.http.rsplit(":", 1)), timeout=5)
        sock.sendall(("GET /v1/lattice/watch/HelloWorldService HTTP/1.1\r\nHost: x\r\n\r\n").encode())
        buffer = b""

        def read_events(wanted):
            nonlocal buffer
            deadline = time.monotonic() + 5
            while len(events) < wanted and time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    data = [l[6:] for l in block.decode().split("\n") if l.startswith("data: ")]
                    if data:
                        events.append(json.loads("".join(data)))

        read_events(1)
        self.assertEqual([i["id"] for i in events[0]["providers"]], ["127.0.0.1:9001"])
        a.put("/v1/lattice/instances" + PATH, instance(9002))
        read_events(2)
        sock.close()
        self.assertEqual(len(events), 2)
        self.assertGreater(events[1]["version"], events[0]["version"])
        self.assertEqual([i["id"] for i in events[1]["providers"]], ["127.0.0.1:9001", "127.0.0.1:9002"])

    def test_delta_watch_sends_the_view_once_then_what_changed(self):
        a, _, c = self.daemons
        path = "/DeltaService/1.0.0"
        a.put("/v1/lattice/instances" + path, instance(9001))
        self.assertTrue(eventually(lambda: providers(c, path) == ["127.0.0.1:9001"]))
        stream = EventStream(c, "/v1/lattice/watch/DeltaService?delta")
        try:
            name, view = stream.next()
            self.assertEqual(name, "service")
            self.assertEqual([i["id"] for i in view["providers"]], ["127.0.0.1:9001"])
            # Each step waits for its event, so none is coalesced with the next.
            a.put("/v1/lattice/instances" + path, instance(9002))
            name, delta = stream.next()
            self.assertEqual(name, "delta")
            self.assertEqual([i["id"] for i in delta["providers"]["added"]], ["127.0.0.1:9002"])
            self.assertEqual((delta["providers"]["updated"], delta["providers"]["removed"]), ([], []))
            self.assertGreater(delta["version"], view["version"])
            a.put("/v1/lattice/instances" + path, instance(9001, tags={"color": "blue"}))
            name, delta = stream.next()
            self.assertEqual(name, "delta")
            self.assertEqual([(i["id"], i["tags"]) for i in delta["providers"]["updated"]],
                             [("127.0.0.1:9001", {"color": "blue"})])
            self.assertEqual((delta["providers"]["added"], delta["providers"]["removed"]), ([], []))
            a.delete("/v1/lattice/instances" + path + "?id=127.0.0.1:9002")
            name, delta = stream.next()
            self.assertEqual(name, "delta")
            self.assertEqual(delta["providers"]["removed"], ["127.0.0.1:9002"])
            self.assertEqual((delta["providers"]["added"], delta["providers"]["updated"]), ([], []))
        finally:
            stream.close()
        status, _, _ = c.get("/v1/lattice/watch/DeltaService?delta&config")
        self.assertEqual(status, 400)

    def test_blocking_query_returns_when_the_service_changes(self):
        a, b, _ = self.daemons
        a.put("/v1/lattice/instances" + PATH, instance(9001))
        self.assertTrue(eventually(lambda: providers(b, PATH) == ["127.0.0.1:9001"]))
        _, headers, _ = b.get("/v1/lattice/instances" + PATH)
        index = int(headers["X-Lattice-Index"])
        result = {}

        def block():
            result["answer"] = b.get("/v1/lattice/instances%s?index=%d&wait=20s" % (PATH, index), timeout=30)

        waiter = threading.Thread(target=block)
        waiter.start()
        self.assertTrue(blocked(b))
        a.put("/v1/lattice/instances" + PATH, instance(9002))
        waiter.join(30)
        self.assertFalse(waiter.is_alive())
        status, headers, body = result["answer"]
        self.assertEqual(status, 200)
        self.assertGreater(int(headers["X-Lattice-Index"]), index)
        self.assertEqual(sorted(i["id"] for i in body["providers"]), ["127.0.0.1:9001", "127.0.0.1:9002"])

    def test_sigterm_removes_the_daemons_instances_from_the_others(self):
        a, b, _ = self.daemons
        a.put("/v1/lattice/instances" + PATH, instance(9001))
        self.assertTrue(eventually(lambda: providers(b, PATH) == ["127.0.0.1:9001"]))
        # terminate() gives None if it has not exited within the bound.
        self.assertEqual(a.terminate(timeout=5), 0)
        self.assertTrue(eventually(lambda: providers(b, PATH) == []))
        # A graceful leave, not the failure detector (which would record it
        # dead): b records it as left.
        members = {m["id"]: m["state"] for m in b.get("/v1/lattice/members")[2]}
        self.assertEqual(members.get(a.id), "left")

    def test_kill9_keeps_every_acknowledged_write(self):
        a, b, _ = self.daemons
        acknowledged = []
        for port in range(9001, 9011):
            status, _, body = a.put("/v1/lattice/instances" + PATH, instance(port))
            self.assertEqual(status, 200)
            acknowledged.append(body["id"])
        status, _, _ = a.put("/v1/lattice/config/app/timeout", "30s")
        self.assertEqual(status, 200)
        old_id = a.id
        a.kill9()
        # Alone (no seeds reachable on restart: we check what it kept itself).
        restarted = Daemon(data_dir=a.data_dir)
        self.daemons.append(restarted)
        self.assertEqual(restarted.id, old_id)
        self.assertEqual(providers(restarted, PATH), sorted(acknowledged))
        self.assertEqual(restarted.get("/v1/lattice/config/app/timeout")[2]["value"], "30s")
        # And it rejoins: the peers see its instances again (the new life
        # re-registered them).
        restarted.close()
        rejoined = Daemon(data_dir=a.data_dir, seeds=[b.gossip])
        self.daemons.append(rejoined)
        self.assertTrue(eventually(lambda: providers(b, PATH) == sorted(acknowledged), timeout=5))


    def test_reads_are_served_while_a_write_waits_for_its_commit(self):
        a, b, _ = self.daemons
        # Another process holds SQLite's write lock on a's data directory:
        # a's next commit waits for it (SQLite's busy timeout, 2 s).
        db = sqlite3.connect(os.path.join(a.data_dir, "lattice.db"), timeout=0, isolation_level=None)
        db.execute("BEGIN IMMEDIATE")
        outcome = {}
        writer = threading.Thread(target=lambda: outcome.update(put=a.put("/v1/lattice/config/app/pending", "1")))
        writer.start()
        try:
            # Gossip does not wait for the commit: once b has the write, a
            # has applied it and is waiting to commit it.
            self.assertTrue(eventually(lambda: b.get("/v1/lattice/config/app/pending")[0] == 200, timeout=5))
            self.assertTrue(writer.is_alive(), "acknowledged before its commit")
            # a's HTTP thread is not held by the write: lookups and config
            # reads answer while the write still waits.
            for _ in range(3):
                self.assertEqual(a.get("/v1/lattice/instances" + PATH, timeout=5)[0], 404)
                self.assertEqual(a.get("/v1/kv/app/other", timeout=5)[0], 404)
            self.assertTrue(writer.is_alive(), "the write finished before the reads were answered")
        finally:
            db.execute("ROLLBACK")
            db.close()
        writer.join(15)
        self.assertEqual(outcome["put"][0], 200, outcome)
        self.assertEqual(a.get("/v1/lattice/config/app/pending")[2]["value"], "1")

    def test_bulk_registration_is_all_or_nothing(self):
        a, b, _ = self.daemons
        bulk = [instance(port) for port in range(9001, 9051)]
        status, _, stored = a.put("/v1/lattice/instances" + PATH, bulk)
        self.assertEqual(status, 200, stored)
        self.assertEqual(sorted(i["id"] for i in stored), sorted("127.0.0.1:%d" % p for p in range(9001, 9051)))
        self.assertTrue(eventually(lambda: len(providers(b, PATH)) == 50, timeout=5))
        # One bad entry refuses them all, and says which.
        status, _, answer = a.put("/v1/lattice/instances/other", [instance(9001), {"address": "127.0.0.1", "port": "x"}])
        self.assertEqual(status, 400, answer)
        self.assertIn("instance 1", answer["error"])
        self.assertEqual(providers(a, "/other"), [])
        status, _, answer = a.put("/v1/lattice/instances/other", [])
        self.assertEqual(status, 400, answer)


class ClockSkewTest(unittest.TestCase):
    """A daemon whose wall clock runs two hours behind (libfaketime), among two
    whose clocks are right."""

    LAG = -7200

    def setUp(self):
        self.a = Daemon()
        self.b = Daemon(seeds=[self.a.gossip])
        self.late = Daemon(seeds=[self.a.gossip], clock_offset=self.LAG)
        self.daemons = [self.a, self.b, self.late]
        self.assertTrue(eventually(lambda: all(
            len([m for m in d.get("/v1/lattice/members")[2] if m["state"] == "alive"]) == 3 for d in self.daemons),
            timeout=5), "members did not converge")

    def tearDown(self):
        for d in self.daemons:
            d.close()
            shutil.rmtree(d.data_dir, ignore_errors=True)

    def offset_of(self, observer, member):
        """observer's estimate of member's clock offset in seconds, or None."""
        for m in observer.get("/v1/lattice/members")[2]:
            if m["id"] == member.id and m["clock_offset_us"] is not None:
                return m["clock_offset_us"] / 1e6
        return None

    def drift_total(self, d):
        for line in d.get("/metrics")[2].splitlines():
            if line.startswith("lattice_clock_drift_total "):
                return int(line.split()[1])
        self.fail("no lattice_clock_drift_total")

    def test_writes_cross_both_ways_and_the_skew_is_reported(self):
        # The lagging daemon's writes are stamped two hours in the past, and
        # still reach the others; theirs reach it.
        self.assertEqual(self.late.put("/v1/lattice/instances" + PATH, instance(9001))[0], 200)
        self.assertEqual(self.a.put("/v1/lattice/config/app/k", "from-a")[0], 200)
        for d in self.daemons:
            self.assertTrue(eventually(lambda: providers(d, PATH) == ["127.0.0.1:9001"]))
            self.assertTrue(eventually(lambda: d.get("/v1/lattice/config/app/k")[0] == 200))
        # Every stamp it merged from the others was beyond the drift bound,
        # and counted.
        self.assertTrue(eventually(lambda: self.drift_total(self.late) > 0))
        # Each side estimates the other's offset from its messages.
        self.assertTrue(eventually(lambda: self.offset_of(self.a, self.late) is not None))
        self.assertAlmostEqual(self.offset_of(self.a, self.late), self.LAG, delta=1.0)
        self.assertAlmostEqual(self.offset_of(self.late, self.a), -self.LAG, delta=1.0)
        self.assertLess(abs(self.offset_of(self.a, self.b)), 1.0)
        code, out, _ = cli(self.a, "members")
        self.assertEqual(code, 0)
        # Rounded to 0.1 s: transit delay (and load) may tip it either way.
        self.assertRegex(out, r"-7(200|199)\.\d s")


class ConsulClientTest(unittest.TestCase):
    """The Consul subset, driven by Debian's python3-consul."""

    def setUp(self):
        import consul  # python3-consul
        self.consul_module = consul
        self.a = Daemon()
        self.b = Daemon(seeds=[self.a.gossip])
        host, port = self.a.http.rsplit(":", 1)
        self.ca = consul.Consul(host=host, port=int(port))
        host, port = self.b.http.rsplit(":", 1)
        self.cb = consul.Consul(host=host, port=int(port))

    def tearDown(self):
        for d in (self.a, self.b):
            d.close()
            shutil.rmtree(d.data_dir, ignore_errors=True)

    def test_service_with_ttl_check_through_catalog_and_health(self):
        Check = self.consul_module.Check
        self.assertTrue(self.ca.agent.service.register("web", service_id="web-1", address="127.0.0.1", port=8080,
                                                       tags=["v1", "blue"], check=Check.ttl("2s")))
        self.assertIn("web-1", self.ca.agent.services())
        # On the other daemon: listed in the catalog, critical until passed.
        self.assertTrue(eventually(lambda: len(self.cb.catalog.service("web")[1]) == 1))
        index, nodes = self.cb.catalog.service("web")
        self.assertEqual(nodes[0]["ServiceID"], "web-1")
        self.assertEqual(nodes[0]["ServicePort"], 8080)
        self.assertEqual(sorted(nodes[0]["ServiceTags"]), ["blue", "v1"])
        self.assertEqual(self.cb.health.service("web", passing=True)[1], [])
        # A blocking health query on b returns once the check passes on a.
        _, health = self.cb.health.service("web")
        index = int(index)
        result = {}
        waiter = threading.Thread(target=lambda: result.update(
            answer=self.cb.health.service("web", passing=True, index=index, wait="20s")))
        waiter.start()
        self.assertTrue(blocked(self.b))
        self.ca.agent.check.ttl_pass("service:web-1")
        waiter.join(30)
        self.assertFalse(waiter.is_alive())
        new_index, passing = result["answer"]
        self.assertGreater(int(new_index), index)
        self.assertEqual([e["Service"]["ID"] for e in passing], ["web-1"])
        self.assertEqual(passing[0]["Checks"][0]["Status"], "passing")
        # The TTL lapses: critical again, everywhere.
        self.assertTrue(eventually(lambda: self.cb.health.service("web", passing=True)[1] == [], timeout=5))
        # Deregistration.
        self.assertTrue(self.ca.agent.service.deregister("web-1"))
        self.assertTrue(eventually(lambda: self.cb.catalog.service("web")[1] == []))
        self.assertNotIn("web-1", self.ca.agent.services())

    def test_kv_recursive_delete_is_a_string_prefix(self):
        for key in ("app/x", "app/y/z", "apple", "other"):
            self.assertTrue(self.ca.kv.put(key, "1"))

        def keys_on_b():
            return sorted(e["Key"] for e in (self.cb.kv.get("", recurse=True)[1] or []))

        self.assertTrue(eventually(lambda: keys_on_b() == ["app/x", "app/y/z", "apple", "other"]))
        # Trailing '/': only what is under app/.
        self.assertTrue(self.ca.kv.delete("app/", recurse=True))
        self.assertTrue(eventually(lambda: keys_on_b() == ["apple", "other"]))
        # Without it, a string prefix, as Consul: apple goes too.
        self.assertTrue(self.ca.kv.delete("app", recurse=True))
        self.assertTrue(eventually(lambda: keys_on_b() == ["other"]))
        # A key written after the delete is a new key.
        self.assertTrue(self.cb.kv.put("app/x", "2"))
        self.assertTrue(eventually(lambda: self.ca.kv.get("app/x")[1] is not None))

    def test_kv_blocking_queries_wake_only_for_what_they_read(self):
        # A key query and a prefix query block on b, then an unrelated
        # service is registered on b. A query on that service's path (index
        # 0: it waits for the first registration) returning tells that b has
        # handled the registration's wake; by then exactly one query has been
        # woken, that one. Only then is the key written, and the KV queries
        # return with it. (Each re-asks until it sees the new value, as
        # Consul clients do; re-asking is not a wakeup.)
        self.assertTrue(self.ca.kv.put("app/x", "old"))
        self.assertTrue(eventually(lambda: self.cb.kv.get("app/x")[1] is not None))
        answers = {}

        def watch(name, **kw):
            index = int(self.cb.kv.get("app/x")[0])
            for _ in range(50):
                index, data = self.cb.kv.get(index=index, wait="20s", **kw)
                values = [e["Value"] for e in (data if isinstance(data, list) else [data])]
                if values == [b"new"]:
                    answers[name] = values
                    return

        waiters = [threading.Thread(target=watch, args=("key",), kwargs={"key": "app/x"}),
                   threading.Thread(target=watch, args=("tree",), kwargs={"key": "app/", "recurse": True})]
        for w in waiters:
            w.start()
        self.assertTrue(blocked(self.b, 2))
        woken = metric(self.b, "lattice_blocking_query_wakeups_total")
        result = {}
        path_waiter = threading.Thread(target=lambda: result.update(
            answer=self.b.get("/v1/lattice/instances/unrelated?index=0&wait=20s", timeout=30)))
        path_waiter.start()
        self.assertTrue(blocked(self.b, 3))
        status, _, _ = self.b.put("/v1/lattice/instances/unrelated", instance(9001))
        self.assertEqual(status, 200)
        path_waiter.join(30)
        self.assertFalse(path_waiter.is_alive())
        self.assertEqual(result["answer"][0], 200)
        self.assertEqual(metric(self.b, "lattice_blocking_query_wakeups_total"), woken + 1)
        self.assertTrue(self.ca.kv.put("app/x", "new"))
        for w in waiters:
            w.join(30)
            self.assertFalse(w.is_alive())
        self.assertEqual(answers, {"key": [b"new"], "tree": [b"new"]})

    def test_kv_indexes_are_per_key_and_the_same_on_every_daemon(self):
        def read(daemon, path):
            status, headers, body = daemon.get(path)
            return status, int(headers["X-Consul-Index"]), body

        def read_through(daemon, index, write):
            """A blocking read of app/a from `index` on `daemon`; `write` runs once it blocks."""
            result = {}
            waiter = threading.Thread(target=lambda: result.update(
                answer=read(daemon, "/v1/kv/app/a?index=%d&wait=20s" % index)))
            waiter.start()
            self.assertTrue(blocked(daemon))
            self.assertTrue(write())
            waiter.join(30)
            self.assertFalse(waiter.is_alive())
            return result["answer"]
        # No config at all yet: a missing key's index still blocks a reader
        # given it, until the key is written.
        status, index, _ = read(self.a, "/v1/kv/app/a")
        self.assertEqual(status, 404)
        self.assertEqual(read_through(self.a, index, lambda: self.ca.kv.put("app/a", "1"))[0], 200)
        status, index, body = read(self.a, "/v1/kv/app/a")
        self.assertEqual(status, 200)
        modify = body[0]["ModifyIndex"]
        self.assertEqual(index, modify)
        self.assertLess(modify, 2 ** 53)
        _, tree_index, _ = read(self.a, "/v1/kv/app?recurse")
        # Unrelated writes: a service, another key elsewhere. The key's index
        # and the tree's do not move, so a blocking read blocks.
        self.assertTrue(self.ca.agent.service.register("web", service_id="web-1", port=8080))
        self.assertTrue(self.ca.kv.put("other/b", "2"))
        self.assertEqual(read(self.a, "/v1/kv/app/a")[1:], (modify, body))
        self.assertEqual(read(self.a, "/v1/kv/app?recurse")[1], tree_index)
        status, new_index, body = read_through(self.a, modify, lambda: self.ca.kv.put("app/a", "3"))
        self.assertEqual((status, base64.b64decode(body[0]["Value"])), (200, b"3"))
        self.assertGreater(new_index, modify)
        # The index is the write's, so b gives the same once it has it.
        self.assertTrue(eventually(lambda: read(self.b, "/v1/kv/app/a")[1] == new_index))
        self.assertNotEqual(read(self.a, "/v1/kv/app?recurse")[1], tree_index)
        # A delete wakes a reader blocked on the key: 404.
        self.assertEqual(read_through(self.b, new_index, lambda: self.ca.kv.delete("app/a"))[0], 404)
        # Flags are written with the value, replicate with it, and are
        # replaced with it; a bad number changes nothing.
        self.assertTrue(self.ca.kv.put("app/f", "x", flags=2 ** 63 + 5))
        self.assertTrue(eventually(lambda: (self.cb.kv.get("app/f")[1] or {}).get("Flags") == 2 ** 63 + 5))
        self.assertEqual(self.cb.kv.get("app", recurse=True)[1][0]["Flags"], 2 ** 63 + 5)
        self.assertTrue(self.ca.kv.put("app/f", "y"))
        self.assertTrue(eventually(lambda: self.cb.kv.get("app/f")[1]["Value"] == b"y"))
        self.assertEqual(self.cb.kv.get("app/f")[1]["Flags"], 0)
        for bad in ("-1", "x", "18446744073709551616", ""):
            status, _, body = self.a.put("/v1/kv/app/f?flags=" + bad, "z")
            self.assertEqual(status, 400, bad)
            self.assertIn("Invalid flags", json.dumps(body))
        self.assertEqual(self.ca.kv.get("app/f")[1]["Value"], b"y")
        # A value that happens to begin with the bytes flags are kept behind
        # reads back as written (registry/src/config_value.hpp).
        tricky = b"\x00lattice-flags:\x00\x00\x00\x00\x00\x00\x00\x07rest"
        self.assertEqual(self.a.put("/v1/kv/app/tricky", tricky)[0], 200)
        entry = self.ca.kv.get("app/tricky")[1]
        self.assertEqual((entry["Value"], entry["Flags"]), (tricky, 0))

    def test_kv_put_get_delete(self):
        self.assertTrue(self.ca.kv.put("app/config/timeout", "30s"))
        self.assertTrue(eventually(lambda: self.cb.kv.get("app/config/timeout")[1] is not None))
        _, entry = self.cb.kv.get("app/config/timeout")
        self.assertEqual(entry["Value"], b"30s")
        self.assertEqual(self.cb.kv.get("app/config", keys=True)[1], ["app/config/timeout"])
        _, entries = self.cb.kv.get("app", recurse=True)
        self.assertEqual([e["Key"] for e in entries], ["app/config/timeout"])
        self.assertTrue(self.ca.kv.delete("app/config/timeout"))
        self.assertTrue(eventually(lambda: self.cb.kv.get("app/config/timeout")[1] is None))

    def test_checks_by_service_node_and_state_and_the_agents_own_view(self):
        Check = self.consul_module.Check
        self.assertTrue(self.ca.agent.service.register("web", service_id="web-1", port=8080, check=Check.ttl("60s")))
        self.assertEqual(self.ca.catalog.datacenters(), ["dc1"])
        node_a = self.ca.agent.self()["Config"]["NodeName"]
        # On b: the service's checks, the node's (its Serf check first), by state.
        self.assertTrue(eventually(lambda: len(self.cb.health.checks("web")[1]) == 1))
        check = self.cb.health.checks("web")[1][0]
        self.assertEqual((check["CheckID"], check["Status"], check["Node"]), ("service:web-1", "critical", node_a))
        # (b's member table, refreshed each tick, may list a a moment after
        # a's registration has arrived.)
        def node_checks():
            return [(c["CheckID"], c["Status"]) for c in self.cb.health.node(node_a)[1]]

        self.assertTrue(eventually(lambda: node_checks() == [("serfHealth", "passing"), ("service:web-1", "critical")]),
                        node_checks())
        self.assertEqual([c["CheckID"] for c in self.cb.health.state("critical")[1]], ["service:web-1"])
        self.assertEqual(sorted(c["Node"] for c in self.cb.health.state("passing")[1]),
                         sorted(m["Name"] for m in self.cb.agent.members()))  # every node's Serf check
        self.assertEqual(list(self.cb.catalog.node(node_a)[1]["Services"]), ["web-1"])
        self.assertIsNone(self.cb.catalog.node("lattice-0000000000000001")[1])
        self.assertEqual(self.a.get("/v1/health/state/bogus")[0], 400)
        # The agent's own view on a: 503 while critical, 200 once passing.
        status, _, body = self.a.get("/v1/agent/health/service/id/web-1")
        self.assertEqual((status, body["AggregatedStatus"]), (503, "critical"))
        self.ca.agent.check.ttl_pass("service:web-1")
        status, _, body = self.a.get("/v1/agent/health/service/name/web")
        self.assertEqual((status, [e["AggregatedStatus"] for e in body]), (200, ["passing"]))
        self.assertEqual(self.a.get("/v1/agent/health/service/id/web-1?format=text")[2], "passing")
        self.assertEqual(self.ca.agent.checks()["service:web-1"]["Status"], "passing")
        self.assertEqual(self.a.get("/v1/agent/service/web-1")[2]["Port"], 8080)
        # b is another agent: the service is not its own.
        self.assertEqual(self.b.get("/v1/agent/service/web-1")[0], 404)
        self.assertEqual(self.b.get("/v1/agent/health/service/id/web-1")[0], 404)
        # The health answer carries the node check too, node checks first.
        self.assertTrue(eventually(lambda: [c["CheckID"] for c in self.cb.health.service("web", passing=True)[1][0]["Checks"]]
                                   == ["serfHealth", "service:web-1"] if self.cb.health.service("web", passing=True)[1] else False))

    def test_maintenance_mode_takes_a_service_out_everywhere_until_disabled(self):
        self.assertTrue(self.ca.agent.service.register("web", service_id="web-1", port=8080))
        self.assertTrue(eventually(lambda: len(self.cb.health.service("web", passing=True)[1]) == 1))
        self.assertTrue(self.ca.agent.service.maintenance("web-1", "true", reason="deploying"))
        # On b too: listed, critical through its maintenance check, not passing.
        self.assertTrue(eventually(lambda: self.cb.health.service("web", passing=True)[1] == []))
        checks = self.cb.health.service("web")[1][0]["Checks"]
        self.assertIn(("_service_maintenance:web-1", "critical", "deploying"),
                      [(c["CheckID"], c["Status"], c["Notes"]) for c in checks])
        self.assertEqual(self.a.get("/v1/agent/health/service/id/web-1")[0], 503)
        self.assertTrue(self.ca.agent.service.maintenance("web-1", "false"))
        self.assertTrue(eventually(lambda: len(self.cb.health.service("web", passing=True)[1]) == 1))
        # Bad input changes nothing.
        self.assertEqual(self.a.put("/v1/agent/service/maintenance/web-1")[0], 400)
        self.assertEqual(self.a.put("/v1/agent/service/maintenance/web-1?enable=maybe")[0], 400)
        self.assertEqual(self.a.put("/v1/agent/service/maintenance/nope?enable=true")[0], 404)
        self.assertEqual(self.b.put("/v1/agent/service/maintenance/web-1?enable=true")[0], 404)  # not b's
        self.assertEqual(len(self.ca.health.service("web", passing=True)[1]), 1)

    def test_any_consul_service_name_round_trips(self):
        # Names Consul accepts that are not path segments map onto one
        # segment (docs: "~XX" escapes) and are answered as given.
        name = "app#127.0.0.1#3000 blue~x"
        quoted = urllib.parse.quote(name, safe="")
        status, _, _ = self.a.put("/v1/agent/service/register", {"Name": name, "ID": "n-1", "Port": 3000})
        self.assertEqual(status, 200)
        self.assertEqual(self.ca.agent.services()["n-1"]["Service"], name)
        self.assertTrue(eventually(lambda: self.b.get("/v1/health/service/" + quoted)[2] not in ([], None, "")))
        entry = self.b.get("/v1/health/service/" + quoted)[2][0]
        self.assertEqual((entry["Service"]["Service"], entry["Service"]["Port"]), (name, 3000))
        self.assertIn(name, self.cb.catalog.services()[1])
        self.assertEqual(self.b.get("/v1/catalog/service/" + quoted)[2][0]["ServiceName"], name)
        # The path natively: one escaped segment.
        status, _, body = self.b.get("/v1/lattice/instances/app~23127.0.0.1~233000~20blue~7Ex")
        self.assertEqual((status, [i["id"] for i in body["providers"]]), (200, ["n-1"]))

    def test_kv_answers_as_consul_does_at_the_edges(self):
        # An empty value reads back as null, not "".
        self.assertTrue(self.ca.kv.put("app/empty", ""))
        status, _, body = self.a.get("/v1/kv/app/empty")
        self.assertEqual(status, 200)
        self.assertIsNone(body[0]["Value"])
        self.assertTrue(self.ca.kv.put("app/full", "x"))
        # The whole tree, as `consul kv export` asks for it.
        status, _, body = self.a.get("/v1/kv/?recurse")
        self.assertEqual(status, 200)
        self.assertEqual(sorted(e["Key"] for e in body), ["app/empty", "app/full"])
        status, _, body = self.a.get("/v1/kv/?keys")
        self.assertEqual((status, sorted(body)), (200, ["app/empty", "app/full"]))
        # No key and neither ?recurse nor ?keys: 400, as Consul (a 404 would
        # make a client's watcher retry forever).
        status, _, body = self.a.get("/v1/kv/")
        self.assertEqual(status, 400)
        self.assertIn("Missing key name", json.dumps(body))

    def test_parameters_that_would_change_the_answer_are_not_ignored(self):
        self.assertTrue(self.ca.agent.service.register("web", service_id="web-1", port=8080))
        self.assertEqual(self.a.get("/v1/health/service/web?dc=dc1")[0], 200)
        status, _, body = self.a.get("/v1/health/service/web?dc=elsewhere")
        self.assertEqual(status, 500)
        self.assertIn("No path to datacenter", json.dumps(body))
        for query in ("node-meta=rack:r1", "near=_agent", "ns=team"):
            with self.subTest(query=query):
                status, _, body = self.a.get("/v1/catalog/service/web?" + query)
                self.assertEqual(status, 400)
                self.assertIn("not supported", json.dumps(body))

    def test_filter_expressions_on_catalog_health_and_agent(self):
        def q(expression):
            return urllib.parse.quote(expression, safe="")
        self.assertEqual(self.a.put("/v1/agent/service/register", {"Name": "web", "ID": "web-1", "Port": 8080,
                                                                   "Tags": ["primary"], "Meta": {"zone": "eu-west"}})[0],
                         200)
        self.assertTrue(self.cb.agent.service.register("web", service_id="web-2", port=9090,
                                                       check=self.consul_module.Check.ttl("60s")))
        # Until b judges a alive, web-1's node check is critical there.
        self.assertTrue(eventually(lambda: len(self.b.get("/v1/health/service/web?passing")[2]) == 1))

        def ids(path, field):
            status, _, body = self.b.get(path)
            self.assertEqual(status, 200, body)
            return sorted(field(e) for e in body)
        self.assertEqual(ids("/v1/health/service/web?filter=" + q('Service.Meta.zone == "eu-west"'),
                             lambda e: e["Service"]["ID"]), ["web-1"])
        self.assertEqual(ids("/v1/health/service/web?filter=" + q("Checks.Status == critical"),
                             lambda e: e["Service"]["ID"]), ["web-2"])
        self.assertEqual(ids("/v1/catalog/service/web?filter=" + q('"primary" in ServiceTags or ServicePort == 9090'),
                             lambda e: e["ServiceID"]), ["web-1", "web-2"])
        self.assertEqual(ids("/v1/catalog/service/web?filter=" + q('not ("primary" in ServiceTags)'),
                             lambda e: e["ServiceID"]), ["web-2"])
        self.assertEqual(ids("/v1/health/checks/web?filter=" + q("ServiceID == web-2"),
                             lambda e: e["CheckID"]), ["service:web-2"])
        self.assertEqual(ids("/v1/health/state/any?filter=" + q('CheckID == "serfHealth"'),
                             lambda e: e["Node"]), sorted(m["Name"] for m in self.cb.agent.members()))
        # The same question with and without a filter is two cached answers.
        self.assertEqual(len(self.b.get("/v1/catalog/service/web")[2]), 2)
        status, _, body = self.b.get("/v1/agent/services?filter=" + q("Port == 9090"))
        self.assertEqual((status, sorted(body)), (200, ["web-2"]))
        status, _, body = self.b.get("/v1/agent/checks?filter=" + q("Status == passing"))
        self.assertEqual((status, body), (200, {}))
        # Refusals: a malformed expression, an unknown selector, a bad
        # regular expression, an endpoint that takes no filter.
        for path, words in (("/v1/health/service/web?filter=" + q("Service.ID =="), "no valid expression"),
                            ("/v1/health/service/web?filter=" + q("Service.Colour == red"),
                             'Selector \\"Service.Colour\\" is not valid'),
                            ("/v1/catalog/service/web?filter=" + q('ServiceID matches "("'),
                             "Invalid regular expression"),
                            ("/v1/kv/?recurse&filter=" + q("Key == a"), "not supported")):
            with self.subTest(path=path):
                status, _, body = self.b.get(path)
                self.assertEqual(status, 400)
                self.assertIn(words, json.dumps(body))

    def test_weights_default_as_consul(self):
        self.assertTrue(self.ca.agent.service.register("web", service_id="web-1", port=8080))
        self.assertEqual(self.ca.agent.services()["web-1"]["Weights"], {"Passing": 1, "Warning": 1})
        status, _, body = self.a.put("/v1/agent/service/register",
                                     {"Name": "web", "ID": "web-2", "Port": 8081, "Weights": {"Passing": 5}})
        self.assertEqual(status, 200)
        self.assertEqual(self.ca.agent.services()["web-2"]["Weights"], {"Passing": 5, "Warning": 1})

    def test_status_and_members(self):
        self.assertEqual(self.ca.status.leader(), self.a.gossip)
        self.assertTrue(eventually(lambda: len(self.ca.agent.members()) == 2))
        self.assertEqual({m["Status"] for m in self.ca.agent.members()}, {1})
        me = self.ca.agent.self()
        self.assertEqual(me["Config"]["Datacenter"], "dc1")
        self.assertEqual(me["Member"]["Name"], me["Config"]["NodeName"])
        self.assertEqual(me["Stats"]["consul"]["leader_addr"], self.a.gossip)
        self.assertTrue(eventually(lambda: self.ca.agent.self()["Stats"]["serf_lan"]["members"] == "2"))


class TwoDaemons(unittest.TestCase):
    """Two daemons, b joined through a."""

    def setUp(self):
        self.a = Daemon()
        self.b = Daemon(seeds=[self.a.gossip])

    def tearDown(self):
        for d in (self.a, self.b):
            d.close()
            shutil.rmtree(d.data_dir, ignore_errors=True)


class UserEventTest(TwoDaemons):
    """Consul's user events (/v1/event/fire, /v1/event/list), replicated,
    coalesced by name, listed for --event-retention (3 s here)."""

    def setUp(self):
        import consul  # python3-consul
        self.a = Daemon("--event-retention", "3s")
        self.b = Daemon("--event-retention", "3s", seeds=[self.a.gossip])
        self.ca = consul.Consul(host=self.a.http.rsplit(":", 1)[0], port=int(self.a.http.rsplit(":", 1)[1]))
        self.cb = consul.Consul(host=self.b.http.rsplit(":", 1)[0], port=int(self.b.http.rsplit(":", 1)[1]))

    def events(self, daemon):
        status, headers, body = daemon.get("/v1/event/list")
        self.assertEqual(status, 200, body)
        return headers["X-Consul-Index"], body

    def test_fired_event_reaches_the_other_daemon_coalesced_by_name(self):
        fired = self.ca.event.fire("deploy", body="v2")
        self.assertEqual(fired["Name"], "deploy")
        self.assertTrue(eventually(lambda: [e["Name"] for e in self.events(self.b)[1]] == ["deploy"]))
        first = self.events(self.b)[1][0]
        self.assertEqual(first["ID"], fired["ID"])
        self.assertEqual(base64.b64decode(first["Payload"]), b"v2")
        # A newer event of the same name replaces it everywhere.
        self.ca.event.fire("deploy", body="v3")
        self.assertTrue(eventually(lambda: [base64.b64decode(e["Payload"]) for e in self.events(self.b)[1]] == [b"v3"]))
        self.assertGreater(self.events(self.b)[1][0]["LTime"], first["LTime"])
        # A blocking list on b returns when an event is fired on a.
        index, _ = self.events(self.b)
        result = {}
        waiter = threading.Thread(target=lambda: result.update(answer=self.cb.event.list(index=index, wait="20s")))
        waiter.start()
        self.assertTrue(blocked(self.b))
        self.ca.event.fire("flush")
        waiter.join(30)
        self.assertFalse(waiter.is_alive())
        new_index, listed = result["answer"]
        self.assertNotEqual(new_index, index)
        self.assertEqual([e["Name"] for e in listed], ["deploy", "flush"])
        self.assertIsNone(listed[1]["Payload"])
        self.assertEqual([e["Name"] for e in self.cb.event.list(name="flush")[1]], ["flush"])

    def test_node_filter_chooses_the_daemons_that_list_it(self):
        b_node = self.b.get("/v1/agent/self")[2]["Config"]["NodeName"]
        fired = self.ca.event.fire("only-b", node="^" + b_node + "$")
        self.assertEqual(fired["NodeFilter"], "^" + b_node + "$")
        self.assertTrue(eventually(lambda: [e["Name"] for e in self.events(self.b)[1]] == ["only-b"]))
        # a holds the event it acknowledged, and does not list it.
        self.assertEqual(self.events(self.a)[1], [])
        # A service filter: listed where a service of that name is registered.
        self.assertTrue(self.ca.agent.service.register("web", service_id="web-1", tags=["blue"]))
        self.ca.event.fire("web-blue", service="^web$", tag="blue")
        self.ca.event.fire("web-green", service="^web$", tag="green")
        self.assertEqual([e["Name"] for e in self.events(self.a)[1]], ["web-blue"])

    def test_events_are_forgotten_after_the_retention(self):
        self.ca.event.fire("deploy", body="v1")
        self.assertTrue(eventually(lambda: len(self.events(self.b)[1]) == 1))
        self.assertTrue(eventually(lambda: metric(self.b, "lattice_config_keys") == 1))  # the event's entry
        self.assertTrue(eventually(lambda: self.events(self.b)[1] == [] and self.events(self.a)[1] == [], timeout=15))
        # ... and erased from the document by the daemon that fired it
        # (sweeps run every 5 s), everywhere.
        self.assertTrue(eventually(lambda: metric(self.a, "lattice_config_keys") == 0 and
                                   metric(self.b, "lattice_config_keys") == 0, timeout=20))

    def test_refusals_change_nothing(self):
        status, _, body = self.a.put("/v1/event/fire/big", b"x" * 513)
        self.assertEqual(status, 413)
        self.assertIn("exceeds", json.dumps(body))
        for path, words in (("/v1/event/fire/x?node=(", "Invalid filter"),
                            ("/v1/event/fire/x?tag=blue", "without service filter"),
                            ("/v1/event/list?node=a", "not supported")):
            with self.subTest(path=path):
                status, _, body = self.a.request("PUT" if "fire" in path else "GET", path)
                self.assertEqual(status, 400)
                self.assertIn(words, json.dumps(body))
        self.assertEqual(self.events(self.a)[1], [])
        # The events' keys are latticed's own: not KV, not native config.
        self.ca.event.fire("deploy")
        self.assertEqual(self.a.put("/v1/kv/~lattice/events/deploy", "x")[0], 400)
        self.assertEqual(self.a.put("/v1/lattice/config/~lattice/events/deploy", "x")[0], 400)
        self.assertEqual(self.a.get("/v1/kv/?recurse")[0], 404)
        self.assertEqual(self.a.get("/v1/lattice/config/?recurse")[2], {})
        self.assertEqual([e["Name"] for e in self.events(self.a)[1]], ["deploy"])


class Endpoint:
    """A provider's HTTP endpoint on loopback for checks to probe: answers
    every request with `code`, counts requests, and can stop listening."""

    def __init__(self, tls=False):
        import http.server
        import ssl
        endpoint = self
        self.code = 200
        self.served = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                endpoint.served += 1
                body = ("status %d" % endpoint.code).encode()
                self.send_response(endpoint.code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls:  # the transport tests' certificate, from a CA no system trusts
            fixtures = os.path.join(os.path.dirname(__file__), "..", "transport", "tls")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(os.path.join(fixtures, "node.pem"), os.path.join(fixtures, "node.key"))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


class ConsulCheckTest(TwoDaemons):
    """HTTP and TCP checks run by the owning daemon, several per service,
    their results seen on another daemon."""

    def setUp(self):
        import consul  # python3-consul
        super().setUp()
        self.consul_module = consul
        self.ca = consul.Consul(host="127.0.0.1", port=int(self.a.http.rsplit(":", 1)[1]))
        self.cb = consul.Consul(host="127.0.0.1", port=int(self.b.http.rsplit(":", 1)[1]))
        self.endpoint = Endpoint()

    def tearDown(self):
        self.endpoint.stop()
        super().tearDown()

    def checks_on_b(self):
        entries = self.cb.health.service("web")[1]
        if not entries:
            return {}
        return {c["CheckID"]: (c["Status"], c["Output"]) for c in entries[0]["Checks"] if c["CheckID"] != "serfHealth"}

    def register(self, **extra):
        body = dict({"Name": "web", "ID": "web-1", "Port": self.endpoint.port, "Checks": [
            {"HTTP": "http://127.0.0.1:%d/health" % self.endpoint.port, "Interval": "1s", "Timeout": "1s"},
            {"TCP": "127.0.0.1:%d" % self.endpoint.port, "Interval": "1s", "Timeout": "1s"}]}, **extra)
        status, _, answer = self.a.put("/v1/agent/service/register", body)
        self.assertEqual(status, 200, answer)

    def test_http_and_tcp_checks_follow_the_endpoint_on_every_daemon(self):
        self.register()
        # Both checks pass, as judged by a and seen on b.
        self.assertTrue(eventually(lambda: [s for s, _ in self.checks_on_b().values()] == ["passing", "passing"],
                                   timeout=10), self.checks_on_b())
        checks = self.checks_on_b()
        self.assertEqual(sorted(checks), ["service:web-1:1", "service:web-1:2"])
        self.assertIn("HTTP GET http://127.0.0.1:%d/health: 200 OK Output: status 200" % self.endpoint.port,
                      checks["service:web-1:1"][1])
        self.assertEqual(checks["service:web-1:2"][1], "TCP connect 127.0.0.1:%d: Success" % self.endpoint.port)
        self.assertEqual(len(self.cb.health.service("web", passing=True)[1]), 1)
        # 429 is warning, any other failure critical: everywhere.
        self.endpoint.code = 429
        self.assertTrue(eventually(lambda: self.checks_on_b().get("service:web-1:1", ("",))[0] == "warning",
                                   timeout=10), self.checks_on_b())
        self.endpoint.code = 500
        self.assertTrue(eventually(lambda: self.checks_on_b().get("service:web-1:1", ("",))[0] == "critical",
                                   timeout=10), self.checks_on_b())
        self.assertIn("500", self.checks_on_b()["service:web-1:1"][1])
        self.assertEqual(self.cb.health.service("web", passing=True)[1], [])
        self.assertEqual(self.checks_on_b()["service:web-1:2"][0], "passing")  # the port still answers
        # The endpoint goes away: the TCP check fails too.
        # The output written with the status change is the first failed probe's: "connection
        # refused", or "connection reset by peer" when that probe raced the listener's close
        # (the output alone changing is written only every --check-update-interval).
        self.endpoint.stop()
        self.assertTrue(eventually(lambda: self.checks_on_b().get("service:web-1:2", ("",))[0] == "critical",
                                   timeout=10), self.checks_on_b())
        self.assertRegex(self.checks_on_b()["service:web-1:2"][1].lower(), r"connection (refused|reset by peer)")
        self.endpoint = Endpoint()  # for tearDown
        # The agent's own view on a: every check, with its definition.
        own = self.ca.agent.checks()
        self.assertEqual(own["service:web-1:1"]["Type"], "http")
        self.assertEqual(own["service:web-1:1"]["Definition"]["Interval"], "1s")
        self.assertEqual(own["service:web-1:2"]["Type"], "tcp")

    def test_https_checks_verify_the_certificate_unless_told_not_to(self):
        secure = Endpoint(tls=True)
        try:
            url = "https://127.0.0.1:%d/health" % secure.port
            self.register(Checks=[{"HTTP": url, "Interval": "1s", "CheckID": "verified"},
                                  {"HTTP": url, "Interval": "1s", "TLSSkipVerify": True, "CheckID": "unverified"}])
            self.assertTrue(eventually(lambda: self.checks_on_b().get("unverified", ("",))[0] == "passing",
                                       timeout=10), self.checks_on_b())
            self.assertTrue(eventually(lambda: "verif" in self.checks_on_b().get("verified", ("", ""))[1].lower(),
                                       timeout=10), self.checks_on_b())
            self.assertEqual(self.checks_on_b()["verified"][0], "critical")  # signed by a CA it does not trust
        finally:
            secure.stop()

    def test_success_before_passing_needs_that_many_successes_in_a_row(self):
        self.endpoint.code = 500
        self.register(Checks=[{"HTTP": "http://127.0.0.1:%d/" % self.endpoint.port, "Interval": "1s",
                               "SuccessBeforePassing": 3}])
        self.assertTrue(eventually(lambda: "500" in self.ca.agent.checks().get("service:web-1", {}).get("Output", ""),
                                   timeout=10))
        served_before = self.endpoint.served
        self.endpoint.code = 200
        self.assertTrue(eventually(lambda: self.ca.agent.checks()["service:web-1"]["Status"] == "passing",
                                   timeout=15))
        # However late this poll saw it, three successes came first.
        self.assertGreaterEqual(self.endpoint.served - served_before, 3)

    def test_checks_added_and_removed_on_their_own_and_kept_across_a_restart(self):
        Check = self.consul_module.Check
        self.assertTrue(self.ca.agent.service.register("web", service_id="web-1", port=self.endpoint.port,
                                                       check=Check.ttl("30s")))
        self.assertTrue(self.ca.agent.check.register("web-http", Check.http(
            "http://127.0.0.1:%d/" % self.endpoint.port, "1s"), service_id="web-1"))
        self.ca.agent.check.ttl_pass("service:web-1")
        self.assertTrue(eventually(lambda: {k: s for k, (s, _) in self.checks_on_b().items()} ==
                                   {"service:web-1": "passing", "web-http": "passing"}, timeout=10),
                        self.checks_on_b())
        # agent/check/update sets a TTL check's status and output.
        status, _, _ = self.a.put("/v1/agent/check/update/service:web-1", {"Status": "warning", "Output": "slow"})
        self.assertEqual(status, 200)
        self.assertTrue(eventually(lambda: self.checks_on_b().get("service:web-1") == ("warning", "slow")))
        # A restart of the owner: the checks come back from its data
        # directory and run again.
        self.a.kill9()
        self.a.start()
        ca = self.consul_module.Consul(host="127.0.0.1", port=int(self.a.http.rsplit(":", 1)[1]))
        self.assertEqual(sorted(ca.agent.checks()), ["service:web-1", "web-http"])
        self.endpoint.code = 503
        self.assertTrue(eventually(lambda: ca.agent.checks()["web-http"]["Status"] == "critical", timeout=10))
        # Removing a check removes it everywhere.
        self.assertTrue(ca.agent.check.deregister("web-http"))
        self.assertNotIn("web-http", ca.agent.checks())
        self.assertEqual(ca.agent.check.deregister("web-http"), False)  # unknown now: 404

    def test_deregister_critical_service_after(self):
        self.endpoint.code = 500
        self.register(Checks=[{"HTTP": "http://127.0.0.1:%d/" % self.endpoint.port, "Interval": "1s",
                               "DeregisterCriticalServiceAfter": "1s"}])
        self.assertTrue(eventually(lambda: self.checks_on_b() != {}, timeout=10))
        self.assertTrue(eventually(lambda: self.cb.catalog.service("web")[1] == [], timeout=15))
        self.assertNotIn("web-1", self.ca.agent.services())
        self.assertEqual(self.ca.agent.checks(), {})

    def test_checks_it_cannot_run_are_refused_by_name_and_change_nothing(self):
        port = self.endpoint.port
        for check, words in (({"Args": ["/bin/true"], "Interval": "1s"}, "script checks are not supported"),
                             ({"GRPC": "127.0.0.1:1", "Interval": "1s"}, "gRPC checks are not supported"),
                             ({"DockerContainerID": "x", "Shell": "sh", "Interval": "1s"}, "Docker"),
                             ({"HTTP": "http://127.0.0.1:%d/" % port}, "needs an Interval"),
                             ({"HTTP": "ftp://x/", "Interval": "1s"}, "http:// or https://"),
                             ({"TCP": "nohost", "Interval": "1s"}, "host:port"),
                             ({"TTL": "10s", "HTTP": "http://x/", "Interval": "1s"}, "exactly one"),
                             ({"TTL": "10s", "Bogus": 1}, "unknown check field"),
                             ({"TTL": "10s", "Status": "fine"}, "invalid Status")):
            with self.subTest(check=check):
                status, _, body = self.a.put("/v1/agent/service/register",
                                             {"Name": "web", "ID": "web-1", "Port": port, "Check": check})
                self.assertEqual(status, 400, body)
                self.assertIn(words, json.dumps(body))
        self.assertEqual(self.ca.agent.services(), {})
        # A check on its own must name one of this agent's services.
        status, _, body = self.a.put("/v1/agent/check/register", {"Name": "x", "TTL": "10s"})
        self.assertEqual(status, 400)
        self.assertIn("ServiceID is required", json.dumps(body))
        status, _, body = self.a.put("/v1/agent/check/register", {"Name": "x", "TTL": "10s", "ServiceID": "nope"})
        self.assertEqual(status, 400)
        self.assertEqual(self.a.put("/v1/agent/check/deregister/nope")[0], 404)
        self.assertEqual(self.ca.agent.checks(), {})


class SessionTest(TwoDaemons):
    """Registrations bound to a client's session vanish everywhere when it
    ends: expired, destroyed, its connection dropped, its process killed."""

    def create(self, ttl="2s"):
        status, _, body = self.a.request("POST", "/v1/lattice/sessions", {"ttl": ttl, "name": "test"})
        self.assertEqual(status, 200, body)
        return body["id"]

    def register(self, port, session):
        status, _, body = self.a.put("/v1/lattice/instances%s?session=%s" % (PATH, session), instance(port))
        self.assertEqual(status, 200, body)
        self.assertEqual(body["tags"]["lattice:session"], session)

    def test_a_session_that_is_not_renewed_takes_its_registrations_with_it(self):
        session = self.create("2s")
        self.register(9001, session)
        self.assertEqual(self.a.put("/v1/lattice/instances" + PATH, instance(9002))[0], 200)  # no session
        self.assertTrue(eventually(lambda: providers(self.b, PATH) == ["127.0.0.1:9001", "127.0.0.1:9002"]))
        # Renewed once a quarter of its TTL has passed: it stays past its
        # TTL. (Renewing at half left it one second to spare, and a loaded
        # machine once took longer than that between poll and renewal.)
        renewed_until = time.monotonic() + 3
        while time.monotonic() < renewed_until:
            self.assertTrue(eventually(
                lambda: self.a.get("/v1/lattice/sessions/" + session)[2]["expires_in_ms"] < 1500, timeout=2))
            status, _, body = self.a.put("/v1/lattice/sessions/%s/renew" % session)
            self.assertEqual(status, 200, body)
            self.assertEqual([r["id"] for r in body["registrations"]], ["127.0.0.1:9001"])
        self.assertEqual(providers(self.a, PATH), ["127.0.0.1:9001", "127.0.0.1:9002"])
        # Not renewed: gone everywhere; the other registration stays.
        self.assertTrue(eventually(lambda: providers(self.b, PATH) == ["127.0.0.1:9002"], timeout=10))
        self.assertEqual(self.a.put("/v1/lattice/sessions/%s/renew" % session)[0], 404)
        self.assertEqual(self.a.put("/v1/lattice/instances%s?session=%s" % (PATH, session), instance(9003))[0], 404)
        self.assertEqual(providers(self.a, PATH), ["127.0.0.1:9002"])

    def test_destroying_a_session_or_dropping_its_connection_removes_its_registrations(self):
        session = self.create("60s")
        self.register(9001, session)
        self.assertTrue(eventually(lambda: providers(self.b, PATH) == ["127.0.0.1:9001"]))
        status, _, body = self.a.delete("/v1/lattice/sessions/" + session)
        self.assertEqual((status, body["registrations"]), (200, 1))
        self.assertEqual(providers(self.a, PATH), [])  # applied here before the answer
        self.assertTrue(eventually(lambda: providers(self.b, PATH) == []))
        self.assertEqual(self.a.delete("/v1/lattice/sessions/" + session)[0], 404)
        # A held session: the stream is the session.
        stream = EventStream(self.a, "/v1/lattice/sessions/hold?name=held")
        name, data = stream.next()
        self.assertEqual(name, "session")
        self.register(9002, data["id"])
        self.assertTrue(eventually(lambda: providers(self.b, PATH) == ["127.0.0.1:9002"]))
        # Registered again without the session: freed from it.
        self.assertEqual(self.a.put("/v1/lattice/instances" + PATH, instance(9003))[0], 200)
        self.register(9003, data["id"])
        self.assertEqual(self.a.put("/v1/lattice/instances" + PATH, instance(9003))[0], 200)
        self.assertTrue(eventually(lambda: providers(self.b, PATH) == ["127.0.0.1:9002", "127.0.0.1:9003"]))
        stream.close()
        self.assertTrue(eventually(lambda: providers(self.b, PATH) == ["127.0.0.1:9003"]))
        self.assertEqual(self.a.get("/v1/lattice/sessions")[2], [])

    def test_the_cli_holds_a_session_for_as_long_as_it_runs(self):
        proc = subprocess.Popen([LATTICE_CLI, "--addr", self.a.http, "register", PATH, "--address", "127.0.0.1",
                                 "--port", "9005", "--session"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            line = proc.stdout.readline()
            self.assertIn("registered 127.0.0.1:9005 under %s while this runs" % PATH, line)
            self.assertTrue(eventually(lambda: providers(self.b, PATH) == ["127.0.0.1:9005"]))
        finally:
            proc.kill()  # SIGKILL: no goodbye from the client
            proc.wait(5)
            proc.stdout.close()
            proc.stderr.close()
        self.assertTrue(eventually(lambda: providers(self.b, PATH) == []))
        code, _, err = cli(self.a, "register", PATH, "--address", "x", "--session", "--persistent")
        self.assertEqual(code, 2, err)

    def test_a_restarted_daemon_removes_the_registrations_of_its_old_sessions(self):
        self.register(9001, self.create("60s"))
        self.assertTrue(eventually(lambda: providers(self.b, PATH) == ["127.0.0.1:9001"]))
        self.a.kill9()
        # Commits held two seconds: the removals take that long to be
        # applied, and the restarted daemon must not serve before they are
        # (it once answered this lookup while they were in flight).
        self.a.extra = self.a.extra + ["--commit-delay", "2s"]
        self.a.start(gossip=self.a.gossip)  # where b knows it
        self.assertEqual(providers(self.a, PATH), [])
        self.assertTrue(eventually(lambda: providers(self.b, PATH) == [], timeout=10))

    def test_consul_sessions_map_onto_the_same_table(self):
        import consul  # python3-consul
        ca = consul.Consul(host="127.0.0.1", port=int(self.a.http.rsplit(":", 1)[1]))
        session = ca.session.create(name="web", behavior="delete", ttl=10)
        self.assertEqual(ca.session.info(session)[1]["Behavior"], "delete")
        self.assertEqual([s["ID"] for s in ca.session.list()[1]], [session])
        self.assertEqual(ca.session.renew(session)["ID"], session)
        status, _, body = self.a.put("/v1/agent/service/register?session=" + session, {"Name": "web", "ID": "web-1",
                                                                                       "Port": 8080})
        self.assertEqual(status, 200, body)
        self.assertNotIn("lattice:session", ca.agent.services()["web-1"]["Meta"])
        self.assertTrue(eventually(lambda: providers(self.b, "/web") == ["web-1"]))
        self.assertTrue(ca.session.destroy(session))
        # The destroy answers once its removals are applied: this agent no
        # longer lists the service the moment it says so.
        self.assertNotIn("web-1", ca.agent.services())
        self.assertTrue(eventually(lambda: providers(self.b, "/web") == []))
        self.assertIsNone(ca.session.info(session)[1])
        with self.assertRaises(consul.NotFound):  # 404
            ca.session.renew(session)
        # What sessions here cannot do is refused, not ignored.
        for body, words in (({"TTL": "1s"}, "Invalid Session TTL"), ({"Behavior": "lock"}, "Invalid Behavior"),
                            ({"Checks": ["service:web-1"]}, "serfHealth"), ({"Node": "elsewhere"}, "Node")):
            with self.subTest(body=body):
                status, _, answer = self.a.put("/v1/session/create", body)
                self.assertEqual(status, 400)
                self.assertIn(words, json.dumps(answer))
        self.assertEqual(ca.session.list()[1], [])


def dig(daemon, *args, tcp=False):
    """dig's full answer from the daemon's DNS interface."""
    host, port = daemon.dns.rsplit(":", 1)
    done = subprocess.run(["dig", "@" + host, "-p", port, "+time=2", "+tries=1"] + (["+tcp"] if tcp else []) +
                          list(args), capture_output=True, text=True, timeout=20)
    return done.stdout


def dig_status(daemon, *args):
    return re.search(r"status: (\w+)", dig(daemon, *args)).group(1)


def dig_records(daemon, name, qtype, section="answer", **kw):
    """(type, data) of the records in one section of dig's answer."""
    out = dig(daemon, "+noall", "+" + section, name, qtype, **kw)
    return sorted((f[3], " ".join(f[4:])) for f in (line.split() for line in out.splitlines()) if len(f) >= 5)


class DnsTest(TwoDaemons):
    """The DNS interface, asked with dig, as Consul's agent answers."""

    def register(self, **body):
        status, _, answer = self.a.put("/v1/agent/service/register", dict({"Name": "web"}, **body))
        self.assertEqual(status, 200, answer)

    def test_passing_instances_by_name_tag_and_srv_follow_registrations_and_checks(self):
        self.register(ID="web-1", Address="10.0.0.1", Port=8080, Tags=["v1"])
        self.register(ID="web-2", Address="10.0.0.2", Port=8081, Tags=["v2"])
        self.register(ID="web-3", Address="10.0.0.3", Port=8082, Check={"TTL": "60s"})  # critical until passed
        a_of = lambda name: dig_records(self.b, name, "A")
        self.assertTrue(eventually(lambda: a_of("web.service.consul") ==
                                   [("A", "10.0.0.1"), ("A", "10.0.0.2")]), a_of("web.service.consul"))
        self.assertEqual(a_of("v1.web.service.consul"), [("A", "10.0.0.1")])
        self.assertEqual(a_of("web.service.dc1.consul"), [("A", "10.0.0.1"), ("A", "10.0.0.2")])
        srv = dig_records(self.b, "_web._tcp.service.consul", "SRV")
        self.assertEqual(srv, [("SRV", "1 1 8080 0a000001.addr.dc1.consul."),
                               ("SRV", "1 1 8081 0a000002.addr.dc1.consul.")])
        self.assertEqual(dig_records(self.b, "_web._tcp.service.consul", "SRV", section="additional"),
                         [("A", "10.0.0.1"), ("A", "10.0.0.2")])
        self.assertEqual(dig_records(self.b, "_web._v2.service.consul", "SRV"),
                         [("SRV", "1 1 8081 0a000002.addr.dc1.consul.")])
        self.assertEqual(a_of("0a000002.addr.dc1.consul"), [("A", "10.0.0.2")])
        # The check passes on a: listed on b's DNS; a deregistration: gone.
        self.assertEqual(self.a.put("/v1/agent/check/pass/service:web-3")[0], 200)
        self.assertTrue(eventually(lambda: ("A", "10.0.0.3") in a_of("web.service.consul")))
        self.assertEqual(self.a.put("/v1/agent/service/deregister/web-1")[0], 200)
        self.assertTrue(eventually(lambda: a_of("web.service.consul") == [("A", "10.0.0.2"), ("A", "10.0.0.3")]))
        # A node by name.
        node = self.a.get("/v1/agent/self")[2]["Config"]["NodeName"]
        self.assertTrue(eventually(lambda: a_of(node + ".node.consul") == [("A", "127.0.0.1")]))

    def test_nxdomain_empty_and_refused_as_consul_gives_them(self):
        self.register(ID="web-1", Address="10.0.0.1", Port=8080)
        self.assertTrue(eventually(lambda: dig_status(self.b, "web.service.consul", "A") == "NOERROR"))
        self.assertEqual(dig_records(self.b, "web.service.consul", "AAAA"), [])  # there, but no IPv6
        self.assertEqual(dig_status(self.b, "web.service.consul", "AAAA"), "NOERROR")
        self.assertEqual(dig_status(self.b, "nope.service.consul", "A"), "NXDOMAIN")
        self.assertEqual(dig_status(self.b, "web.service.elsewhere.consul", "A"), "NXDOMAIN")
        self.assertEqual(dig_status(self.b, "x.bogus.consul", "A"), "NXDOMAIN")
        self.assertIn("SOA", " ".join(t for t, _ in dig_records(self.b, "nope.service.consul", "A", section="authority")))
        # Outside the domain: refused, never recursed.
        self.assertEqual(dig_status(self.b, "example.com", "A"), "REFUSED")

    def test_a_large_answer_is_truncated_over_udp_and_whole_over_tcp(self):
        many = [instance(9000 + n, address="10.1.0.%d" % n) for n in range(1, 61)]
        status, _, body = self.a.put("/v1/lattice/instances/many", many)
        self.assertEqual(status, 200, body)
        self.assertTrue(eventually(lambda: len(providers(self.b, "/many")) == 60))
        udp = dig(self.b, "+ignore", "+noedns", "many.service.consul", "A")
        self.assertRegex(udp, r"flags: [a-z ]*\btc\b")
        self.assertLess(len([l for l in udp.splitlines() if "\tA\t" in l]), 60)
        self.assertEqual(len(dig_records(self.b, "many.service.consul", "A", tcp=True)), 60)
        self.assertEqual(len(dig_records(self.b, "many.service.consul", "A")), 60)  # dig retries over TCP

    def test_haproxy_finds_the_instances_through_srv_records(self):
        # A real DNS-SD consumer: HAProxy's server-template resolves
        # _web._tcp.service.consul through latticed's DNS and fills its
        # backend's servers from the SRV answers and their additional A
        # records; they follow registrations, checks and deregistrations.
        workdir = tempfile.mkdtemp(prefix="lattice-haproxy-")
        sock_path = os.path.join(workdir, "admin.sock")
        host, port = self.b.dns.rsplit(":", 1)
        with open(os.path.join(workdir, "haproxy.cfg"), "w") as cfg:
            cfg.write("""global
  stats socket %s mode 600 level admin
defaults
  mode tcp
  timeout connect 1s
  timeout client 5s
  timeout server 5s
resolvers lattice
  nameserver latticed %s:%s
  accepted_payload_size 4096
  hold valid 100ms
  hold nx 100ms
  hold obsolete 0s
  resolve_retries 2
  timeout resolve 100ms
  timeout retry 100ms
backend web
  server-template srv 4 _web._tcp.service.consul resolvers lattice init-addr none
""" % (sock_path, host, port))
        proc = subprocess.Popen(["haproxy", "-db", "-f", os.path.join(workdir, "haproxy.cfg")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def servers():
            if not os.path.exists(sock_path):
                return None
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(2)
            try:
                s.connect(sock_path)
                s.sendall(b"show servers state web\n")
                out = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    out += chunk
            except OSError:
                return None
            finally:
                s.close()
            found = set()
            for line in out.decode().splitlines():
                f = line.split()
                if len(f) > 18 and f[0].isdigit() and f[4] not in ("-", "0.0.0.0"):
                    found.add((f[4], int(f[18])))  # srv_addr, srv_port
            return found

        try:
            self.register(ID="web-1", Address="10.0.0.1", Port=8080)
            self.register(ID="web-2", Address="10.0.0.2", Port=8081)
            self.assertTrue(eventually(lambda: servers() == {("10.0.0.1", 8080), ("10.0.0.2", 8081)}, timeout=15),
                            servers())
            self.register(ID="web-3", Address="10.0.0.3", Port=8082, Check={"TTL": "60s"})  # critical: not listed
            self.assertEqual(self.a.put("/v1/agent/service/deregister/web-1")[0], 200)
            self.assertTrue(eventually(lambda: servers() == {("10.0.0.2", 8081)}, timeout=15), servers())
            self.assertEqual(self.a.put("/v1/agent/check/pass/service:web-3")[0], 200)
            self.assertTrue(eventually(lambda: servers() == {("10.0.0.2", 8081), ("10.0.0.3", 8082)}, timeout=15),
                            servers())
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            proc.stderr.close()
            shutil.rmtree(workdir, ignore_errors=True)

    def test_malformed_and_oversized_queries_change_nothing(self):
        host, port = self.b.dns.rsplit(":", 1)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(2)
        try:
            # Garbage with a header's room: FORMERR with its id.
            sock.sendto(b"\x12\x34\x01\x00\x00\x01" + b"\xff" * 20, (host, int(port)))
            answer = sock.recv(4096)
            self.assertEqual(answer[:2], b"\x12\x34")
            self.assertEqual(answer[3] & 0x0F, 1)  # FORMERR
            # Too short for an id, and oversized: dropped, not answered.
            sock.sendto(b"\x00", (host, int(port)))
            sock.sendto(b"\x00" * 5000, (host, int(port)))
        finally:
            sock.close()
        # And the server goes on answering.
        self.assertEqual(dig_status(self.b, "example.com", "A"), "REFUSED")
        self.assertEqual(dig_status(self.b, "nope.service.consul", "A", ), "NXDOMAIN")


class FaultInjectionTest(unittest.TestCase):
    """/v1/lattice/test/partition: refused unless latticed runs with
    --test-faults; with it, bad bodies are refused and a good one cuts
    gossip to the named peers until DELETE heals."""

    def test_refused_without_the_flag(self):
        d = Daemon()
        try:
            for method, body in (("PUT", {"drop": ["127.0.0.1:1"]}), ("GET", None), ("DELETE", None)):
                status, _, answer = d.request(method, "/v1/lattice/test/partition", body)
                self.assertEqual(status, 403, answer)
                self.assertIn("--test-faults", answer["error"])
        finally:
            d.close()
            shutil.rmtree(d.data_dir, ignore_errors=True)

    def test_partition_and_heal(self):
        a = Daemon("--test-faults")
        b = Daemon("--test-faults", seeds=[a.gossip])
        try:
            for body in ("not json", {"drop": "127.0.0.1:1"}, {"drop": [1]}, {"drop": []} | {"extra": 1}):
                status, _, answer = a.put("/v1/lattice/test/partition", body)
                self.assertEqual(status, 400, (body, answer))
            self.assertEqual(a.get("/v1/lattice/test/partition")[2], {"drop": []})
            self.assertTrue(eventually(lambda: a.get("/health")[2]["reachable_peers"] == 1, timeout=10))
            # Each side drops gossip to the other: a write on one side stays there.
            self.assertEqual(a.put("/v1/lattice/test/partition", {"drop": [b.gossip]})[0], 200)
            self.assertEqual(b.put("/v1/lattice/test/partition", {"drop": [a.gossip]})[0], 200)
            self.assertEqual(a.get("/v1/lattice/test/partition")[2], {"drop": [b.gossip]})
            self.assertTrue(eventually(lambda: a.get("/health")[2]["reachable_peers"] == 0, timeout=10))
            self.assertEqual(a.put("/v1/lattice/config/cut/k", "apart")[0], 200)
            # Healed: the write made apart arrives.
            self.assertEqual(a.delete("/v1/lattice/test/partition")[0], 200)
            self.assertEqual(b.delete("/v1/lattice/test/partition")[0], 200)
            self.assertTrue(eventually(lambda: b.get("/v1/lattice/config/cut/k")[0] == 200, timeout=10))
        finally:
            for d in (a, b):
                d.close()
                shutil.rmtree(d.data_dir, ignore_errors=True)


class BadRequestTest(unittest.TestCase):
    def setUp(self):
        self.token_file = tempfile.NamedTemporaryFile("w", delete=False)
        self.token_file.write("s3cret-token\n")
        self.token_file.close()
        self.d = Daemon("--max-body", "4096", "--token-file", self.token_file.name)
        self.auth = {"X-Consul-Token": "s3cret-token"}
        status, _, _ = self.d.put("/v1/lattice/instances" + PATH, instance(9001), headers=self.auth)
        self.assertEqual(status, 200)
        self.d.put("/v1/lattice/config/app/k", "v", headers=self.auth)

    def tearDown(self):
        self.d.close()

    def test_a_delete_of_an_unknown_key_is_a_tombstone_not_an_error(self):
        # A delete is a write: the key may exist on a replica this daemon has
        # not heard from yet, and must not come back when they meet.
        status, _, answer = self.d.delete("/v1/lattice/instances" + PATH + "?id=nope", headers=self.auth)
        self.assertEqual((status, answer["known"]), (200, False), answer)
        status, _, answer = self.d.delete("/v1/lattice/config/app/never-set", headers=self.auth)
        self.assertEqual((status, answer["known"]), (200, False), answer)
        status, _, answer = self.d.delete("/v1/lattice/config/app/k", headers=self.auth)
        self.assertEqual((status, answer["known"]), (200, True), answer)
        shutil.rmtree(self.d.data_dir, ignore_errors=True)
        os.unlink(self.token_file.name)

    def state(self):
        return (self.d.get("/v1/lattice/services")[2], self.d.get("/v1/lattice/config/app?recurse")[2])

    def test_every_bad_request_gets_its_status_and_changes_nothing(self):
        before = self.state()
        cases = [
            ("PUT", "/v1/lattice/instances" + PATH, "{not json", self.auth, 400, "malformed JSON"),
            ("PUT", "/v1/lattice/instances" + PATH, {"address": "x", "bogus": 1}, self.auth, 400, "unknown field"),
            ("PUT", "/v1/lattice/instances" + PATH, {"port": 1}, self.auth, 400, "address"),
            ("PUT", "/v1/lattice/instances/bad//path", instance(1), self.auth, 400, "invalid path"),
            ("PUT", "/v1/lattice/instances" + PATH, instance(1, tags={"k": "x" * 9000}), self.auth, 413, "limit"),
            ("GET", "/v1/lattice/instances/NoSuchService", None, self.auth, 404, "unknown service"),
            ("POST", "/v1/lattice/members", None, self.auth, 405, "not allowed"),
            ("PUT", "/v1/lattice/instances" + PATH, instance(9002), {}, 403, "token"),
            ("PUT", "/v1/lattice/instances" + PATH, instance(9002), {"X-Consul-Token": "wrong"}, 403, "token"),
            ("PUT", "/v1/agent/service/register", {"Name": "web", "Check": {"Args": ["/bin/true"], "Interval": "1s"}},
             self.auth, 400, "script checks are not supported"),
            ("PUT", "/v1/agent/service/register", {"Name": "web", "Bogus": 1}, self.auth, 400, "unknown field"),
            ("PUT", "/v1/kv/a/b?cas=1", "v", self.auth, 400, "not supported"),
            ("PUT", "/v1/kv/bad key", "v", self.auth, 400, "invalid key"),
            ("GET", "/v1/nope", None, self.auth, 404, "no such endpoint"),
            # Bytes that are not UTF-8: refused as a native config value (a
            # JSON string could not carry them), and quoted with U+FFFD in
            # an error instead of failing the response (found by http_fuzz).
            ("PUT", "/v1/lattice/config/app/bin", b"\xff\xfe", self.auth, 400, "not utf-8"),
            ("GET", "/v1/%FF%FEnope", None, self.auth, 404, "no such endpoint: /v1/\ufffd\ufffdnope"),
        ]
        for method, path, body, headers, status, message in cases:
            with self.subTest(method=method, path=path):
                got, _, answer = self.d.request(method, path.replace(" ", "%20"), body, headers=headers)
                self.assertEqual(got, status, answer)
                self.assertIn("error", answer)
                self.assertIn(message.lower(), answer["error"].lower())
        self.assertEqual(self.state(), before)
        # The right token in each accepted form.
        for headers, path in (({"Authorization": "Bearer s3cret-token"}, "/v1/lattice/config/app/x"),
                              ({}, "/v1/lattice/config/app/y?token=s3cret-token")):
            self.assertEqual(self.d.put(path, "1", headers=headers)[0], 200)

    def test_random_bytes_and_truncated_requests_do_not_stop_the_daemon(self):
        host, port = self.d.http.rsplit(":", 1)
        rng = random.Random(42)
        valid = b"PUT /v1/lattice/config/app/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        for n in range(150):
            payload = (bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 600))) if n % 3 == 0
                       else valid[:rng.randint(0, len(valid) - 1)] if n % 3 == 1
                       else b"GET /" + b"a" * rng.randint(1, 20000) + b" HTTP/1.1\r\n\r\n")
            with socket.create_connection((host, int(port)), timeout=2) as s:
                try:  # the daemon may answer 400 and close before we finish
                    s.sendall(payload)
                    s.shutdown(socket.SHUT_WR)
                    while s.recv(65536):
                        pass
                except OSError:
                    pass
        self.assertEqual(self.d.get("/health")[0], 200)
        self.assertEqual(self.d.get("/v1/lattice/config/app/k", headers=self.auth)[2]["value"], "v")

    def test_metrics_are_prometheus_text(self):
        # The figures are the replica's as of its last tick (100 ms):
        # setUp's writes show within a tick or two.
        self.assertTrue(eventually(lambda: metric(self.d, "lattice_batched_writes_total") >= 2))
        status, headers, text = self.d.get("/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain"))
        for family in ("lattice_gossip_messages_sent_total", "lattice_members{state=\"alive\"} 1",
                       "lattice_instances 1", "lattice_persistence_commit_seconds_count",
                       "lattice_rejected_frames_total", "lattice_load_entries_held 0",
                       "lattice_load_oldest_held_seconds 0.000", "lattice_load_budget_deferrals_total 0",
                       'lattice_gossip_datagrams_total{outcome="sent"} 0'):
            self.assertIn(family, text)
        # Requests by route and status, with a latency histogram per route:
        # a Consul route by its pattern, a native family, anything else "other".
        self.assertEqual(self.d.get("/v1/health/service/web")[0], 200)
        self.assertEqual(self.d.get("/v1/no/such/thing/a1b2")[0], 404)
        text = self.d.get("/metrics")[2]

        def value(line_start):
            found = [line for line in text.splitlines() if line.startswith(line_start + " ")]
            return float(found[0].split()[-1]) if found else None
        self.assertEqual(value('lattice_http_requests_total{route="/v1/health/service/",code="200"}'), 1)
        self.assertEqual(value('lattice_http_requests_total{route="other",code="404"}'), 1)
        self.assertNotIn("a1b2", text)
        self.assertGreaterEqual(value('lattice_http_requests_total{route="/v1/lattice/config",code="200"}'), 1)
        count = value('lattice_http_request_duration_seconds_count{route="/v1/lattice/config"}')
        self.assertGreaterEqual(count, 1)
        self.assertEqual(value('lattice_http_request_duration_seconds_bucket{route="/v1/lattice/config",le="+Inf"}'),
                         count)
        self.assertGreater(value('lattice_http_request_duration_seconds_sum{route="/v1/lattice/config"}'), 0)
        # Label values are identifiers; the prose is in the HELP line.
        self.assertIn('lattice_rejected_frames_total{reason="bad_magic"} 0', text)
        self.assertIn("bad_magic (frame does not start with the Lattice magic)", text)
        # setUp's two writes were acknowledged through group commits.
        self.assertGreaterEqual(metric(self.d, "lattice_batched_writes_total"), 2)
        self.assertGreaterEqual(metric(self.d, "lattice_write_batches_total"), 1)


class StreamLimitTest(unittest.TestCase):
    """A watcher that stops reading is cut off with an event, not buffered."""

    def setUp(self):
        # A short grace only where it is waited out: a client that reads
        # after the overflow may be slowed by a sanitizer build, and must
        # still get the overflow event within the default 10 s.
        waits_out_the_grace = self._testMethodName.endswith("_after_the_grace_period")
        self.d = Daemon("--stream-buffer", "65536", "--stream-grace", "1s" if waits_out_the_grace else "10s")

    def tearDown(self):
        self.d.close()
        shutil.rmtree(self.d.data_dir, ignore_errors=True)

    def overflow_a_stream(self):
        """A watch stream whose client reads nothing until it overflowed."""
        host, port = self.d.http.rsplit(":", 1)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
        sock.settimeout(10)
        sock.connect((host, int(port)))
        sock.sendall(b"GET /v1/lattice/watch/big HTTP/1.1\r\nHost: x\r\n\r\n")
        # Nothing is read while each registration makes the view (and each
        # event, the whole view) about 1 KB larger: the kernel's buffers
        # fill, then the stream's queue passes 64 KiB.
        fat = {"blob": "x" * 900}
        overflows = metric(self.d, "lattice_sse_overflows_total")
        for n in range(2000):
            status, _, _ = self.d.put("/v1/lattice/instances/big", instance(10000 + n, tags=fat))
            self.assertEqual(status, 200)
            if n % 20 == 0 and metric(self.d, "lattice_sse_overflows_total") > overflows:
                break
        self.assertTrue(eventually(lambda: metric(self.d, "lattice_sse_overflows_total") == overflows + 1))
        return sock

    def test_a_client_that_never_reads_again_is_cut_off_after_the_grace_period(self):
        sock = self.overflow_a_stream()
        try:
            # Nothing read: the overflow event cannot be written, and the
            # daemon closes the connection once --stream-grace (1 s) is up.
            self.assertTrue(eventually(lambda: metric(self.d, "lattice_sse_streams") == 0, timeout=10))
        finally:
            sock.close()
        self.assertEqual(self.d.get("/health")[0], 200)

    def test_a_client_that_stops_reading_gets_an_overflow_event_and_the_end(self):
        sock = self.overflow_a_stream()
        # Reading now: whatever the kernel held, then the overflow event,
        # then the end of the stream.
        data = b""
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
        sock.close()
        events = [block for block in data.split(b"\n\n") if block.startswith(b"event: ")]
        self.assertTrue(events[-1].startswith(b"event: overflow\ndata: "), events[-1][:200])
        self.assertIn(b"read too slowly", events[-1])
        self.assertEqual(metric(self.d, "lattice_sse_streams"), 0)
        # The daemon serves on.
        self.assertEqual(self.d.get("/health")[0], 200)


class OptionsTest(unittest.TestCase):
    def run_daemon(self, *args):
        import subprocess
        from harness import LATTICED
        return subprocess.run([LATTICED] + list(args), capture_output=True, text=True, timeout=10)

    def test_json_logs_are_one_object_per_line(self):
        log = tempfile.mktemp(prefix="latticed-log-")
        d = Daemon("--log-format", "json", "--log-level", "info", log_path=log)
        try:
            self.assertEqual(d.get("/health")[0], 200)
        finally:
            d.close()
            shutil.rmtree(d.data_dir, ignore_errors=True)
        with open(log) as f:
            lines = [json.loads(line) for line in f]
        os.unlink(log)
        self.assertTrue(lines)
        for line in lines:
            self.assertEqual(sorted(line), ["level", "msg", "pid", "time"])
            self.assertRegex(line["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertTrue(any("serving HTTP" in line["msg"] for line in lines))
        self.assertIn("info", {line["level"] for line in lines})
        self.assertNotEqual(self.run_daemon("--log-format", "xml").returncode, 0)

    def test_version_names_the_source_commit(self):
        import subprocess
        from harness import LATTICE_CLI
        commit = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short=12",
                                 "HEAD"], capture_output=True, text=True).stdout.strip()
        for program, name in ((self.run_daemon("--version"), "latticed"),
                              (subprocess.run([LATTICE_CLI, "--version"], capture_output=True, text=True, timeout=10),
                               "lattice")):
            with self.subTest(program=name):
                self.assertEqual(program.returncode, 0, program.stderr)
                self.assertRegex(program.stdout, r"^%s \d+\.\d+\.\d+ \(" % name)
                if commit:  # a source tree with git history
                    self.assertIn(commit, program.stdout)

    def test_threads_are_named_for_operators(self):
        # top -H, perf and gdb show which thread is busy.
        d = Daemon()
        try:
            task_dir = "/proc/%d/task" % d.proc.pid
            names = set()
            for task in os.listdir(task_dir):
                with open(os.path.join(task_dir, task, "comm")) as f:
                    names.add(f.read().strip())
            self.assertLessEqual({"latticed", "lattice-replica", "lattice-watches"}, names)
        finally:
            d.close()
            shutil.rmtree(d.data_dir, ignore_errors=True)

    def test_help_documents_every_option_with_its_default(self):
        done = self.run_daemon("--help")
        self.assertEqual(done.returncode, 0)
        for option in ("--gossip TEXT=127.0.0.1:7946", "--http TEXT=127.0.0.1:8500", "--dead-after DURATION=700ms",
                       "--mode", "--data-dir", "--token-file", "--config"):
            self.assertIn(option, done.stdout)

    def test_invalid_flags_and_config_fail_before_starting(self):
        for args, message in ((["--mode", "gossipy"], "mode"), (["--dead-after", "soon"], "duration"),
                              (["--http", "nohost"], "host:port"), (["--no-such-flag"], "no-such-flag"),
                              (["--suspect-after", "2s"], "shorter")):
            with self.subTest(args=args):
                done = self.run_daemon(*args)
                self.assertNotEqual(done.returncode, 0)
                self.assertIn(message, done.stderr + done.stdout)
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write('mode = "paxos"\n')
        done = self.run_daemon("--config", f.name)
        os.unlink(f.name)
        self.assertNotEqual(done.returncode, 0)

    def test_read_token_guards_reads_and_does_not_grant_writes(self):
        files = []
        for secret in ("write-secret-1", "read-secret-22"):
            f = tempfile.NamedTemporaryFile("w", delete=False)
            f.write(secret)
            f.close()
            files.append(f.name)
        d = Daemon("--token-file", files[0], "--read-token-file", files[1])
        try:
            self.assertEqual(d.get("/health")[0], 200)
            self.assertEqual(d.get("/v1/lattice/services")[0], 403)
            self.assertEqual(d.get("/metrics")[0], 403)
            read = {"X-Consul-Token": "read-secret-22"}
            self.assertEqual(d.get("/v1/lattice/services", headers=read)[0], 200)
            self.assertEqual(d.put("/v1/lattice/config/a", "1", headers=read)[0], 403)
            self.assertEqual(d.get("/v1/lattice/config/a", headers={"X-Consul-Token": "write-secret-1"})[0], 404)
        finally:
            d.close()
            shutil.rmtree(d.data_dir, ignore_errors=True)
            for f in files:
                os.unlink(f)

    def test_config_file_sets_options(self):
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write('datacenter = "eu-west"\nlog-level = "warn"\n')
        d = Daemon("--config", f.name)
        try:
            self.assertEqual(d.get("/v1/agent/self")[2]["Config"]["Datacenter"], "eu-west")
        finally:
            d.close()
            os.unlink(f.name)
            shutil.rmtree(d.data_dir, ignore_errors=True)


class TlsTest(unittest.TestCase):
    """Gossip over mutual TLS (fixtures in tests/transport/tls)."""

    def test_two_daemons_over_tls_and_half_configured_tls_refused(self):
        fixtures = os.path.join(os.path.dirname(__file__), "..", "transport", "tls")
        tls = ["--tls-cert", os.path.join(fixtures, "node.pem"), "--tls-key", os.path.join(fixtures, "node.key"),
               "--tls-ca", os.path.join(fixtures, "ca.pem")]
        a = Daemon(*tls)
        b = Daemon(*tls, seeds=[a.gossip])
        try:
            self.assertEqual(a.put("/v1/lattice/instances" + PATH, instance(9001))[0], 200)
            self.assertTrue(eventually(lambda: providers(b, PATH) == ["127.0.0.1:9001"]))
        finally:
            for d in (a, b):
                d.close()
                shutil.rmtree(d.data_dir, ignore_errors=True)
        import subprocess
        from harness import LATTICED
        done = subprocess.run([LATTICED] + tls[:2], capture_output=True, text=True, timeout=10)
        self.assertNotEqual(done.returncode, 0)
        self.assertIn("--tls-cert requires --tls-key", done.stderr + done.stdout)


class HttpsTest(unittest.TestCase):
    """The HTTP API over HTTPS (--https-cert, --https-key) and with client
    certificates required (--https-ca), with certificates made here by
    openssl: a CA, the daemon's (for IP 127.0.0.1), a client's, and a client
    of another CA."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="lattice-https-")

        def openssl(*args):
            subprocess.run(["openssl"] + list(args), cwd=cls.dir, check=True, capture_output=True, timeout=30)

        for ca in ("ca", "rogue-ca"):
            openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                    "-subj", "/CN=" + ca, "-keyout", ca + ".key", "-out", ca + ".pem")
        for name, ca, ext in (("server", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                              ("client", "ca", "extendedKeyUsage=clientAuth"),
                              ("rogue", "rogue-ca", "extendedKeyUsage=clientAuth")):
            openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=" + name,
                    "-keyout", name + ".key", "-out", name + ".csr")
            with open(os.path.join(cls.dir, name + ".ext"), "w") as f:
                f.write(ext.replace("\\n", "\n") + "\n")
            openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
                    "-CAcreateserial", "-days", "2", "-extfile", name + ".ext", "-out", name + ".pem")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.dir, name)

    def daemon(self, *extra):
        d = Daemon("--https-cert", self.path("server.pem"), "--https-key", self.path("server.key"), *extra)
        self.addCleanup(lambda: (d.close(), shutil.rmtree(d.data_dir, ignore_errors=True)))
        return d

    def context(self, client=None):
        import ssl
        ctx = ssl.create_default_context(cafile=self.path("ca.pem"))
        if client:
            ctx.load_cert_chain(self.path(client + ".pem"), self.path(client + ".key"))
        return ctx

    def lattice(self, d, *args):
        done = subprocess.run([LATTICE_CLI, "--addr", "https://" + d.http] + list(args), capture_output=True,
                              text=True, timeout=20)
        return done.returncode, done.stdout, done.stderr

    def test_api_cli_and_streams_over_https(self):
        d = self.daemon()
        self.assertEqual(d.scheme, "https")
        d.ssl_context = self.context()
        self.assertEqual(d.get("/health")[0], 200)
        # Plain HTTP to the HTTPS port gets no answer; the daemon goes on.
        with self.assertRaises(Exception):
            urllib.request.urlopen("http://%s/health" % d.http, timeout=5).read()
        self.assertEqual(d.put("/v1/lattice/instances" + PATH, instance(9001))[0], 200)
        # The CLI: verified against the CA; refused without it (the system's
        # CAs do not know ours).
        code, out, err = self.lattice(d, "--ca", self.path("ca.pem"), "instances", PATH)
        self.assertEqual(code, 0, err)
        self.assertIn("127.0.0.1:9001", out)
        code, _, err = self.lattice(d, "instances", PATH)
        self.assertEqual(code, 3)
        self.assertIn("TLS", err)
        code, _, err = self.lattice(d, "--ca", self.path("rogue-ca.pem"), "instances", PATH)
        self.assertEqual(code, 3)
        # The certificate names 127.0.0.1, not localhost: the name is checked.
        done = subprocess.run([LATTICE_CLI, "--addr", "https://localhost:" + d.http.rsplit(":", 1)[1], "--ca",
                               self.path("ca.pem"), "instances", PATH], capture_output=True, text=True, timeout=20)
        self.assertEqual(done.returncode, 3, done.stdout)
        # A blocking query and an SSE stream over TLS.
        index = d.get("/v1/health/service/web")[1]["X-Consul-Index"]
        result = {}
        waiter = threading.Thread(target=lambda: result.update(
            answer=d.get("/v1/health/service/web?index=%s&wait=20s" % index, timeout=30)))
        waiter.start()
        self.assertTrue(blocked(d))
        self.assertEqual(d.put("/v1/agent/service/register", {"Name": "web", "Port": 80})[0], 200)
        waiter.join(30)
        self.assertFalse(waiter.is_alive())
        self.assertEqual(len(result["answer"][2]), 1)
        watcher = subprocess.Popen([LATTICE_CLI, "--addr", "https://" + d.http, "--ca", self.path("ca.pem"), "--json",
                                    "watch", "/HelloWorldService"], stdout=subprocess.PIPE, text=True)
        try:
            self.assertTrue(eventually(lambda: metric(d, "lattice_sse_streams") == 1, timeout=10))
            self.assertEqual(d.put("/v1/lattice/instances" + PATH, instance(9002))[0], 200)
            # The stream starts with the current state; the change follows.
            # (Lines are read by a thread: two may come in one read, and
            # select() does not see the one left in the pipe's buffer.)
            import queue
            lines = queue.Queue()
            threading.Thread(target=lambda: [lines.put(line) for line in watcher.stdout], daemon=True).start()
            seen = []
            for _ in range(5):
                if "127.0.0.1:9002" in seen:
                    break
                seen = [i["id"] for i in json.loads(lines.get(timeout=10))["providers"]]
            self.assertIn("127.0.0.1:9002", seen)
        finally:
            watcher.kill()
            watcher.wait(5)
            watcher.stdout.close()

    def test_client_certificates_when_required(self):
        d = self.daemon("--https-ca", self.path("ca.pem"))
        for client in (None, "rogue"):
            with self.subTest(client=client):
                d.ssl_context = self.context(client)
                with self.assertRaises(Exception):
                    d.get("/health")
        d.ssl_context = self.context("client")
        self.assertEqual(d.get("/health")[0], 200)
        code, out, err = self.lattice(d, "--ca", self.path("ca.pem"), "--cert", self.path("client.pem"), "--key",
                                      self.path("client.key"), "members")
        self.assertEqual(code, 0, err)
        self.assertEqual(self.lattice(d, "--ca", self.path("ca.pem"), "members")[0], 3)

    def test_bad_files_and_half_configurations_are_refused(self):
        for args, words in ((["--https-cert", self.path("server.pem")], "--https-cert requires --https-key"),
                            (["--https-cert", self.path("server.pem"), "--https-key", self.path("client.key")],
                             "--https-key"),
                            (["--https-cert", self.path("server.key"), "--https-key", self.path("server.key")],
                             "--https-cert")):
            with self.subTest(args=args):
                done = subprocess.run([LATTICED, "--http", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--dns", "off",
                                       "--data-dir", self.dir + "/data"] + args,
                                      capture_output=True, text=True, timeout=10)
                self.assertNotEqual(done.returncode, 0)
                self.assertIn(words, done.stderr + done.stdout)


class CliTest(unittest.TestCase):
    def setUp(self):
        self.d = Daemon()

    def tearDown(self):
        self.d.close()
        shutil.rmtree(self.d.data_dir, ignore_errors=True)

    def test_commands_and_exit_codes(self):
        code, out, err = cli(self.d, "register", PATH, "--address", "127.0.0.1", "--port", "9001", "--tag", "env=prod")
        self.assertEqual(code, 0, err)
        self.assertIn("registered 127.0.0.1:9001", out)
        code, out, _ = cli(self.d, "instances", PATH)
        self.assertEqual(code, 0)
        self.assertIn("127.0.0.1:9001", out)
        self.assertIn("env=prod", out)
        code, out, _ = cli(self.d, "--json", "instances", PATH)
        self.assertEqual(json.loads(out)["providers"][0]["tags"], {"env": "prod"})
        code, out, _ = cli(self.d, "services")
        self.assertIn(PATH, out)
        code, out, _ = cli(self.d, "health")
        self.assertEqual(code, 0)
        self.assertIn("ok: replica %s, gossip on %s, 0 of 0 known peers reachable" % (self.d.id, self.d.gossip), out)
        code, out, _ = cli(self.d, "members")
        self.assertIn("(this daemon)", out)
        self.assertIn("alive", out)
        self.assertEqual(cli(self.d, "config", "set", "/app/timeout", "30s")[0], 0)
        self.assertEqual(cli(self.d, "config", "get", "/app/timeout")[1].strip(), "30s")
        self.assertIn("/app/timeout", cli(self.d, "config", "list", "/app")[1])
        self.assertEqual(cli(self.d, "config", "delete", "/app/timeout")[0], 0)
        code, _, err = cli(self.d, "config", "get", "/app/timeout")
        self.assertEqual(code, 4)
        self.assertIn("no config key", err)
        # Recursive: the key and its subtree, not its string-prefix siblings.
        for key in ("/app", "/app/a", "/app/b/c", "/apple"):
            self.assertEqual(cli(self.d, "config", "set", key, "1")[0], 0)
        code, out, _ = cli(self.d, "config", "delete", "-r", "/app")
        self.assertEqual(code, 0)
        self.assertIn("deleted /app and everything under it (3 keys set on this daemon)", out)
        self.assertEqual(cli(self.d, "config", "get", "/app/b/c")[0], 4)
        self.assertEqual(cli(self.d, "config", "get", "/apple")[1].strip(), "1")
        self.assertEqual(cli(self.d, "deregister", PATH, "127.0.0.1:9001")[0], 0)
        code, _, err = cli(self.d, "instances", "not a path")
        self.assertEqual(code, 5)
        self.assertIn("invalid path", err)
        code, _, err = cli(None, "services")
        self.assertEqual(code, 3)
        self.assertIn("cannot reach latticed", err)
        self.assertEqual(cli(self.d, "no-such-command")[0], 2)

    def test_watch_streams_changes(self):
        import select
        import subprocess
        from harness import LATTICE_CLI
        watcher = subprocess.Popen([LATTICE_CLI, "--addr", self.d.http, "--json", "watch", "/HelloWorldService"],
                                   stdout=subprocess.PIPE, text=True)

        def next_event(timeout=10):
            if select.select([watcher.stdout], [], [], timeout)[0]:
                return json.loads(watcher.stdout.readline())
            return None

        try:
            # Once the daemon counts the stream its watch is in place (both
            # happen in one step on the HTTP thread), so the registration
            # below can only reach the watcher as a change.
            self.assertTrue(eventually(lambda: metric(self.d, "lattice_sse_streams") == 1, timeout=10))
            self.assertEqual(cli(self.d, "register", PATH, "--address", "127.0.0.1", "--port", "9001")[0], 0)
            change = next_event()
            self.assertIsNotNone(change)
            self.assertEqual([i["id"] for i in change["providers"]], ["127.0.0.1:9001"])
        finally:
            watcher.kill()
            watcher.wait(5)
            watcher.stdout.close()


if __name__ == "__main__":
    unittest.main()
