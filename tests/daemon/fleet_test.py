"""Fifty latticed on loopback, each gossiping on its own 127.0.0.x address
(CTest daemon.fleet, labels daemon and slow): every daemon sees all fifty
alive; a registration reaches all fifty; five killed at once with SIGKILL
are judged dead by every survivor and their instances hidden, within the
liveness bound plus propagation; a change made after the kill reaches every
survivor. Default liveness settings (probes: SWIM's defaults,
transport/swim.hpp; or with --liveness heartbeats, heartbeat 100 ms, dead
after 700 ms; CTest daemon.fleet_heartbeats).

Prints one JSON line of figures: the spread of a registration and of a
config change and the time until every survivor judged all five dead (each
wait is a bounded poll; the figures are reported, never asserted). With
--measure SECONDS it is also a benchmark: over a quiet window of that
length, gossip bytes sent per second and CPU per daemon (CTest runs it
without).

    LATTICED=build/apps/latticed /usr/bin/python3 tests/daemon/fleet_test.py [--daemons 50] [--measure 5] [--liveness probes]
"""
import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from harness import eventually, start_exact  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class Fleet:
    def __init__(self, count, extra_args=()):
        self.extra_args = list(extra_args)
        self.dir = tempfile.mkdtemp(prefix="lattice-fleet-")
        self.procs = []  # (proc, http, gossip, id)
        try:
            for i in range(count):
                seeds = [self.procs[0][2]] if self.procs else []
                self.procs.append(self.start(i, seeds))
        except BaseException:
            self.stop()
            raise

    def start(self, i, seeds):
        # 127.0.0.2 .. 127.0.0.51: one address per daemon, as hosts would have.
        args = ["--gossip", "127.0.0.%d:0" % (i + 2), "--http", "127.0.0.1:0", "--dns", "off",
                "--data-dir", os.path.join(self.dir, str(i)), "--fsync", "never", "--log-level", "warn"]
        args += self.extra_args
        if seeds:
            args += ["--seeds", ",".join(seeds)]
        with open(os.path.join(self.dir, "%d.log" % i), "w") as log:  # a pipe nobody reads would fill
            proc, fields = start_exact(args, stderr=log, timeout=15)
        return proc, fields["http"], fields["gossip"], fields["id"]

    def stop(self):
        for proc, *_ in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def get(http, path):
    try:
        with urllib.request.urlopen("http://%s%s" % (http, path), timeout=10) as res:
            body = res.read()
            return res.status, json.loads(body) if body[:1] in (b"{", b"[") else body.decode()
    except urllib.error.HTTPError as e:
        return e.code, None


def put(http, path, body):
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    req = urllib.request.Request("http://%s%s" % (http, path), data=data, method="PUT")
    with urllib.request.urlopen(req, timeout=10) as res:
        return res.status


def wait(what, check, limit):
    """Polls check() until it holds (harness.eventually); the seconds it
    took. Fails past `limit`."""
    start = time.monotonic()
    if not eventually(check, timeout=limit, interval=0.005):
        raise AssertionError("%s: not within %.0f s" % (what, limit))
    return time.monotonic() - start


def providers(http, path):
    status, body = get(http, "/v1/lattice/instances" + path)
    return sorted(p["id"] for p in body["providers"]) if status == 200 else []


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def open_sockets(pid):
    """Sockets the process holds (gossip connections in and out, its
    listeners, the HTTP connection polling it)."""
    count = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            count += os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:")
        except OSError:
            pass
    return count


def gossip_bytes(http):
    _, text = get(http, "/metrics")
    return sum(float(v) for v in re.findall(r"^lattice_gossip_bytes_sent_total\{[^}]*\} (\S+)$", text, re.M))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--daemons", type=int, default=50)
    parser.add_argument("--victims", type=int, default=5)
    parser.add_argument("--measure", type=float, default=0,
                        help="seconds of quiet to measure gossip bytes and CPU per daemon over (0: none)")
    parser.add_argument("--liveness", choices=["heartbeats", "probes"], default="probes",
                        help="latticed --liveness for every daemon")
    parser.add_argument("--datagrams", choices=["on", "off"], default="on",
                        help="latticed --datagrams for every daemon (probes by UDP or TCP)")
    args = parser.parse_args()
    n = args.daemons
    fleet = Fleet(n, ["--liveness", args.liveness, "--datagrams", args.datagrams])
    figures = {"daemons": n, "liveness": args.liveness, "datagrams": args.datagrams}
    try:
        https = [p[1] for p in fleet.procs]
        ids = {p[3] for p in fleet.procs}
        figures["all_alive_s"] = round(wait("every daemon sees all %d alive" % n, lambda: all(
            {m["id"] for m in get(h, "/v1/lattice/members")[1] if m["state"] == "alive"} == ids for h in https), 120), 2)

        if args.measure > 0:
            # The benchmark: a quiet window, gossip bytes and CPU per daemon.
            before = [(gossip_bytes(h), cpu_seconds(p[0].pid)) for h, p in zip(https, fleet.procs)]
            started = time.monotonic()
            time.sleep(args.measure)  # the window measured, not a synchronization
            elapsed = time.monotonic() - started
            after = [(gossip_bytes(h), cpu_seconds(p[0].pid)) for h, p in zip(https, fleet.procs)]
            rates = sorted((a[0] - b[0]) / elapsed for a, b in zip(after, before))
            cpus = sorted((a[1] - b[1]) / elapsed for a, b in zip(after, before))
            figures["quiet_gossip_bytes_per_s_per_daemon"] = {"median": round(rates[n // 2]),
                                                              "max": round(rates[-1])}
            figures["quiet_cpu_percent_per_daemon"] = {"median": round(100 * cpus[n // 2], 1),
                                                       "max": round(100 * cpus[-1], 1),
                                                       "sum": round(100 * sum(cpus), 1)}
            sockets = sorted(open_sockets(p[0].pid) for p in fleet.procs)
            figures["open_sockets_per_daemon"] = {"median": sockets[n // 2], "max": sockets[-1]}

        # A registration on one daemon reaches all of them.
        survivor_http = https[0]
        assert put(survivor_http, "/v1/lattice/instances/fleet/stay", {"id": "stay", "address": "10.0.0.1",
                                                                       "port": 80}) == 200
        figures["registration_everywhere_s"] = round(wait("a registration reaching all daemons", lambda: all(
            providers(h, "/fleet/stay") == ["stay"] for h in https), 30), 3)

        # Each victim registers an instance of its own, seen everywhere.
        victims = fleet.procs[-args.victims:]
        for k, (_, http, _, _) in enumerate(victims):
            assert put(http, "/v1/lattice/instances/fleet/victims", {"id": "v%d" % k, "address": "10.0.1.%d" % k,
                                                                     "port": 80}) == 200
        expected = sorted("v%d" % k for k in range(len(victims)))
        wait("the victims' instances everywhere", lambda: all(
            providers(h, "/fleet/victims") == expected for h in https), 30)

        # Five killed at once.
        victim_ids = {v[3] for v in victims}
        survivors = https[:n - len(victims)]
        for proc, *_ in victims:
            proc.kill()
        killed = time.monotonic()
        for proc, *_ in victims:
            proc.wait(5)

        def all_dead_everywhere():
            for h in survivors:
                states = {m["id"]: m["state"] for m in get(h, "/v1/lattice/members")[1]}
                if any(states.get(v) != "dead" for v in victim_ids):
                    return False
            return True
        wait("every survivor judging all victims dead", all_dead_everywhere, 10)
        figures["kill_seen_dead_everywhere_s"] = round(time.monotonic() - killed, 3)
        wait("the victims' instances hidden everywhere", lambda: all(
            providers(h, "/fleet/victims") == [] for h in survivors), 10)
        figures["victims_hidden_everywhere_s"] = round(time.monotonic() - killed, 3)

        # A change after the kill reaches every survivor.
        assert put(survivors[1], "/v1/lattice/config/fleet/after-kill", "yes") == 200
        changed = time.monotonic()
        wait("a config change reaching every survivor", lambda: all(
            get(h, "/v1/lattice/config/fleet/after-kill")[0] == 200 for h in survivors), 30)
        figures["config_change_everywhere_s"] = round(time.monotonic() - changed, 3)
        # The survivor's instance is still listed everywhere.
        assert all(providers(h, "/fleet/stay") == ["stay"] for h in survivors)
        if args.liveness == "probes":
            # Every survivor probed, and its detector judged some victim
            # dead itself or took the verdict from gossip.
            for h in survivors:
                _, text = get(h, "/metrics")
                probes = re.search(r"^lattice_probes_total (\d+)$", text, re.M)
                assert probes and int(probes.group(1)) > 0, "no probes counted on %s" % h
                assert re.search(r"^lattice_local_health \d+$", text, re.M), "no local health on %s" % h
                # The probes went by UDP (--datagrams on), both ways.
                for outcome in ("sent", "received"):
                    found = re.search(r'^lattice_gossip_datagrams_total\{outcome="%s"\} (\d+)$' % outcome, text, re.M)
                    count = int(found.group(1)) if found else 0
                    assert (count > 0) == (args.datagrams == "on"), "%d datagrams %s on %s" % (count, outcome, h)
    finally:
        fleet.stop()
    print(json.dumps(figures))
    print("fleet test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
