"""bench/daemons.py: what the Python benchmarks share: starting latticed
on loopback and one HTTP request to it. Not a benchmark itself."""
import json
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request


def percentiles(samples, digits=3):
    """p50, p99, min, max (rounded to `digits`) and the count of `samples`."""
    ordered = sorted(samples)
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], digits)  # noqa: E731
    return {"p50": pick(0.5), "p99": pick(0.99), "min": round(ordered[0], digits),
            "max": round(ordered[-1], digits), "samples": len(ordered)}


def request(http_address, method, path, body=None, timeout=30):
    """(status, headers, parsed JSON or None) of one request."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request("http://%s%s" % (http_address, path), data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, dict(res.headers), json.loads(res.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), None


def start_daemon(latticed, seeds=None, extra=()):
    """(process, data directory, ready-line fields: id, http, gossip, dns) of a new latticed."""
    data_dir = tempfile.mkdtemp(prefix="lattice-bench-")
    args = [latticed, "--gossip", "127.0.0.1:0", "--http", "127.0.0.1:0", "--dns", "127.0.0.1:0", "--data-dir",
            data_dir, "--log-level", "warn"] + list(extra)
    if seeds:
        args += ["--seeds", seeds]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("latticed ready"):
            return proc, data_dir, dict(f.split("=", 1) for f in line.split()[2:])
    proc.kill()
    raise SystemExit("latticed did not start")


def stop_daemons(daemons):
    for proc, data_dir, _ in daemons:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(data_dir, ignore_errors=True)
