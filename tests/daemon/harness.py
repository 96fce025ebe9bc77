"""Starting and stopping real latticed processes on loopback for the tests.

Every daemon binds port 0 (gossip and HTTP) and reports its ports on its
ready line; every wait is bounded; every process is stopped by its PID.
"""
import glob
import json
import os
import socket
import select
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

LATTICED = os.environ.get("LATTICED", "build/apps/latticed")
LATTICE_CLI = os.environ.get("LATTICE_CLI", "build/apps/lattice")
FAKETIME_LIB = os.environ.get("LATTICE_FAKETIME_LIB") or next(
    iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))), "libfaketimeMT.so.1")
# Fast liveness so that kill tests finish quickly.
FAST = ["--heartbeat", "50ms", "--suspect-after", "200ms", "--dead-after", "400ms", "--reap-after", "1s",
        "--anti-entropy", "100ms", "--fsync", "never"]


class Daemon:
    def __init__(self, *extra, data_dir=None, seeds=None, clock_offset=None, gossip="127.0.0.1:0", log_path=None):
        """clock_offset: run under libfaketime with its wall clock moved by this
        many seconds (monotonic time stays real). log_path: append the
        daemon's log there instead of to a pipe nobody reads (a long run
        would fill the pipe and block the daemon)."""
        self.log_path = log_path
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="latticed-test-")
        self.extra = list(extra)
        self.seeds = seeds or []
        self.clock_offset = clock_offset
        self.proc = None
        self.start(gossip)

    def start(self, gossip="127.0.0.1:0", http="127.0.0.1:0"):
        args = [LATTICED, "--gossip", gossip, "--http", http, "--data-dir", self.data_dir] + FAST
        if self.seeds:
            args += ["--seeds", ",".join(self.seeds)]
        args += self.extra
        if "--dns" not in self.extra:  # its own port: no two daemons (or the host) contend for 8600
            args += ["--dns", "127.0.0.1:0"]
        if "--log-level" not in self.extra:
            args += ["--log-level", "warn"]
        env = None
        if self.clock_offset is not None:
            # libfaketime preloaded into latticed itself: the faketime
            # wrapper forks, so its PID is not the daemon's, and killing it
            # would leave the daemon running.
            env = dict(os.environ, LD_PRELOAD=FAKETIME_LIB, FAKETIME="%+ds" % self.clock_offset,
                       FAKETIME_DONT_FAKE_MONOTONIC="1")
        log = open(self.log_path, "a") if self.log_path else subprocess.PIPE
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
        if self.log_path:
            log.close()
        line = self._read_line(10.0)
        if not line.startswith("latticed ready"):
            self.proc.kill()
            self.proc.wait(5)
            detail = self.proc.stderr.read() if self.proc.stderr else open(self.log_path).read()[-2000:]
            raise RuntimeError("latticed did not start: %r %s" % (line, detail))
        fields = dict(kv.split("=", 1) for kv in line.split()[2:])
        # Replica ids are 64-bit: the API sends them as decimal strings.
        self.id, self.http, self.gossip = fields["id"], fields["http"], fields["gossip"]
        self.dns = fields.get("dns")
        self.scheme = fields.get("scheme", "http")
        return self

    def _read_line(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline().strip() if ready else ""

    # HTTPS: the ssl.SSLContext requests are made with (the test sets it).
    ssl_context = None

    def url(self, path):
        return "%s://%s%s" % (self.scheme, self.http, path)

    def request(self, method, path, body=None, headers=None, timeout=10):
        """(status, headers, parsed JSON or raw text) of one request."""
        data = body if isinstance(body, (bytes, type(None))) else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode())
        req = urllib.request.Request(self.url(path), data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context) as res:
                return res.status, dict(res.headers), _decode(res.read())
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), _decode(e.read())

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def terminate(self, timeout=5.0):
        """SIGTERM; returns the exit code (killed and None past the timeout)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            return None

    def kill9(self):
        self.proc.kill()
        self.proc.wait(5)

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe:
                pipe.close()


def _decode(raw):
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def start_exact(args, env=None, stderr=subprocess.PIPE, timeout=10.0, binary=None):
    """latticed (or `binary`) started with exactly `args` (Daemon adds flags of its own):
    (process, fields of its ready line: id, http, gossip, ...). The ready line
    is its first line on stdout (logs go to stderr). If it does not come
    within `timeout`, the process is killed and RuntimeError says why."""
    proc = subprocess.Popen([binary or LATTICED] + list(args), stdout=subprocess.PIPE, stderr=stderr, text=True,
                            env=env)
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("latticed ready "):
        proc.kill()
        proc.wait(5)
        detail = proc.stderr.read() if stderr == subprocess.PIPE else ""
        proc.stdout.close()
        if stderr == subprocess.PIPE:
            proc.stderr.close()
        raise RuntimeError("latticed %s did not start: %r %s" % (" ".join(args), line, detail))
    return proc, dict(kv.split("=", 1) for kv in line.split()[2:])


def eventually(check, timeout=5.0, interval=0.02):
    """Polls check() until it is truthy or timeout passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def metric(daemon, name):
    """The value of an unlabelled metric on daemon's /metrics, or None."""
    status, _, text = daemon.get("/metrics")
    if status != 200:
        return None
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


class EventStream:
    """The Server-Sent Events of one GET on a daemon, read as they come."""

    def __init__(self, daemon, path):
        self.sock = socket.create_connection(tuple(daemon.http.rsplit(":", 1)), timeout=5)
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
        self.buffer = b""
        self.head_done = False

    def next(self, timeout=5):
        """(event name, parsed data) of the next event, or None if none
        comes within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.head_done and b"\r\n\r\n" in self.buffer:  # the HTTP response head
                self.buffer = self.buffer.split(b"\r\n\r\n", 1)[1]
                self.head_done = True
            while self.head_done and b"\n\n" in self.buffer:
                block, self.buffer = self.buffer.split(b"\n\n", 1)
                lines = block.decode().split("\n")
                data = [l[6:] for l in lines if l.startswith("data: ")]
                name = next((l[7:] for l in lines if l.startswith("event: ")), "message")
                if data:
                    return name, json.loads("".join(data))
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                return None
            self.buffer += chunk

    def close(self):
        self.sock.close()


def blocked(daemon, count=1):
    """Waits until `count` blocking queries on daemon have evaluated and are
    waiting for a change; True if they are. A change made before that could
    satisfy a query that never blocked."""
    return eventually(lambda: metric(daemon, "lattice_blocking_queries") == count, timeout=10)


def providers(daemon, path):
    status, _, body = daemon.get("/v1/lattice/instances" + path)
    return sorted(i["id"] for i in body["providers"]) if status == 200 else []


def cli(daemon, *args, timeout=10):
    """(exit code, stdout, stderr) of the lattice CLI against `daemon`."""
    addr = daemon.http if daemon else "127.0.0.1:1"
    done = subprocess.run([LATTICE_CLI, "--addr", addr] + list(args), capture_output=True, text=True,
                          timeout=timeout)
    return done.returncode, done.stdout, done.stderr
