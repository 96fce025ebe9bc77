#!/usr/bin/python3
"""bench/check_to_critical.py: how long until a failing provider is critical at every daemon.

Starts three latticed on loopback (b and c join through a) and a provider's
HTTP endpoint, registers the provider on a with an HTTP check (Interval
1s, Timeout 1s by default), and each round: lets the endpoint answer 200
until every daemon lists the service as passing, then makes it fail and
times, from that moment, until a blocking health query with ?passing on
each of b and c answers without it. Two kinds of failure alternate:
"error" (the endpoint answers 500: caught at the next probe, so within one
interval plus the probe and propagation) and "hang" (the endpoint stops
answering: caught when the probe's Timeout passes, so within interval +
timeout + propagation).

  bench/check_to_critical.py [--rounds 10] [--interval 1s] [--timeout 1s]

Prints one JSON object: {"interval", "timeout", "rounds", "error": {...},
"hang": {...}}, each with p50/max/min in ms over both remote daemons and
"bound_ms" (interval + timeout). A benchmark, not a test. Needs a built
latticed (LATTICED, default build/apps/latticed).
"""
import argparse
import http.server
import json
import os
import threading
import time

from daemons import percentiles, request, start_daemon, stop_daemons  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Endpoint:
    def __init__(self):
        self.mode = "ok"
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                mode = endpoint.mode
                if mode == "hang":
                    time.sleep(5)
                code = 200 if mode == "ok" else 500
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()



def wait_passing(http_address, want, limit=30):
    """Blocks (bounded) until the service's ?passing answer is non-empty (want=True) or empty."""
    index = "0"
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        _, headers, passing = request(http_address, "GET", "/v1/health/service/web?passing&wait=10s&index=" + index)
        if bool(passing) == want:
            return time.monotonic()
        index = headers["X-Consul-Index"]
    raise SystemExit("no answer within %ds" % limit)




def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--interval", default="1s")
    parser.add_argument("--timeout", default="1s")
    args = parser.parse_args()
    latticed = os.environ.get("LATTICED", os.path.join(ROOT, "build/apps/latticed"))
    endpoint = Endpoint()
    daemons = []
    try:
        daemons.append(start_daemon(latticed))
        for _ in range(2):
            daemons.append(start_daemon(latticed, seeds=daemons[0][2]["gossip"]))
        a, remote = daemons[0][2]["http"], [d[2]["http"] for d in daemons[1:]]
        request(a, "PUT", "/v1/agent/service/register",
                {"Name": "web", "ID": "web-1", "Port": endpoint.port,
                 "Check": {"HTTP": "http://127.0.0.1:%d/health" % endpoint.port, "Interval": args.interval,
                           "Timeout": args.timeout}})
        results = {"error": [], "hang": []}
        for round_ in range(args.rounds):
            endpoint.mode = "ok"
            for d in remote:
                wait_passing(d, True)
            kind = "error" if round_ % 2 == 0 else "hang"
            times = {}

            def watch(d):
                times[d] = wait_passing(d, False)

            watchers = [threading.Thread(target=watch, args=(d,)) for d in remote]
            for w in watchers:
                w.start()
            time.sleep(0.05)  # let the blocking queries arrive (their answer is what is timed, not this)
            failed = time.monotonic()
            endpoint.mode = kind
            for w in watchers:
                w.join(60)
            results[kind] += [(times[d] - failed) * 1000 for d in remote]
        to_ms = lambda text: int(text[:-2]) if text.endswith("ms") else int(float(text[:-1]) * 1000)
        interval_ms, timeout_ms = to_ms(args.interval), to_ms(args.timeout)
        print(json.dumps({"interval": args.interval, "timeout": args.timeout, "rounds": args.rounds,
                          "error": dict(percentiles(results["error"], 1), bound_ms=interval_ms + timeout_ms),
                          "hang": dict(percentiles(results["hang"], 1), bound_ms=interval_ms + timeout_ms)}))
    finally:
        endpoint.mode = "ok"
        stop_daemons(daemons)
        endpoint.server.shutdown()


if __name__ == "__main__":
    main()
