"""deploy/ checked offline (CTest label `deploy`); no cluster, Grafana or
Prometheus runs here, so what can be checked without them is:

- Kubernetes manifests (deploy/kubernetes/*.yaml): every document parses
  and names its kind, apiVersion and name; selectors match the pod labels
  they select; probes, Service target ports and volume mounts refer to
  ports and volumes that exist; secrets used are defined; containers run
  unprivileged, read-only, with no capabilities; and latticed's arguments
  in each manifest start a real latticed (pod IP, cluster DNS and mounted
  files replaced with loopback and scratch files), which the manifest's
  exec probe (lattice health) then finds alive.
- The Grafana dashboard (deploy/grafana/lattice.json): valid JSON, unique
  panel ids, and every metric an expression reads is one a real latticed
  exports on /metrics.

    LATTICED=build/apps/latticed LATTICE_CLI=build/apps/lattice /usr/bin/python3 tests/deploy/deploy_test.py
"""
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest
import urllib.request

import yaml  # python3-yaml

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "daemon"))
from harness import LATTICE_CLI, Daemon, start_exact  # noqa: E402

DEPLOY = os.path.join(os.path.dirname(__file__), "..", "..", "deploy")
NAMESPACED = {"Secret", "Service", "DaemonSet", "Deployment", "ConfigMap"}


def documents():
    docs = []
    for path in sorted(glob.glob(os.path.join(DEPLOY, "kubernetes", "*.yaml"))):
        with open(path) as f:
            docs += [(os.path.basename(path), d) for d in yaml.safe_load_all(f) if d is not None]
    return docs


def workloads():
    return [(f, d) for f, d in documents() if d["kind"] in ("DaemonSet", "Deployment")]


def latticed_container(pod_spec):
    return next(c for c in pod_spec["containers"] if c["name"] == "latticed")


class ManifestsTest(unittest.TestCase):
    def test_every_document_is_well_formed(self):
        docs = documents()
        self.assertGreaterEqual({d["kind"] for _, d in docs}, {"Namespace", "Secret", "Service", "DaemonSet", "Deployment"})
        for f, d in docs:
            self.assertIn("apiVersion", d, f)
            self.assertTrue(d["metadata"]["name"], f)
            if d["kind"] in NAMESPACED:
                self.assertEqual(d["metadata"].get("namespace"), "lattice", (f, d["metadata"]["name"]))

    def test_workloads_are_consistent_and_unprivileged(self):
        secrets = {d["metadata"]["name"] for _, d in documents() if d["kind"] == "Secret"}
        for f, w in workloads():
            name = (f, w["metadata"]["name"])
            template = w["spec"]["template"]
            labels = template["metadata"]["labels"]
            self.assertLessEqual(w["spec"]["selector"]["matchLabels"].items(), labels.items(), name)
            pod = template["spec"]
            self.assertTrue(pod["securityContext"]["runAsNonRoot"], name)
            volumes = {v["name"]: v for v in pod["volumes"]}
            for c in pod["containers"]:
                ports = {p["name"] for p in c.get("ports", []) if "name" in p} | {
                    p["containerPort"] for p in c.get("ports", [])}
                for probe in ("readinessProbe", "livenessProbe"):
                    if probe in c and "httpGet" in c[probe]:
                        self.assertIn(c[probe]["httpGet"]["port"], ports, (name, c["name"], probe))
                        self.assertEqual(c[probe]["httpGet"]["path"], "/health")
                for m in c.get("volumeMounts", []):
                    self.assertIn(m["name"], volumes, (name, c["name"]))
                sc = c["securityContext"]
                self.assertFalse(sc["allowPrivilegeEscalation"], (name, c["name"]))
                self.assertTrue(sc["readOnlyRootFilesystem"], (name, c["name"]))
                self.assertEqual(sc["capabilities"]["drop"], ["ALL"], (name, c["name"]))
            for v in volumes.values():
                if "secret" in v:
                    self.assertIn(v["secret"]["secretName"], secrets, name)
            # Both probes of latticed exist.
            c = latticed_container(pod)
            self.assertIn("readinessProbe", c, name)
            self.assertIn("livenessProbe", c, name)

    def test_the_headless_service_selects_the_daemonset(self):
        services = [d for _, d in documents() if d["kind"] == "Service"]
        daemonset = next(d for _, d in documents() if d["kind"] == "DaemonSet")
        pod = daemonset["spec"]["template"]
        container_ports = {p["name"] for p in latticed_container(pod["spec"])["ports"]}
        service = next(s for s in services if s["metadata"]["name"] == "latticed")
        self.assertEqual(service["spec"]["clusterIP"], "None")
        self.assertTrue(service["spec"]["publishNotReadyAddresses"])
        self.assertLessEqual(service["spec"]["selector"].items(), pod["metadata"]["labels"].items())
        for p in service["spec"]["ports"]:
            self.assertIn(p["targetPort"], container_ports)
        # The seeds every replica joins through are this Service's DNS name.
        host = "%s.%s.svc.cluster.local:7946" % (service["metadata"]["name"], service["metadata"]["namespace"])
        for f, w in workloads():
            self.assertIn("--seeds=" + host, latticed_container(w["spec"]["template"]["spec"])["args"], f)

    def test_latticed_starts_with_each_manifests_arguments(self):
        for f, w in workloads():
            pod = w["spec"]["template"]["spec"]
            c = latticed_container(pod)
            with self.subTest(manifest=f):
                self.run_latticed_like(c)

    def run_latticed_like(self, container):
        scratch = tempfile.mkdtemp(prefix="lattice-k8s-")
        try:
            mounts = {m["mountPath"]: os.path.join(scratch, m["name"]) for m in container["volumeMounts"]}
            for path in mounts.values():
                os.makedirs(path)
            args = []
            for a in container["args"]:
                flag, value = a.split("=", 1)
                value = value.replace("$(POD_IP)", "127.0.0.1")
                if re.fullmatch(r"(0\.0\.0\.0|127\.0\.0\.1):\d+", value):
                    value = "127.0.0.1:0"  # a free port: nothing on this machine contends
                if flag == "--seeds":
                    value = "127.0.0.1:9"  # nobody there: the replica starts alone and keeps trying
                for mount, local in mounts.items():
                    if value.startswith(mount):
                        value = local + value[len(mount):]
                        if flag.endswith("-file"):
                            with open(value, "w") as f:
                                f.write("a-test-secret-of-32-bytes-000000")
                args.append("%s=%s" % (flag, value))
            proc, fields = start_exact(args)  # exactly the manifest's flags
            try:
                probe = container["livenessProbe"]
                if "exec" in probe:
                    command = list(probe["exec"]["command"])
                    self.assertEqual(command[0], "/usr/bin/lattice")
                    command[0] = LATTICE_CLI
                    command[command.index("--addr") + 1] = fields["http"]
                    done = subprocess.run(command, capture_output=True, text=True, timeout=30)
                    self.assertEqual(done.returncode, 0, done.stderr)
                    self.assertIn("ok: replica %s" % fields["id"], done.stdout)
                else:
                    url = "http://%s%s" % (fields["http"], probe["httpGet"]["path"])
                    with urllib.request.urlopen(url, timeout=10) as res:
                        self.assertEqual(res.status, 200)
                proc.send_signal(signal.SIGTERM)
                self.assertEqual(proc.wait(10), 0)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(5)
                proc.stdout.close()
                proc.stderr.close()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


class GrafanaDashboardTest(unittest.TestCase):
    def test_every_expression_reads_metrics_latticed_exports(self):
        with open(os.path.join(DEPLOY, "grafana", "lattice.json")) as f:
            dashboard = json.load(f)
        panels = dashboard["panels"]
        ids = [p["id"] for p in panels]
        self.assertEqual(len(ids), len(set(ids)))
        variables = {v["name"] for v in dashboard["templating"]["list"]}
        self.assertEqual(variables, {"datasource", "job", "instance"})
        d = Daemon()
        try:
            _, _, text = d.get("/metrics")
        finally:
            d.close()
            shutil.rmtree(d.data_dir, ignore_errors=True)
        exported = set()
        for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
            exported.add(name)
            if kind == "histogram":
                exported |= {name + "_bucket", name + "_sum", name + "_count"}
            if kind == "summary":
                exported |= {name + "_sum", name + "_count"}
        expressions = [t["expr"] for p in panels for t in p.get("targets", [])]
        self.assertGreaterEqual(len(expressions), 20)
        for expr in expressions:
            for metric in re.findall(r"\blattice_[a-z_]+", expr):
                self.assertIn(metric, exported, expr)
            for variable in re.findall(r"\$(\w+)", expr):
                self.assertIn(variable, variables | {"__rate_interval"}, expr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
