#!/usr/bin/env python3
"""The README's main job: a live Lattice cluster on loopback, narrated.

Starts three latticed replicas, two HelloWorldService providers and a
consumer (examples/hello_world: each embeds its own replica and joins the
same cluster), then shows registration, discovery on every replica, a
provider killed with SIGKILL and removed everywhere, a config change
reaching every watcher, and a graceful shutdown. Ends with the measured
times, stops everything it started (by PID), and exits 0; any step that
does not happen within its bound makes it exit 1 and say which.

    scripts/demo.py [--build build]
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", default="build")
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
                                                         "--log-level", "warn"] + seeds, "latticed ready")
            fields = dict(kv.split("=", 1) for kv in line.split()[2:])
            daemons.append({"proc": proc, "http": fields["http"], "gossip": fields["gossip"], "n": n})
            say("latticed %d up: HTTP %s, gossip %s" % (n, fields["http"], fields["gossip"]))
        took = wait_for("the three replicas seeing each other alive",
                        lambda: all(len([m for m in get(d["http"], "/v1/lattice/members") if m["state"] == "alive"])
                                    == 3 for d in daemons), 10)
        say("all three replicas see each other alive (%.0f ms)" % (took * 1000))

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
    finally:
        procs.stop_all()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
