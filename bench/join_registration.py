#!/usr/bin/python3
"""bench/join_registration.py: how long a new replica's first registration
takes to be listed by the rest of the cluster.

Starts three latticed on loopback (b and c join through a). Each round
starts a fourth, seeded with a alone, registers an instance through it the
moment it prints its ready line, and times from the registration's
acknowledgement until a, b and c all list the instance (each polled in
turn, about 0.3 ms a poll); then stops the fourth with SIGTERM (it leaves)
and waits until none lists it.

  bench/join_registration.py [--rounds 20] [--latticed build/apps/latticed]

Prints one JSON object: {"rounds", "listed_everywhere_ms": {p50, p99, min,
max, samples}}. A benchmark, not a test.
"""
import argparse
import json
import os
import time

from daemons import percentiles, request, start_daemon, stop_daemons  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def listed(http, path):
    status, _, body = request(http, "GET", "/v1/lattice/instances" + path)
    return status == 200 and len(body["providers"]) == 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--latticed", default=os.environ.get("LATTICED", os.path.join(ROOT, "build/apps/latticed")))
    args = parser.parse_args()
    cluster = [start_daemon(args.latticed)]
    seed = cluster[0][2]["gossip"]
    cluster += [start_daemon(args.latticed, seeds=seed) for _ in range(2)]
    https = [d[2]["http"] for d in cluster]
    samples = []
    try:
        deadline = time.monotonic() + 10
        while not all(len([m for m in request(h, "GET", "/v1/lattice/members")[2] if m["state"] == "alive"]) == 3
                      for h in https):
            if time.monotonic() > deadline:
                raise SystemExit("the three daemons did not see each other")
            time.sleep(0.01)
        for round_no in range(args.rounds):
            path = "/bench/join/%d" % round_no
            joiner = start_daemon(args.latticed, seeds=seed)
            try:
                status, _, _ = request(joiner[2]["http"], "PUT", "/v1/lattice/instances" + path,
                                       {"address": "10.0.0.9", "port": 80})
                acknowledged = time.monotonic()
                if status != 200:
                    raise SystemExit("registration refused: %d" % status)
                waiting = set(https)
                while waiting:
                    if time.monotonic() - acknowledged > 10:
                        raise SystemExit("round %d: not listed everywhere within 10 s" % round_no)
                    waiting = {h for h in waiting if not listed(h, path)}
                samples.append((time.monotonic() - acknowledged) * 1000)
            finally:
                stop_daemons([joiner])
            deadline = time.monotonic() + 10
            while any(listed(h, path) for h in https) and time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        stop_daemons(cluster)
    print(json.dumps({"rounds": args.rounds, "listed_everywhere_ms": percentiles(samples, 1)}))


if __name__ == "__main__":
    main()
