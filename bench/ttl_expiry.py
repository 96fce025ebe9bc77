#!/usr/bin/python3
"""bench/ttl_expiry.py: how late a Consul TTL check goes critical.

Starts one latticed on loopback, registers a service with a TTL check
through the Consul API, and repeatedly passes the check and waits (a
blocking health query with ?passing) until the service is no longer
passing. Lateness is the time from the pass's acknowledgement to the
blocking query's answer, minus the TTL: it includes the expiry, the write
of the critical status, its publication, the wake of the blocking query and
its answer over loopback.

  bench/ttl_expiry.py [--rounds 20] [--ttl-ms 500]

Prints one JSON object: {"ttl_ms", "rounds", "late_ms": {"p50", "p99", "max", "min"}, "samples_ms": [...]}.
A benchmark, not a test. Needs a built latticed (LATTICED, default
build/apps/latticed).
"""
import argparse
import json
import os
import time

from daemons import request, start_daemon, stop_daemons  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--ttl-ms", type=int, default=500)
    args = parser.parse_args()
    latticed = os.environ.get("LATTICED", os.path.join(ROOT, "build/apps/latticed"))
    daemons = [start_daemon(latticed)]
    try:
        http = daemons[0][2]["http"]
        request(http, "PUT", "/v1/agent/service/register",
                {"Name": "ttl", "ID": "ttl-1", "Port": 1, "Check": {"TTL": "%dms" % args.ttl_ms}})
        samples = []
        for _ in range(args.rounds):
            request(http, "PUT", "/v1/agent/check/pass/service:ttl-1")
            passed = time.monotonic()
            index = "0"
            for _ in range(100):  # bounded: each answer is a change or the wait's end
                _, headers, passing = request(http, "GET", "/v1/health/service/ttl?passing&wait=10s&index=" + index)
                if not passing:
                    break
                index = headers["X-Consul-Index"]
            samples.append((time.monotonic() - passed) * 1000 - args.ttl_ms)
        ordered = sorted(samples)
        pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)
        print(json.dumps({"ttl_ms": args.ttl_ms, "rounds": args.rounds,
                          "late_ms": {"p50": pick(0.5), "p99": pick(0.99), "max": round(ordered[-1], 2),
                                      "min": round(ordered[0], 2)},
                          "samples_ms": [round(s, 2) for s in samples]}))
    finally:
        stop_daemons(daemons)

if __name__ == "__main__":
    main()
