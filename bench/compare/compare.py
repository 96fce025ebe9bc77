#!/usr/bin/python3
"""bench/compare/compare.py: latticed, etcd and ZooKeeper side by side.

Starts each system on loopback as a three-member cluster, one system at a
time, all members pinned to CPU 0 and every client (this script, wrk) to
CPU 1, and measures the same workloads against each:

  propagation   a write on member A until a watcher on member B hears of it
                (latticed: one instance re-registered with a new tag, heard
                by an SSE stream and a Consul blocking query; etcd: a put,
                heard by a watch; ZooKeeper: a create, heard by an exists
                watch), from the request's start and from its
                acknowledgement; one write at a time
  detection     SIGKILL of a registrant until member B drops its entry
                (latticed: a fourth daemon's instance; etcd: a key on a lease
                kept alive by `etcdctl lease keep-alive`; ZooKeeper: an
                ephemeral node of a client session)
  lookups       wrk -t1 -c32 against one member (latticed native and Consul
                health; etcd's serializable range through its HTTP gateway;
                ZooKeeper has no HTTP API and is left out)
  registrations durable writes with 1 and 64 in flight (latticed: PUT
                /v1/lattice/instances with wrk; etcd: /v3/kv/put with wrk;
                ZooKeeper: kazoo's create_async, a window of 1 or 64)

Writes one JSON file and PNG plots into --out (default
bench/compare/results). A benchmark, not a test: `--smoke` runs every
workload briefly, and CI only checks that it completes.

  bench/compare/compare.py                       # full run, ~10 minutes
  bench/compare/compare.py --smoke --out /tmp/x  # CI smoke, ~1 minute
  bench/compare/compare.py --systems latticed    # one system

Needs (Debian 12): etcd-server, etcd-client, zookeeperd, python3-kazoo,
python3-matplotlib, wrk, and a built latticed (LATTICED, default
build/apps/latticed). scripts/install-deps.sh installs them.
"""
import argparse
import base64
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER_CPU = "0"
CLIENT_CPU = "1"


# ---- helpers ------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise RuntimeError("timed out waiting for " + what)


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def pin_self():
    os.sched_setaffinity(0, {int(CLIENT_CPU)})


class Process:
    """A child process pinned to the server CPU, stopped by its PID."""

    def __init__(self, cmd, log, cpu=SERVER_CPU, stdout=None):
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(["taskset", "-c", cpu] + cmd, stdout=stdout or self.log,
                                     stderr=self.log, start_new_session=True)

    def kill9(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill9()
        self.log.close()


def http_request(port, method, path, body=None, timeout=10):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as res:
        return res.status, dict(res.headers), res.read()


def b64(text):
    return base64.b64encode(text.encode()).decode()


def summary(samples):
    if not samples:
        return {"n": 0}
    s = sorted(samples)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))]
    return {"n": len(s), "p50_ms": round(pick(0.5), 3), "p99_ms": round(pick(0.99), 3),
            "mean_ms": round(statistics.fmean(s), 3), "min_ms": round(s[0], 3), "max_ms": round(s[-1], 3)}


def sample(started, acked, heard):
    """One propagation sample, in ms: from the write's start (request sent) and
    from its acknowledgement. The second can be negative: B may hear of a write
    before A's client has the reply (latticed gossips before its fsync; a
    ZooKeeper or etcd follower may apply before the reply reaches the client)."""
    return {"from_start_ms": (heard - started) * 1000, "from_ack_ms": (heard - acked) * 1000}


def run_wrk(url, seconds, connections, script=None):
    """Requests/s and latency percentiles from wrk -t1 (pinned to the client CPU)."""
    cmd = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", "-c%d" % connections, "-d%ds" % seconds, "--latency"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run(cmd + [url], capture_output=True, text=True, timeout=seconds + 60).stdout
    result = {"connections": connections, "seconds": seconds}
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    for line in out.splitlines():
        parts = line.split()
        if line.startswith("Requests/sec:"):
            result["requests_per_second"] = float(parts[1])
        elif len(parts) > 3 and parts[1] == "requests" and parts[2] == "in":
            result["requests"] = int(parts[0])
            result["elapsed_s"] = float(parts[3].rstrip(",s"))
        elif len(parts) == 2 and parts[0] in ("50%", "99%"):
            value = parts[1]
            for suffix, factor in sorted(unit.items(), key=lambda kv: -len(kv[0])):
                if value.endswith(suffix):
                    result["p%s_ms" % parts[0][:-1]] = round(float(value[:-len(suffix)]) * factor, 3)
                    break
        elif "Non-2xx" in line:
            result["non_2xx"] = int(parts[-1])
        elif line.strip().startswith("Socket errors"):
            result["socket_errors"] = line.split(":", 1)[1].strip()
    # Successful requests per second: an answer of 429 or 5xx is not a lookup
    # or a registration (etcd refuses with "too many requests" under load).
    if "requests" in result and result.get("elapsed_s"):
        result["per_second"] = round((result["requests"] - result.get("non_2xx", 0)) / result["elapsed_s"], 1)
    return result


def wrk_script(path, lua):
    with open(path, "w") as f:
        f.write(lua)
    return path


# ---- latticed -----------------------------------------------------------------

class Latticed:
    name = "latticed"

    def __init__(self, work, binary):
        self.work, self.binary = work, binary
        self.members = []  # (Process, http port)
        self.extra = 0

    def _spawn(self, seeds):
        n = len(self.members) + self.extra
        d = os.path.join(self.work, "latticed%d" % n)
        os.makedirs(d, exist_ok=True)
        out = os.path.join(d, "ready")
        args = [self.binary, "--gossip", "127.0.0.1:0", "--http", "127.0.0.1:0", "--data-dir", d,
                "--log-level", "warn"]
        if seeds:
            args += ["--seeds", seeds]
        with open(out, "wb") as ready:
            p = Process(args, os.path.join(d, "log"), stdout=ready)
        wait_until(lambda: b"latticed ready" in open(out, "rb").read(), 10, "latticed to start")
        fields = dict(kv.split("=", 1) for kv in open(out).read().split()[2:])
        return p, int(fields["http"].rsplit(":", 1)[1]), fields["gossip"]

    def start(self):
        p, port, gossip = self._spawn(None)
        self.members.append((p, port))
        self.seed = gossip
        for _ in range(2):
            p, port, _ = self._spawn(self.seed)
            self.members.append((p, port))
        wait_until(lambda: all(self.alive(port) == 3 for _, port in self.members), 10, "latticed members")

    def alive(self, port):
        _, _, body = http_request(port, "GET", "/v1/lattice/members")
        return sum(1 for m in json.loads(body) if m["state"] == "alive")

    def stop(self):
        for p, _ in self.members:
            p.stop()

    def settings(self):
        return {"members": 3, "data_dir": "fsync always", "heartbeat": "100ms", "dead_after": "700ms"}

    # propagation: one write on A, an SSE stream and a Consul blocking query on B
    def propagation(self, samples):
        a, b = self.members[0][1], self.members[1][1]
        seen = {"sse": {}, "consul": {}}
        stop = threading.Event()
        cond = threading.Condition()

        def note(kind, ids):
            now = time.perf_counter()
            with cond:
                for i in ids:
                    seen[kind].setdefault(i, now)
                cond.notify_all()

        def sse():
            conn = http.client.HTTPConnection("127.0.0.1", b, timeout=60)
            conn.request("GET", "/v1/lattice/watch/prop")
            res = conn.getresponse()
            while not stop.is_set():
                line = res.fp.readline()
                if not line:
                    return
                if line.startswith(b"data: "):
                    view = json.loads(line[6:])
                    note("sse", [p["tags"].get("n") for p in view.get("providers", [])])

        def consul():
            conn = http.client.HTTPConnection("127.0.0.1", b, timeout=60)
            index = 0
            while not stop.is_set():
                conn.request("GET", "/v1/health/service/prop?index=%d&wait=5s" % index)
                res = conn.getresponse()
                body = res.read()
                index = int(res.getheader("X-Consul-Index", "0"))
                if res.status == 200:
                    note("consul", [e["Service"]["Meta"].get("n") for e in json.loads(body)])

        threads = [threading.Thread(target=sse, daemon=True), threading.Thread(target=consul, daemon=True)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # both watchers connected (a benchmark's settling time, not a synchronization)
        out = {"sse": [], "consul": []}
        conn = http.client.HTTPConnection("127.0.0.1", a, timeout=10)
        for n in range(samples):
            # One instance, re-registered with a new tag: each event carries a
            # one-instance view, as etcd's and ZooKeeper's carry one key.
            body = json.dumps({"address": "127.0.0.1", "port": 20000, "tags": {"n": str(n)}}).encode()
            started = time.perf_counter()
            conn.request("PUT", "/v1/lattice/instances/prop", body=body)
            res = conn.getresponse()
            res.read()
            acked = time.perf_counter()
            iid = str(n)
            with cond:
                cond.wait_for(lambda: iid in seen["sse"] and iid in seen["consul"], timeout=10)
            for kind in out:
                if iid in seen[kind]:
                    out[kind].append(sample(started, acked, seen[kind][iid]))
        stop.set()
        return {"latticed SSE": out["sse"], "latticed Consul blocking query": out["consul"]}

    def detection(self, samples):
        b = self.members[1][1]
        out = []
        for n in range(samples):
            self.extra += 1
            p, port, _ = self._spawn(self.seed)
            iid = "127.0.0.1:%d" % (30000 + n)
            http_request(port, "PUT", "/v1/lattice/instances/det",
                         {"address": "127.0.0.1", "port": 30000 + n})
            index = 0

            def listed():
                nonlocal index
                status, headers, body = http_request(
                    b, "GET", "/v1/lattice/instances/det?index=%d&wait=10s" % index, timeout=20)
                index = int(headers.get("X-Lattice-Index", "0"))
                return status == 200 and iid in [i["id"] for i in json.loads(body)["providers"]]

            wait_until(listed, 10, "the instance on B")
            killed = time.perf_counter()
            p.kill9()
            while listed():
                pass
            out.append((time.perf_counter() - killed) * 1000)
            p.stop()
        return {"latticed": out}

    def lookups(self, seconds):
        a = self.members[0][1]
        for n in range(10):
            http_request(a, "PUT", "/v1/lattice/instances/lookup", {"address": "127.0.0.1", "port": 40000 + n})
        base = "http://127.0.0.1:%d" % a
        return {"latticed native": run_wrk(base + "/v1/lattice/instances/lookup", seconds, 32),
                "latticed Consul health": run_wrk(base + "/v1/health/service/lookup", seconds, 32)}

    def registrations(self, seconds, work):
        a = self.members[0][1]
        out = {}
        for c in (1, 64):
            script = wrk_script(os.path.join(work, "latticed_put_%d.lua" % c), LATTICED_PUT_LUA % (c,))
            out["latticed, %d in flight" % c] = run_wrk("http://127.0.0.1:%d/" % a, seconds, c, script)
        return out


# Distinct instances (the address walks 10.c.x.y, the port 1..60000) spread
# over 16 services, as bench/http_writes.sh does.
LATTICED_PUT_LUA = """
wrk.method = "PUT"
wrk.headers["Content-Type"] = "application/json"
local run = %d
local n = 0
request = function()
  n = n + 1
  local port = n %% 60000 + 1
  local hi = math.floor(n / 60000)
  local body = string.format('{"address":"10.%%d.%%d.%%d","port":%%d}', run, math.floor(hi / 256) %% 256, hi %% 256, port)
  return wrk.format(nil, "/v1/lattice/instances/reg/s" .. (n %% 16), nil, body)
end
"""


# ---- etcd ---------------------------------------------------------------------

class Etcd:
    name = "etcd"

    def __init__(self, work):
        self.work = work
        self.members = []  # (Process, client port)

    def start(self):
        peers = [free_port() for _ in range(3)]
        clients = [free_port() for _ in range(3)]
        cluster = ",".join("e%d=http://127.0.0.1:%d" % (i, peers[i]) for i in range(3))
        for i in range(3):
            d = os.path.join(self.work, "etcd%d" % i)
            cmd = ["etcd", "--name", "e%d" % i, "--data-dir", d,
                   "--listen-peer-urls", "http://127.0.0.1:%d" % peers[i],
                   "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % peers[i],
                   "--listen-client-urls", "http://127.0.0.1:%d" % clients[i],
                   "--advertise-client-urls", "http://127.0.0.1:%d" % clients[i],
                   "--initial-cluster", cluster, "--initial-cluster-state", "new",
                   "--initial-cluster-token", "bench", "--log-level", "warn"]
            self.members.append((Process(cmd, d + ".log"), clients[i]))
        wait_until(lambda: all(self.healthy(port) for _, port in self.members), 30, "etcd to elect a leader")

    def healthy(self, port):
        try:
            _, _, body = http_request(port, "GET", "/health", timeout=1)
            return json.loads(body).get("health") == "true"
        except Exception:
            return False

    def stop(self):
        for p, _ in self.members:
            p.stop()

    def settings(self):
        return {"members": 3, "version": subprocess.run(["etcd", "--version"], capture_output=True,
                                                        text=True).stdout.split("\n")[0],
                "api": "v3 JSON gateway over HTTP/1.1", "lease_ttl_s": 2}

    def put(self, port, key, value="x", lease=None):
        body = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = lease
        return http_request(port, "POST", "/v3/kv/put", body)

    def watch(self, port, prefix, on_event, stop):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        conn.request("POST", "/v3/watch", body=json.dumps(
            {"create_request": {"key": b64(prefix), "range_end": b64(end)}}))
        res = conn.getresponse()
        created = threading.Event()

        def loop():
            while not stop.is_set():
                try:
                    line = res.readline()  # de-chunked
                except OSError:  # the stream idles once the workload is over
                    return
                if not line:
                    return
                if not line.strip():
                    continue
                now = time.perf_counter()
                msg = json.loads(line).get("result", {})
                if msg.get("created"):
                    created.set()
                for ev in msg.get("events", []):
                    on_event(ev.get("type", "PUT"), base64.b64decode(ev["kv"]["key"]).decode(), now)

        threading.Thread(target=loop, daemon=True).start()
        created.wait(10)

    def propagation(self, samples):
        a, b = self.members[0][1], self.members[1][1]
        seen, cond, stop = {}, threading.Condition(), threading.Event()

        def on_event(kind, key, now):
            with cond:
                seen.setdefault(key, now)
                cond.notify_all()

        self.watch(b, "prop/", on_event, stop)
        out = []
        for n in range(samples):
            key = "prop/%d" % n
            started = time.perf_counter()
            self.put(a, key)
            acked = time.perf_counter()
            with cond:
                cond.wait_for(lambda: key in seen, timeout=10)
            if key in seen:
                out.append(sample(started, acked, seen[key]))
        stop.set()
        return {"etcd watch": out}

    def detection(self, samples):
        a, b = self.members[0][1], self.members[1][1]
        endpoint = "127.0.0.1:%d" % a
        deleted, cond, stop = {}, threading.Condition(), threading.Event()

        def on_event(kind, key, now):
            if kind == "DELETE":
                with cond:
                    deleted[key] = now
                    cond.notify_all()

        self.watch(b, "det/", on_event, stop)
        out = []
        for n in range(samples):
            _, _, body = http_request(a, "POST", "/v3/lease/grant", {"TTL": 2})
            lease = json.loads(body)["ID"]
            key = "det/%d" % n
            self.put(a, key, lease=lease)
            keeper = Process(["etcdctl", "--endpoints", endpoint, "lease", "keep-alive", "%x" % int(lease)],
                             os.path.join(self.work, "keepalive.log"), cpu=CLIENT_CPU)
            time.sleep(3)  # past one TTL: the lease lives on the keeper's refreshes alone
            killed = time.perf_counter()
            keeper.kill9()
            keeper.stop()
            with cond:
                cond.wait_for(lambda: key in deleted, timeout=30)
            if key in deleted:
                out.append((deleted[key] - killed) * 1000)
        stop.set()
        return {"etcd (lease TTL 2 s)": out}

    def lookups(self, seconds):
        a = self.members[0][1]
        for n in range(10):
            self.put(a, "lookup/%d" % n, "127.0.0.1:%d" % (40000 + n))
        body = json.dumps({"key": b64("lookup/"), "range_end": b64("lookup0"), "serializable": True})
        script = wrk_script(os.path.join(self.work, "etcd_range.lua"),
                            'wrk.method = "POST"\nwrk.body = %s\n' % json.dumps(body))
        return {"etcd range (serializable)": run_wrk("http://127.0.0.1:%d/v3/kv/range" % a, seconds, 32, script)}

    def registrations(self, seconds, work):
        a = self.members[0][1]
        out = {}
        # Keys "w<2-digit run><9 digits>": base64 of whole 3-byte groups, from a table
        # of the 1,000 three-digit groups (LuaJIT has no base64).
        table = ",".join('["%03d"]="%s"' % (i, base64.b64encode(b"%03d" % i).decode()) for i in range(1000))
        for c in (1, 64):
            lua = ETCD_PUT_LUA % {"table": table, "prefix": base64.b64encode(b"w%02d" % c).decode()}
            script = wrk_script(os.path.join(work, "etcd_put_%d.lua" % c), lua)
            out["etcd, %d in flight" % c] = run_wrk("http://127.0.0.1:%d/v3/kv/put" % a, seconds, c, script)
        return out


ETCD_PUT_LUA = """
wrk.method = "POST"
local b64 = {%(table)s}
local n = 0
request = function()
  n = n + 1
  local a = string.format("%%03d", math.floor(n / 1000000) %% 1000)
  local b = string.format("%%03d", math.floor(n / 1000) %% 1000)
  local c = string.format("%%03d", n %% 1000)
  local key = "%(prefix)s" .. b64[a] .. b64[b] .. b64[c]
  return wrk.format(nil, nil, nil, '{"key":"' .. key .. '","value":"eA=="}')
end
"""


# ---- ZooKeeper ----------------------------------------------------------------

ZK_CLASSPATH = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar"


class ZooKeeper:
    name = "zookeeper"

    def __init__(self, work):
        self.work = work
        self.members = []  # (Process, client port)

    def start(self):
        quorum = [(free_port(), free_port()) for _ in range(3)]
        clients = [free_port() for _ in range(3)]
        for i in range(3):
            d = os.path.join(self.work, "zk%d" % i)
            os.makedirs(d)
            with open(os.path.join(d, "myid"), "w") as f:
                f.write("%d\n" % (i + 1))
            cfg = os.path.join(d, "zoo.cfg")
            with open(cfg, "w") as f:
                f.write("tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir=%s\nclientPort=%d\n"
                        "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n" % (d, clients[i]))
                for j, (peer, election) in enumerate(quorum):
                    f.write("server.%d=127.0.0.1:%d:%d\n" % (j + 1, peer, election))
            cmd = ["java", "-Xmx512m", "-cp", ZK_CLASSPATH, "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg]
            self.members.append((Process(cmd, d + ".log"), clients[i]))
        from kazoo.client import KazooClient
        for _, port in self.members:
            wait_until(lambda: port_open(port), 60, "ZooKeeper to listen")
        self.clients = []
        for _, port in self.members[:2]:
            z = KazooClient(hosts="127.0.0.1:%d" % port, timeout=10)
            z.start(timeout=60)
            self.clients.append(z)
        self.clients[0].ensure_path("/prop")
        self.clients[0].ensure_path("/det")
        self.clients[0].ensure_path("/reg")

    def stop(self):
        for z in getattr(self, "clients", []):
            z.stop()
            z.close()
        for p, _ in self.members:
            p.stop()

    def settings(self):
        return {"members": 3, "version": "3.8 (Debian zookeeperd)", "tickTime_ms": 2000,
                "session_timeout_ms": 4000, "client": "kazoo (Python)", "forceSync": "yes (default)"}

    def propagation(self, samples):
        za, zb = self.clients
        out = []
        for n in range(samples):
            path = "/prop/n%d" % n
            fired = threading.Event()
            when = {}

            def watcher(event, when=when, fired=fired):
                when["t"] = time.perf_counter()
                fired.set()

            zb.exists(path, watch=watcher)
            started = time.perf_counter()
            za.create(path, b"127.0.0.1")
            acked = time.perf_counter()
            if fired.wait(10):
                out.append(sample(started, acked, when["t"]))
        return {"ZooKeeper watch": out}

    def detection(self, samples):
        zb = self.clients[1]
        port = self.members[0][1]
        out = []
        for n in range(samples):
            path = "/det/n%d" % n
            script = ("import sys, time\nfrom kazoo.client import KazooClient\n"
                      "z = KazooClient(hosts='127.0.0.1:%d', timeout=4.0)\nz.start(timeout=30)\n"
                      "z.create('%s', b'x', ephemeral=True)\nprint('ready', flush=True)\ntime.sleep(600)\n"
                      % (port, path))
            ready = os.path.join(self.work, "zk_registrant.out")
            with open(ready, "wb") as f:
                child = Process([sys.executable, "-c", script], os.path.join(self.work, "zk_registrant.log"),
                                cpu=CLIENT_CPU, stdout=f)
            wait_until(lambda: b"ready" in open(ready, "rb").read(), 30, "the ZooKeeper registrant")
            gone = threading.Event()
            when = {}

            def watcher(event, when=when, gone=gone):
                if event.type == "DELETED":
                    when["t"] = time.perf_counter()
                    gone.set()

            if not zb.exists(path, watch=watcher):
                raise RuntimeError("ephemeral node not visible on B")
            killed = time.perf_counter()
            child.kill9()
            child.stop()
            if gone.wait(60):
                out.append((when["t"] - killed) * 1000)
        return {"ZooKeeper (session timeout 4 s)": out}

    def lookups(self, seconds):
        return {}

    def registrations(self, seconds, work):
        za = self.clients[0]
        out = {}
        for window in (1, 64):
            done = threading.Semaphore(window)
            count = [0]
            errors = [0]
            lock = threading.Lock()

            def finished(result, done=done, count=count, errors=errors, lock=lock):
                try:
                    result.get()
                    with lock:
                        count[0] += 1
                except Exception:
                    with lock:
                        errors[0] += 1
                done.release()

            start = time.perf_counter()
            end = start + seconds
            n = 0
            while time.perf_counter() < end:
                done.acquire()
                n += 1
                za.create_async("/reg/w%d-%d" % (window, n), b"127.0.0.1").rawlink(finished)
            for _ in range(window):
                done.acquire()
            elapsed = time.perf_counter() - start
            out["ZooKeeper, %d in flight" % window] = {"connections": window, "seconds": seconds,
                                                        "per_second": round(count[0] / elapsed, 1),
                                                        "errors": errors[0]}
        return out


# ---- plots ---------------------------------------------------------------------

def plot(results, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    prop = results.get("propagation", {})
    if prop:
        fig, ax = plt.subplots(figsize=(7, 4))
        for label, samples in prop.items():
            s = sorted(x["from_start_ms"] for x in samples)
            if s:
                ax.plot(s, [(i + 1) / len(s) for i in range(len(s))], label=label)
        ax.set_xscale("log")
        ax.set_xlabel("write sent to A → watcher on B hears it (ms, log scale)")
        ax.set_ylabel("fraction of writes")
        ax.set_title("Propagation A → B (CDF)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        files.append(os.path.join(out, "propagation.png"))
        fig.tight_layout()
        fig.savefig(files[-1], dpi=110)
        plt.close(fig)
    det = results.get("detection", {})
    if det:
        fig, ax = plt.subplots(figsize=(7, 3.5))
        labels = list(det)
        for i, label in enumerate(labels):
            ax.scatter([v / 1000 for v in det[label]], [i] * len(det[label]), alpha=0.7)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels)
        ax.set_xlabel("SIGKILL of a registrant → its entry gone on B (s)")
        ax.set_title("Failure detection")
        ax.grid(True, axis="x", alpha=0.3)
        files.append(os.path.join(out, "detection.png"))
        fig.tight_layout()
        fig.savefig(files[-1], dpi=110)
        plt.close(fig)
    panels = [(part, results.get(part, {})) for part in ("lookups", "registrations") if results.get(part)]
    if panels:
        rows = [len(p) for _, p in panels]
        fig, axes = plt.subplots(len(panels), 1, figsize=(8, 0.45 * sum(rows) + 1.6 * len(panels)),
                                 gridspec_kw={"height_ratios": rows}, squeeze=False)
        titles = {"lookups": "Lookups/s, 32 connections", "registrations": "Durable registrations/s"}
        for ax, (part, bars) in zip(axes[:, 0], panels):
            labels = list(bars)
            values = [bars[k].get("per_second", 0) for k in labels]
            ax.barh(range(len(labels)), values)
            for i, v in enumerate(values):
                ax.text(v, i, " %s" % format(int(v), ","), va="center")
            ax.set_yticks(range(len(labels)))
            ax.set_yticklabels(labels)
            ax.invert_yaxis()
            ax.set_title(titles[part])
            ax.set_xlim(0, max(values) * 1.25 if values else 1)
        axes[-1, 0].set_xlabel("successful requests/s (servers on one core)")
        files.append(os.path.join(out, "throughput.png"))
        fig.tight_layout()
        fig.savefig(files[-1], dpi=110)
        plt.close(fig)
    return files


# ---- main ----------------------------------------------------------------------

def machine():
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"host": platform.node(), "kernel": platform.release(), "cpu": model, "cpus": os.cpu_count(),
            "pinning": "servers on CPU %s, clients on CPU %s" % (SERVER_CPU, CLIENT_CPU)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--systems", default="latticed,etcd,zookeeper")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "compare", "results"))
    ap.add_argument("--smoke", action="store_true", help="a few samples and 1 s runs (CI)")
    ap.add_argument("--samples", type=int, default=300, help="propagation writes per system")
    ap.add_argument("--kills", type=int, default=10, help="detection samples per system")
    ap.add_argument("--seconds", type=int, default=10, help="per throughput run")
    ap.add_argument("--replot", metavar="JSON", help="only draw the plots of an earlier run's compare.json")
    args = ap.parse_args()
    if args.replot:
        os.makedirs(args.out, exist_ok=True)
        print("\n".join(plot(json.load(open(args.replot)), args.out)))
        return
    if args.smoke:
        args.samples, args.kills, args.seconds = 5, 1, 1
    latticed = os.environ.get("LATTICED", os.path.join(ROOT, "build", "apps", "latticed"))
    os.makedirs(args.out, exist_ok=True)
    pin_self()
    results = {"command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]), "machine": machine(),
               "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "settings": {},
               "propagation": {}, "detection": {}, "lookups": {}, "registrations": {}}
    for name in args.systems.split(","):
        work = tempfile.mkdtemp(prefix="lattice-compare-%s-" % name)
        system = {"latticed": lambda: Latticed(work, latticed), "etcd": lambda: Etcd(work),
                  "zookeeper": lambda: ZooKeeper(work)}[name]()
        print("==> %s" % name, file=sys.stderr, flush=True)
        try:
            system.start()
            results["settings"][name] = system.settings()
            results["propagation"].update(system.propagation(args.samples))
            results["detection"].update(system.detection(args.kills))
            results["lookups"].update(system.lookups(args.seconds))
            results["registrations"].update(system.registrations(args.seconds, work))
        finally:
            system.stop()
            shutil.rmtree(work, ignore_errors=True)
    results["summary"] = {
        "propagation": {k: {"from_start": summary([x["from_start_ms"] for x in v]),
                            "from_ack": summary([x["from_ack_ms"] for x in v])}
                        for k, v in results["propagation"].items()},
        "detection": {k: summary(v) for k, v in results["detection"].items()},
    }
    path = os.path.join(args.out, "compare.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    files = plot(results, args.out)
    print(json.dumps({"json": path, "plots": files, "summary": results["summary"],
                      "lookups": results["lookups"], "registrations": results["registrations"]}, indent=1))
    # Every workload must have produced figures (the smoke run's check).
    empty = [k for part in ("propagation", "detection") for k, v in results[part].items() if not v]
    empty += [k for part in ("lookups", "registrations") for k, v in results[part].items()
              if not v.get("per_second")]
    if empty or len(files) != 3:
        print("compare: no figures for %s" % (", ".join(empty) or "the plots"), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
