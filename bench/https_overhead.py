#!/usr/bin/python3
"""bench/https_overhead.py: what HTTPS costs a lookup on latticed's API.

Starts one latticed serving HTTP and one serving HTTPS (a certificate for
127.0.0.1 from a CA made here by openssl), registers 10 instances of "web"
on each through the Consul API, then asks each --requests times for
/v1/health/service/web over one kept-alive connection (one client, one
request in flight: the round trip, not capacity), and times --connections
fresh connections (TCP, plus the TLS handshake for HTTPS) each with one
request.

  bench/https_overhead.py [--requests 2000] [--connections 200]

Prints one JSON object: {"http": {"kept_alive_ms", "new_connection_ms"},
"https": {...}} with p50/p99/max of each. A benchmark, not a test. Needs a
built latticed (LATTICED, default build/apps/latticed) and openssl.
"""
import argparse
import http.client
import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time

from daemons import percentiles, start_daemon, stop_daemons  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_certificates(directory):
    def openssl(*args):
        subprocess.run(["openssl"] + list(args), cwd=directory, check=True, capture_output=True, timeout=30)
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
            "-subj", "/CN=bench-ca", "-keyout", "ca.key", "-out", "ca.pem")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=latticed",
            "-keyout", "server.key", "-out", "server.csr")
    with open(os.path.join(directory, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days",
            "1", "-extfile", "server.ext", "-out", "server.pem")




def connect(address, context):
    host, port = address.rsplit(":", 1)
    if context is None:
        return http.client.HTTPConnection(host, int(port), timeout=10)
    return http.client.HTTPSConnection(host, int(port), timeout=10, context=context)


def ask(conn, method="GET", path="/v1/health/service/web", body=None):
    conn.request(method, path, body=body)
    res = conn.getresponse()
    res.read()
    if res.status != 200:
        raise SystemExit("%s %s: %d" % (method, path, res.status))


def measure(address, context, requests, connections):
    conn = connect(address, context)
    for i in range(10):
        ask(conn, "PUT", "/v1/agent/service/register",
            json.dumps({"Name": "web", "ID": "web-%d" % i, "Address": "127.0.0.1", "Port": 8000 + i}))
    kept = []
    for _ in range(requests):
        start = time.perf_counter()
        ask(conn)
        kept.append((time.perf_counter() - start) * 1000)
    conn.close()
    fresh = []
    for _ in range(connections):
        start = time.perf_counter()
        c = connect(address, context)
        ask(c)
        fresh.append((time.perf_counter() - start) * 1000)
        c.close()
    return {"kept_alive_ms": percentiles(kept), "new_connection_ms": percentiles(fresh)}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=200)
    args = parser.parse_args()
    latticed = os.environ.get("LATTICED", os.path.join(ROOT, "build/apps/latticed"))
    certs = tempfile.mkdtemp(prefix="lattice-https-bench-")
    daemons = []
    try:
        make_certificates(certs)
        daemons.append(start_daemon(latticed))
        daemons.append(start_daemon(latticed, extra=["--https-cert", os.path.join(certs, "server.pem"),
                                                     "--https-key", os.path.join(certs, "server.key")]))
        context = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
        result = {"http": measure(daemons[0][2]["http"], None, args.requests, args.connections),
                  "https": measure(daemons[1][2]["http"], context, args.requests, args.connections)}
        print(json.dumps(result))
    finally:
        stop_daemons(daemons)
        shutil.rmtree(certs, ignore_errors=True)


if __name__ == "__main__":
    main()
