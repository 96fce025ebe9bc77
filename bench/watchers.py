#!/usr/bin/python3
"""bench/watchers.py: many watchers on one latticed.

Opens N watchers on one service of one daemon, either SSE streams
(/v1/lattice/watch, optionally ?delta) or Consul blocking queries
(/v1/health/service), changes the service a few times (one instance
re-registered with a new tag, the view holding --instances instances), and
reports, as one JSON object:

  - daemon memory per watcher (VmRSS after the watchers connected minus
    before, divided by N);
  - for each change, from its acknowledgement until each watcher has it:
    the median and the last watcher (max), and the daemon's CPU time spent
    on the change;
  - streams cut off for reading too slowly (none expected: the client reads
    everything).

The daemon runs on CPU 0, this client on CPU 1. One client process holds
every socket, so N is bounded by its open-file limit (raised to the hard
limit; `ulimit -Hn`).

  bench/watchers.py --watchers 10000 --kind sse
  bench/watchers.py --watchers 10000 --kind sse --delta --instances 30
  bench/watchers.py --watchers 10000 --kind blocking
"""
import argparse
import json
import os
import resource
import selectors
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_bytes(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request(port, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method)
    with urllib.request.urlopen(req, timeout=30) as res:
        return res.status, dict(res.headers), res.read()


def metric(port, name):
    _, _, text = request(port, "GET", "/metrics")
    for line in text.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


class Watcher:
    __slots__ = ("sock", "buffer", "version", "heard", "pending")

    def __init__(self, sock):
        self.sock, self.buffer, self.version, self.heard, self.pending = sock, b"", 0, None, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--watchers", type=int, default=10000)
    ap.add_argument("--kind", choices=("sse", "blocking"), default="sse")
    ap.add_argument("--delta", action="store_true", help="SSE streams with ?delta")
    ap.add_argument("--instances", type=int, default=1, help="instances in the watched view")
    ap.add_argument("--changes", type=int, default=5)
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {1})
    latticed = os.environ.get("LATTICED", os.path.join(ROOT, "build", "apps", "latticed"))
    work = tempfile.mkdtemp(prefix="lattice-watchers-")
    ready = open(os.path.join(work, "out"), "wb")
    proc = subprocess.Popen(["taskset", "-c", "0", latticed, "--gossip", "127.0.0.1:0", "--http", "127.0.0.1:0",
                             "--data-dir", work, "--log-level", "warn",
                             "--max-connections", str(args.watchers + 100)],
                            stdout=ready, stderr=open(os.path.join(work, "log"), "wb"))
    try:
        deadline = time.monotonic() + 10
        while b"latticed ready" not in open(os.path.join(work, "out"), "rb").read():
            if time.monotonic() > deadline:
                raise RuntimeError("latticed did not start")
            time.sleep(0.05)
        fields = dict(kv.split("=", 1) for kv in open(os.path.join(work, "out")).read().split()[2:])
        port = int(fields["http"].rsplit(":", 1)[1])
        for n in range(args.instances):
            request(port, "PUT", "/v1/lattice/instances/w", {"address": "127.0.0.1", "port": 20000 + n})
        rss_before = rss_bytes(proc.pid)

        sel = selectors.DefaultSelector()
        watchers = []
        if args.kind == "sse":
            target = "/v1/lattice/watch/w" + ("?delta" if args.delta else "")
        else:
            _, headers, _ = request(port, "GET", "/v1/health/service/w")
            index = int(headers["X-Consul-Index"])
            target = "/v1/health/service/w?index=%d&wait=600s" % index
        started = time.monotonic()
        for _ in range(args.watchers):
            s = socket.create_connection(("127.0.0.1", port))
            s.setblocking(False)
            s.send(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % target).encode())
            w = Watcher(s)
            watchers.append(w)
            sel.register(s, selectors.EVENT_READ, w)

        def pump(until, timeout):
            """Reads until until() or timeout; returns whether until() held."""
            deadline = time.monotonic() + timeout
            while not until():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                for key, _ in sel.select(min(left, 1.0)):
                    w = key.data
                    try:
                        chunk = w.sock.recv(1 << 16)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        sel.unregister(w.sock)
                        continue
                    w.buffer += chunk
                    now = time.perf_counter()
                    if args.kind == "sse":
                        while b"\n\n" in w.buffer:
                            block, w.buffer = w.buffer.split(b"\n\n", 1)
                            for line in block.split(b"\n"):
                                if line.startswith(b"id: "):
                                    w.version = int(line[4:])
                                    w.heard = now
                    else:
                        head, sep, body = w.buffer.partition(b"\r\n\r\n")
                        if not sep:
                            continue
                        length = 0
                        for line in head.split(b"\r\n"):
                            if line.lower().startswith(b"content-length:"):
                                length = int(line.split(b":")[1])
                            if line.lower().startswith(b"x-consul-index:"):
                                w.pending = int(line.split(b":")[1])
                        if len(body) >= length:
                            w.buffer = body[length:]
                            w.version, w.heard = w.pending, now
            return True

        if args.kind == "sse":
            ok = pump(lambda: all(w.version > 0 for w in watchers), 120)
        else:
            ok = pump(lambda: metric(port, "lattice_blocking_queries") == args.watchers, 120)
        if not ok:
            raise RuntimeError("the watchers did not all connect")
        connect_seconds = time.monotonic() - started
        rss_after = rss_bytes(proc.pid)

        changes = []
        for c in range(args.changes):
            cpu0 = cpu_seconds(proc.pid)
            _, headers, body = request(port, "PUT", "/v1/lattice/instances/w",
                                       {"address": "127.0.0.1", "port": 20000, "tags": {"change": str(c)}})
            acked = time.perf_counter()
            version = json.loads(body).get("version")
            _, headers, _ = request(port, "GET", "/v1/lattice/instances/w")
            version = int(headers["X-Lattice-Index"]) if args.kind == "sse" else None
            if args.kind == "sse":
                done = lambda: all(w.version >= version for w in watchers)
            else:
                before = {id(w): w.version for w in watchers}
                done = lambda: all(w.version != before[id(w)] for w in watchers)
            if not pump(done, 120):
                raise RuntimeError("not every watcher heard change %d" % c)
            delays = sorted((w.heard - acked) * 1000 for w in watchers)
            changes.append({"p50_ms": round(delays[len(delays) // 2], 2), "max_ms": round(delays[-1], 2),
                            "daemon_cpu_ms": round((cpu_seconds(proc.pid) - cpu0) * 1000, 1)})
            if args.kind == "blocking":  # ask again from the new index, as a client does
                for w in watchers:
                    w.sock.send(("GET /v1/health/service/w?index=%d&wait=600s HTTP/1.1\r\nHost: x\r\n\r\n"
                                 % w.version).encode())
                if not pump(lambda: metric(port, "lattice_blocking_queries") == args.watchers, 120):
                    raise RuntimeError("the blocking queries did not all wait again")
        out = {"command": " ".join(["bench/watchers.py"] + sys.argv[1:]), "kind": args.kind, "delta": args.delta,
               "watchers": args.watchers, "instances": args.instances, "connect_seconds": round(connect_seconds, 2),
               "daemon_rss_bytes_before": rss_before, "daemon_rss_bytes_after": rss_after,
               "bytes_per_watcher": round((rss_after - rss_before) / args.watchers),
               "changes": changes, "overflows": metric(port, "lattice_sse_overflows_total")}
        print(json.dumps(out))
        for w in watchers:
            w.sock.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
