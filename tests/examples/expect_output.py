"""Runs an example with a time limit and checks what it printed.

    expect_output.py --timeout 60 --expect 'Summary: .*converged=true' -- build/examples/partition_heal

Passes only if the example exits 0 within the limit and every --expect
regular expression matches its standard output; prints the output either way.
"""
import argparse
import re
import subprocess
import sys

parser = argparse.ArgumentParser()
parser.add_argument("--timeout", type=float, default=60)
parser.add_argument("--expect", action="append", default=[])
parser.add_argument("command", nargs=argparse.REMAINDER)
args = parser.parse_args()
command = args.command[1:] if args.command[:1] == ["--"] else args.command
try:
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
except subprocess.TimeoutExpired as e:
    print((e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""))
    print("FAILED: %s did not finish within %.0f s" % (command[0], args.timeout))
    sys.exit(1)
print(done.stdout)
missing = [pattern for pattern in args.expect if not re.search(pattern, done.stdout)]
for pattern in missing:
    print("FAILED: no line matches %r" % pattern)
if done.returncode != 0:
    print("FAILED: exit code %d\n%s" % (done.returncode, done.stderr[-4000:]))
sys.exit(1 if missing or done.returncode != 0 else 0)
