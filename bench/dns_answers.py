#!/usr/bin/python3
"""bench/dns_answers.py: how fast latticed's DNS interface answers, and how soon it lists a new instance.

Starts two latticed on loopback (b joins through a), registers 10
instances of "web" on a through the Consul API, then:
  latency: --queries sequential A queries for web.service.consul over UDP
  to b (one client, one outstanding query: the round trip, not capacity);
  propagation: --rounds times, registers one more instance on a and times
  from the registration's acknowledgement until an A query to b lists its
  address (b asked every millisecond).

  bench/dns_answers.py [--queries 2000] [--rounds 20]

Prints one JSON object: {"latency_ms": {p50, p99, max}, "queries_per_s",
"propagation_ms": {p50, p99, max}}. A benchmark, not a test. Needs a built
latticed (LATTICED, default build/apps/latticed) and dnspython.
"""
import argparse
import json
import os
import time

import dns.message
import dns.query
import dns.rdatatype

from daemons import percentiles, request, start_daemon, stop_daemons  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



def addresses(dns_address, name="web.service.consul"):
    host, port = dns_address.rsplit(":", 1)
    answer = dns.query.udp(dns.message.make_query(name, dns.rdatatype.A), host, port=int(port), timeout=2)
    return {r.address for rrset in answer.answer for r in rrset}




def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    latticed = os.environ.get("LATTICED", os.path.join(ROOT, "build/apps/latticed"))
    daemons = []
    try:
        daemons.append(start_daemon(latticed))
        daemons.append(start_daemon(latticed, seeds=daemons[0][2]["gossip"]))
        a, b = daemons[0][2], daemons[1][2]
        for n in range(1, 11):
            request(a["http"], "PUT", "/v1/agent/service/register",
                    {"Name": "web", "ID": "web-%d" % n, "Address": "10.0.0.%d" % n, "Port": 8000 + n})
        deadline = time.monotonic() + 10
        while len(addresses(b["dns"])) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        latency = []
        started = time.monotonic()
        for _ in range(args.queries):
            t = time.monotonic()
            got = addresses(b["dns"])
            latency.append((time.monotonic() - t) * 1000)
            assert len(got) == 10, got
        rate = args.queries / (time.monotonic() - started)
        propagation = []
        for n in range(args.rounds):
            address = "10.0.1.%d" % (n + 1)
            request(a["http"], "PUT", "/v1/agent/service/register",
                    {"Name": "web", "ID": "new-%d" % n, "Address": address, "Port": 9000 + n})
            acked = time.monotonic()
            for _ in range(10000):  # bounded: 10 s at most
                if address in addresses(b["dns"]):
                    break
                time.sleep(0.001)
            propagation.append((time.monotonic() - acked) * 1000)
        print(json.dumps({"latency_ms": percentiles(latency), "queries_per_s": round(rate),
                          "propagation_ms": percentiles(propagation)}))
    finally:
        stop_daemons(daemons)


if __name__ == "__main__":
    main()
