#!/usr/bin/python3
"""bench/session_end.py: how long a session's registration outlives its client.

Starts three latticed on loopback (b and c join through a) and, each round:
  "kill": runs `lattice register --session` against a, waits until b and c
  list the instance, SIGKILLs the CLI and times until a blocking query on
  each of b and c answers without it (the connection drop ends the session);
  "ttl": creates a session with a TTL on a, registers under it, renews it
  once and then stops, and times from that renewal's answer until b and c
  no longer list it, minus the TTL (how late after the TTL it goes).

  bench/session_end.py [--rounds 10] [--ttl 1s]

Prints one JSON object: {"rounds", "ttl", "kill_ms": {...}, "ttl_late_ms":
{...}}, each with p50/max/min over both remote daemons. A benchmark, not a
test. Needs built binaries (LATTICED, LATTICE_CLI; default build/apps/).
"""
import argparse
import json
import os
import subprocess
import threading
import time

from daemons import percentiles, request, start_daemon, stop_daemons  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATH = "/bench/session"




def wait_listed(http_address, instance_id, want, limit=30):
    """Blocks (bounded) until the path lists `instance_id` (want=True) or not; returns when."""
    index = "0"
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        status, headers, view = request(http_address, "GET", "/v1/lattice/instances%s?index=%s&wait=10s" % (PATH, index))
        listed = status == 200 and any(p["id"] == instance_id for p in view["providers"])
        if listed == want:
            return time.monotonic()
        index = headers.get("X-Lattice-Index", "0")
    raise SystemExit("no answer within %ds" % limit)


def timed_removal(remote, instance_id, start_event):
    """Starts blocking queries on every remote daemon; returns a function
    that, given the moment the end began, joins them and gives the delays."""
    times = {}

    def watch(d):
        times[d] = wait_listed(d, instance_id, False)

    threads = [threading.Thread(target=watch, args=(d,)) for d in remote]
    for t in threads:
        t.start()
    time.sleep(0.05)  # let the queries arrive (their answers are what is timed)
    began = start_event()
    for t in threads:
        t.join(60)
    return [(times[d] - began) * 1000 for d in remote]




def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--ttl", default="1s")
    args = parser.parse_args()
    latticed = os.environ.get("LATTICED", os.path.join(ROOT, "build/apps/latticed"))
    cli = os.environ.get("LATTICE_CLI", os.path.join(ROOT, "build/apps/lattice"))
    ttl_ms = int(args.ttl[:-2]) if args.ttl.endswith("ms") else int(float(args.ttl[:-1]) * 1000)
    daemons = []
    try:
        daemons.append(start_daemon(latticed))
        for _ in range(2):
            daemons.append(start_daemon(latticed, seeds=daemons[0][2]["gossip"]))
        a, remote = daemons[0][2]["http"], [d[2]["http"] for d in daemons[1:]]
        kill, late = [], []
        for round_ in range(args.rounds):
            port = 20000 + round_
            instance_id = "127.0.0.1:%d" % port
            client = subprocess.Popen([cli, "--addr", a, "register", PATH, "--address", "127.0.0.1", "--port",
                                       str(port), "--session"], stdout=subprocess.PIPE, text=True)
            client.stdout.readline()  # "registered ..."
            for d in remote:
                wait_listed(d, instance_id, True)

            def kill_client():
                client.kill()
                return time.monotonic()

            kill += timed_removal(remote, instance_id, kill_client)
            client.wait(5)
            client.stdout.close()

            instance_id = "127.0.0.1:%d" % (port + 1000)
            _, _, session = request(a, "POST", "/v1/lattice/sessions", {"ttl": args.ttl})
            request(a, "PUT", "/v1/lattice/instances%s?session=%s" % (PATH, session["id"]),
                    {"address": "127.0.0.1", "port": port + 1000})
            for d in remote:
                wait_listed(d, instance_id, True)

            def last_renewal():
                request(a, "PUT", "/v1/lattice/sessions/%s/renew" % session["id"])
                return time.monotonic()

            late += [t - ttl_ms for t in timed_removal(remote, instance_id, last_renewal)]
        print(json.dumps({"rounds": args.rounds, "ttl": args.ttl, "kill_ms": percentiles(kill),
                          "ttl_late_ms": percentiles(late)}))
    finally:
        stop_daemons(daemons)


if __name__ == "__main__":
    main()
