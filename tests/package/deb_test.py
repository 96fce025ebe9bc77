"""The Debian package (CTest label `package`): built by CPack from this
build tree, then checked as an operator's machine would see it.

    /usr/bin/python3 tests/package/deb_test.py BUILD_DIR

- dpkg-deb --info: name, dependencies (adduser for the system user, the
  shared libraries dpkg-shlibdeps found), maintainer scripts, conffiles;
- dpkg-deb --contents: the daemon, the CLI, headers, libraries, the CMake
  package, the config file, the systemd unit, the docs;
- the maintainer scripts parse (sh -n);
- unpacked into a scratch root: latticed --version and lattice --version
  run from it; systemd-analyze verify accepts the unit (against a copy of
  this machine's units, inside the scratch root) with no complaint, and
  systemd-analyze security rates it 2.0 or better;
- the unpacked latticed runs with the shipped config file (addresses and
  data directory overridden on the command line), tells a NOTIFY_SOCKET
  READY=1 as systemd's Type=notify expects, and STOPPING=1 then exit 0 on
  SIGTERM.
"""
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import unittest

BUILD = os.path.abspath(sys.argv.pop(1) if len(sys.argv) > 1 else "build")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "daemon"))
from harness import start_exact  # noqa: E402


def run(*args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


class DebianPackageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        built = run("cpack", "-G", "DEB", cwd=BUILD)
        assert built.returncode == 0, built.stdout + built.stderr
        cls.deb = re.search(r"package: (\S+\.deb) generated", built.stdout).group(1)
        cls.root = tempfile.mkdtemp(prefix="lattice-deb-root-")
        unpacked = run("dpkg-deb", "-x", cls.deb, cls.root)
        assert unpacked.returncode == 0, unpacked.stderr

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)

    def test_control_fields_scripts_and_conffiles(self):
        info = run("dpkg-deb", "--info", self.deb)
        self.assertEqual(info.returncode, 0, info.stderr)
        fields = dict(re.findall(r"^ (\w[\w-]*): (.*)$", info.stdout, re.M))
        self.assertEqual(fields["Package"], "lattice")
        self.assertEqual(fields["Architecture"], "amd64")
        depends = fields["Depends"]
        for needed in ("adduser", "libc6", "libssl3", "libsystemd0", "libsqlite3-0", "libldns3"):
            self.assertIn(needed, depends)
        control = tempfile.mkdtemp(prefix="lattice-deb-control-")
        try:
            self.assertEqual(run("dpkg-deb", "-e", self.deb, control).returncode, 0)
            with open(os.path.join(control, "conffiles")) as f:
                self.assertEqual(f.read().split(), ["/etc/lattice/latticed.toml"])
            for script in ("postinst", "prerm", "postrm"):
                path = os.path.join(control, script)
                self.assertTrue(os.access(path, os.X_OK), script)
                checked = run("sh", "-n", path)
                self.assertEqual(checked.returncode, 0, script + ": " + checked.stderr)
            with open(os.path.join(control, "postinst")) as f:
                self.assertIn("adduser --system --group --home /var/lib/lattice", f.read())
        finally:
            shutil.rmtree(control, ignore_errors=True)

    def test_contents(self):
        listing = run("dpkg-deb", "--contents", self.deb)
        self.assertEqual(listing.returncode, 0, listing.stderr)
        paths = {line.split()[-1] for line in listing.stdout.splitlines()}
        for path in ("./usr/bin/latticed", "./usr/bin/lattice", "./etc/lattice/latticed.toml",
                     "./lib/systemd/system/latticed.service", "./usr/include/lattice/registry/replica.hpp",
                     "./usr/include/lattice/crdt/lww_element_set.hpp", "./usr/lib/cmake/lattice/latticeConfig.cmake",
                     "./usr/lib/liblattice_registry.a", "./usr/share/doc/lattice/README.md"):
            self.assertIn(path, paths)
        # Nothing of the tests, benches or fuzzers.
        self.assertFalse([p for p in paths if re.search(r"test|bench|fuzz", p.rsplit("/", 1)[-1])])

    def test_binaries_run_from_the_unpacked_root(self):
        for binary in ("latticed", "lattice"):
            out = run(os.path.join(self.root, "usr/bin", binary), "--version")
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertRegex(out.stdout, r"^%s \d+\.\d+\.\d+ " % binary)

    def test_systemd_accepts_and_rates_the_unit(self):
        # verify resolves dependencies (sysinit.target...) and ExecStart in
        # the root: give it this machine's units beside the package's.
        # Only the unit files themselves: the .wants/.requires links of
        # this machine point at paths outside the root.
        shutil.copytree("/usr/lib/systemd/system", os.path.join(self.root, "usr/lib/systemd/system"),
                        dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.wants", "*.requires", "*.d"))
        verified = run("systemd-analyze", "--root=" + self.root, "verify", "--man=no",
                       "/lib/systemd/system/latticed.service")
        self.assertEqual((verified.returncode, verified.stdout + verified.stderr), (0, ""))
        rated = run("systemd-analyze", "security", "--offline=true", "--root=" + self.root,
                    "/lib/systemd/system/latticed.service")
        level = re.search(r"Overall exposure level for latticed.service: ([\d.]+)", rated.stdout + rated.stderr)
        self.assertIsNotNone(level, rated.stdout + rated.stderr)
        self.assertLessEqual(float(level.group(1)), 2.0, rated.stdout)

    def test_latticed_runs_with_the_shipped_config_and_notifies_systemd(self):
        work = tempfile.mkdtemp(prefix="lattice-deb-run-")
        notify_path = os.path.join(work, "notify")
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        notify.bind(notify_path)
        proc = None
        try:
            # READY=1 is sent right after the ready line is printed.
            proc, _ = start_exact(
                ["--config", os.path.join(self.root, "etc/lattice/latticed.toml"), "--http", "127.0.0.1:0",
                 "--gossip", "127.0.0.1:0", "--dns", "127.0.0.1:0", "--data-dir", os.path.join(work, "data"),
                 "--log-level", "warn"],
                env=dict(os.environ, NOTIFY_SOCKET=notify_path), binary=os.path.join(self.root, "usr/bin/latticed"))

            def message(timeout=10):
                ready, _, _ = select.select([notify], [], [], timeout)
                return notify.recv(4096).decode() if ready else ""
            self.assertIn("READY=1", message())
            proc.send_signal(signal.SIGTERM)
            self.assertIn("STOPPING=1", message())
            self.assertEqual(proc.wait(10), 0)
        finally:
            if proc is not None:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(5)
                proc.stdout.close()
                proc.stderr.close()
            notify.close()
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
