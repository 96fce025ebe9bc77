#!/usr/bin/env python3
"""The README's main job: a live Lattice cluster on loopback, narrated.

Starts three latticed replicas, two HelloWorldService providers and a
consumer (examples/hello_world: each embeds its own replica and joins the
same cluster), then shows registration, discovery on every replica, a
provider killed with SIGKILL and removed everywhere, a config change
reaching every watcher, and a graceful shutdown. Ends with the measured
times, stops everything it started (by PID), and exits 0; any step that
does not happen within its bound makes it exit 1 and say which.

    scripts/demo.py [--build build] [--keep [--cycles N]]

It prints the web console's URL (latticed 1's /ui/). With --keep, the
cluster stays up after the scripted steps, until Ctrl-C, and every few
seconds something happens to watch in the console: a provider is killed
and replaced, latticed 3 is cut off by a partition while both sides take
writes, and the partition heals. Ctrl-C stops everything it started.
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

T0 = time.monotonic()
PATH = "/HelloWorldService/1.0.0"


def say(message):
    print("[%6.2fs] %s" % (time.monotonic() - T0, message), flush=True)


class Failure(Exception):
    pass


def get(http, path, timeout=5):
    with urllib.request.urlopen("http://%s%s" % (http, path), timeout=timeout) as res:
        return json.loads(res.read())


def put(http, path, body):
    req = urllib.request.Request("http://%s%s" % (http, path), data=body.encode(), method="PUT")
    with urllib.request.urlopen(req, timeout=5) as res:
        return json.loads(res.read())


def delete(http, path):
    req = urllib.request.Request("http://%s%s" % (http, path), method="DELETE")
    with urllib.request.urlopen(req, timeout=5) as res:
        return json.loads(res.read())


def config_value(http, key):
    try:
        return get(http, "/v1/lattice/config" + key)["value"]
    except Exception:
        return None


def providers(http):
    try:
        return sorted(i["id"] for i in get(http, "/v1/lattice/instances" + PATH)["providers"])
    except Exception:
        return []


def wait_for(what, check, limit):
    """Polls check() every 10 ms; returns the seconds it took, or raises."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if check():
            return time.monotonic() - start
        time.sleep(0.01)
    raise Failure("%s did not happen within %.0f s" % (what, limit))


class Processes:
    """Everything the demo starts, stopped by PID at the end."""

    def __init__(self):
        self.procs = []

    def start(self, name, args, ready_prefix):
        """Starts a process; returns it, its ready line, and the list its
        later stdout lines are appended to (by a reader thread)."""
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.procs.append((name, proc))
        lines = []
        threading.Thread(target=lambda: [lines.append(l.rstrip()) for l in proc.stdout], daemon=True).start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            ready = [l for l in lines if l.startswith(ready_prefix)]
            if ready:
                return proc, ready[0], lines
            time.sleep(0.01)
        raise Failure("%s did not start" % name)

    def stop_all(self):
        for name, proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)


def watch_config(http, prefix, seen, name):
    """Reads a latticed SSE config watch, recording (time, key, value)."""
    host, port = http.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=30)
    sock.sendall(("GET /v1/lattice/watch%s?config HTTP/1.1\r\nHost: demo\r\n\r\n" % prefix).encode())

    def run():
        buffer = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    for line in block.decode().split("\n"):
                        if line.startswith("data: "):
                            data = json.loads(line[6:])
                            seen.append((time.monotonic(), name, data["key"], data["value"]))
        except OSError:
            return

    threading.Thread(target=run, daemon=True).start()
    return sock


def keep_running(args, procs, daemons, provider_procs, hello):
    """--keep: the cluster stays up; a provider is killed and replaced, and
    latticed 3 is partitioned and healed, in turn, until Ctrl-C (or
    --cycles cycles). The pauses are for a human watching the console."""
    pause = args.pause
    say("the cluster stays up: open the console at http://%s/ui/ ; Ctrl-C stops everything" % daemons[0]["http"])
    cycle = 0
    while args.cycles == 0 or cycle < args.cycles:
        cycle += 1
        time.sleep(pause)
        victim_proc, victim = provider_procs.pop(0)
        say("cycle %d: kill -9 provider %s; watch it turn dead and leave the Services table" % (cycle, victim))
        killed_at = time.monotonic()
        victim_proc.kill()
        victim_proc.wait(5)
        remaining = sorted(p[1] for p in provider_procs)
        wait_for("the killed provider disappearing", lambda: all(providers(d["http"]) == remaining for d in daemons), 10)
        say("  gone from every latticed after %.0f ms" % ((time.monotonic() - killed_at) * 1000))
        time.sleep(pause)
        proc, line, _ = procs.start("provider", [hello, "provider", "--seeds", daemons[0]["gossip"]], "provider ready")
        provider_procs.append((proc, line.split("id=")[1]))
        wanted = sorted(p[1] for p in provider_procs)
        wait_for("the new provider listed", lambda: all(providers(d["http"]) == wanted for d in daemons), 10)
        say("  a new provider %s is listed everywhere" % provider_procs[-1][1])

        time.sleep(pause)
        cut, rest = daemons[2], daemons[:2]
        say("cycle %d: partition: latticed 3 and latticed 1-2 drop their gossip to each other; both sides take writes"
            % cycle)
        everyone = [m["address"] for m in get(cut["http"], "/v1/lattice/members") if not m["self"]]
        put(cut["http"], "/v1/lattice/test/partition", json.dumps({"drop": everyone}))
        for d in rest:
            put(d["http"], "/v1/lattice/test/partition", json.dumps({"drop": [cut["gossip"]]}))
        stamp = time.strftime("%H:%M:%S")
        keys_written = ["/demo/partition/written-on-3", "/demo/partition/written-on-1"]
        put(cut["http"], "/v1/lattice/config/demo/partition/written-on-3", stamp)
        put(rest[0]["http"], "/v1/lattice/config/demo/partition/written-on-1", stamp)
        wait_for("latticed 1 judging latticed 3 dead",
                 lambda: any(m["address"] == cut["gossip"] and m["state"] == "dead"
                             for m in get(rest[0]["http"], "/v1/lattice/members")), 10)
        say("  latticed 1 judges latticed 3 dead; written-on-3 is on latticed 1: %s, written-on-1 is on latticed 3: %s"
            % (config_value(rest[0]["http"], keys_written[0]) is not None,
               config_value(cut["http"], keys_written[1]) is not None))
        time.sleep(pause)
        healed_at = time.monotonic()
        for d in daemons:
            delete(d["http"], "/v1/lattice/test/partition")
        wait_for("the partition healing",
                 lambda: all(config_value(d["http"], k) == stamp for d in daemons for k in keys_written), 10)
        say("cycle %d: healed: every latticed holds both writes %.0f ms later (digests turn 'same' in the console)"
            % (cycle, (time.monotonic() - healed_at) * 1000))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default="build")
    parser.add_argument("--keep", action="store_true",
                        help="leave the cluster running after the demo, with a provider killed and a partition "
                             "healed in turn, until Ctrl-C")
    parser.add_argument("--cycles", type=int, default=0, help="with --keep: stop after this many cycles (0: never)")
    parser.add_argument("--pause", type=float, default=4.0, help="with --keep: seconds between steps")
    args = parser.parse_args()
    latticed = os.path.join(args.build, "apps", "latticed")
    hello = os.path.join(args.build, "examples", "hello_world")
    cli = os.path.join(args.build, "apps", "lattice")
    data = tempfile.mkdtemp(prefix="lattice-demo-")
    procs = Processes()
    summary = {}
    try:
        say("Lattice demo: three latticed replicas, two HelloWorldService providers and a consumer on loopback")
        daemons = []
        for n in range(1, 4):
            seeds = ["--seeds", daemons[0]["gossip"]] if daemons else []
            proc, line, _ = procs.start("latticed %d" % n, [latticed, "--gossip", "127.0.0.1:0", "--http",
                                                         "127.0.0.1:0", "--data-dir", os.path.join(data, str(n)),
                                                         "--log-level", "warn"] + seeds
                                             + (["--test-faults"] if args.keep else []), "latticed ready")
            fields = dict(kv.split("=", 1) for kv in line.split()[2:])
            daemons.append({"proc": proc, "http": fields["http"], "gossip": fields["gossip"], "n": n})
            say("latticed %d up: HTTP %s, gossip %s" % (n, fields["http"], fields["gossip"]))
        took = wait_for("the three replicas seeing each other alive",
                        lambda: all(len([m for m in get(d["http"], "/v1/lattice/members") if m["state"] == "alive"])
                                    == 3 for d in daemons), 10)
        say("all three replicas see each other alive (%.0f ms)" % (took * 1000))
        say("web console: http://%s/ui/ (any latticed serves one)" % daemons[0]["http"])

        say("starting two hello_world providers; each embeds a replica that joins through latticed 1")
        registered_at = time.monotonic()
        provider_procs = []
        for n in range(2):
            proc, line, _ = procs.start("provider %d" % (n + 1), [hello, "provider", "--seeds", daemons[0]["gossip"]],
                                     "provider ready")
            provider_procs.append((proc, line.split("id=")[1]))
            say("provider %s registered %s" % (line.split("id=")[1], PATH))
        ids = sorted(p[1] for p in provider_procs)
        took = wait_for("both providers listed on every latticed",
                        lambda: all(providers(d["http"]) == ids for d in daemons), 10)
        summary["discovery on every replica"] = time.monotonic() - registered_at
        say("every latticed lists both providers (%.0f ms after the first registration)"
            % (summary["discovery on every replica"] * 1000))

        say("starting a consumer (embedded replica joining through latticed 2), calling round-robin")
        consumer, _, consumer_lines = procs.start(
            "consumer", [hello, "consumer", "--seeds", daemons[1]["gossip"], "--calls", "0", "--interval-ms", "200"],
            "[")
        wait_for("the consumer's first answers", lambda: len([l for l in consumer_lines if "hello from" in l]) >= 4, 10)
        for l in [l for l in consumer_lines if "hello from" in l][:4]:
            say("  consumer: %s" % l.split("] ", 1)[-1])

        victim_proc, victim = provider_procs[0]
        say("kill -9 provider %s (no goodbye: the failure detector must notice)" % victim)
        killed_at = time.monotonic()
        victim_proc.kill()
        victim_proc.wait(5)
        survivors = [p[1] for p in provider_procs[1:]]
        wait_for("the killed provider disappearing from every latticed",
                 lambda: all(providers(d["http"]) == survivors for d in daemons), 10)
        summary["SIGKILLed provider removed everywhere"] = time.monotonic() - killed_at
        say("provider %s is gone from all three replicas (%.0f ms after the kill; liveness bound: dead after 700 ms)"
            % (victim, summary["SIGKILLed provider removed everywhere"] * 1000))
        mark = len(consumer_lines)
        wait_for("the consumer answering after the kill",
                 lambda: len([l for l in consumer_lines[mark:] if "hello from" in l]) >= 2, 10)
        failovers = [l for l in consumer_lines if "did not answer" in l]
        say("the consumer kept working (%d call(s) retried on the other provider): %s"
            % (len(failovers), consumer_lines[-1].split("] ", 1)[-1]))

        say("config: watching /config/hello on latticed 2 and 3 (SSE), setting it through latticed 1")
        seen = []
        socks = [watch_config(d["http"], "/config/hello", seen, "latticed %d" % d["n"]) for d in daemons[1:]]
        time.sleep(0.2)
        set_at = time.monotonic()
        put(daemons[0]["http"], "/v1/lattice/config/config/hello/greeting", "bonjour")
        wait_for("the config change reaching both watchers",
                 lambda: {name for _, name, key, value in seen if value == "bonjour"} == {"latticed 2", "latticed 3"},
                 10)
        arrivals = {name: t - set_at for t, name, key, value in seen if value == "bonjour"}
        summary["config change at every watcher"] = max(arrivals.values())
        for name, t in sorted(arrivals.items()):
            say("  %s's watcher got /config/hello/greeting = bonjour after %.1f ms" % (name, t * 1000))
        for s in socks:
            s.close()

        if args.keep:
            keep_running(args, procs, daemons, provider_procs[1:], hello)
            return 0

        say("graceful shutdown: the consumer, the last provider (SIGTERM: deregisters, announces its leave)")
        consumer.send_signal(signal.SIGTERM)
        consumer.wait(10)
        last_proc, last = provider_procs[1]
        stopped_at = time.monotonic()
        last_proc.send_signal(signal.SIGTERM)
        if last_proc.wait(10) != 0:
            raise Failure("provider %s did not exit cleanly" % last)
        wait_for("the stopped provider disappearing from every latticed",
                 lambda: all(providers(d["http"]) == [] for d in daemons), 10)
        summary["gracefully stopped provider removed everywhere"] = time.monotonic() - stopped_at
        say("provider %s removed everywhere %.0f ms after SIGTERM (a leave, not a timeout)"
            % (last, summary["gracefully stopped provider removed everywhere"] * 1000))
        for d in reversed(daemons):
            d["proc"].send_signal(signal.SIGTERM)
            code = d["proc"].wait(10)
            if code != 0:
                raise Failure("latticed %d exited with %s" % (d["n"], code))
        say("latticed 3, 2, 1 stopped with exit code 0")

        print("\nSummary (measured in this run):")
        for what, seconds in summary.items():
            print("  %-48s %7.0f ms" % (what, seconds * 1000))
        print("\nNext things to try:")
        print("  %s --http 127.0.0.1:8500 --data-dir /tmp/lattice-1      # a daemon of your own" % latticed)
        print("  %s services | members | instances %s | watch /HelloWorldService" % (cli, PATH))
        print("  curl -s localhost:8500/v1/catalog/services               # Consul's API; Consul clients work too")
        print("  %s/examples/{api_user,config_center,partition_balancing,partition_heal}" % args.build)
        return 0
    except Failure as e:
        say("FAILED: %s" % e)
        return 1
    except KeyboardInterrupt:
        say("Ctrl-C: stopping everything the demo started")
        return 0
    finally:
        procs.stop_all()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
