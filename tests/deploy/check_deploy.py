#!/usr/bin/env python3
"""Offline checks of the deployment files under deploy/ and of the Dockerfile.

Runs without a cluster, a container engine or network access:
  - every Kubernetes manifest against the Kubernetes JSON schemas bundled in the
    kubernetes-validate package (strict: unknown fields fail), for two Kubernetes versions;
  - the ServiceMonitor against a vendored subset of the Prometheus operator's CRD schema;
  - references between the manifests (selectors, port names, ConfigMap/Secret names, mount
    paths), pod hardening (non-root, read-only root file system, no privilege escalation, all
    capabilities dropped, Secret files readable by the pod's user), and every config in a
    ConfigMap through `dcs-key-exporter check-config`;
  - the Dockerfile's structure (multi-stage, non-root user, exec-form entrypoint);
  - the systemd unit with `systemd-analyze verify` (no warnings allowed);
  - the Prometheus scrape config examples with `promtool check config`;
  - that the exporter opens no file for writing (strace over a --demo run with scrapes).

Usage: check_deploy.py --exporter-bin target/debug/dcs-key-exporter
Run it with the CI virtualenv's Python (kubernetes-validate, jsonschema, PyYAML).
Prints one line per check and `N passed, M failed`; exits 1 on any failure.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S_DIR = ROOT / "deploy" / "kubernetes"
K8S_VERSIONS = ["1.28.0", "1.33.0"]
NON_K8S = {"kustomization.yaml"}

results = []


def check(name, ok, detail=""):
    results.append(ok)
    line = f"{'PASS' if ok else 'FAIL'}  {name}"
    if detail and not ok:
        line += f": {detail}"
    elif detail:
        line += f" ({detail})"
    print(line, flush=True)


def manifests():
    """(file, document) for every Kubernetes document under deploy/kubernetes."""
    out = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path.name in NON_K8S:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path.name, doc))
    return out


def subset(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def pod_templates(docs):
    for f, d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet"):
            yield f, d, d["spec"]["template"]


def check_schemas(docs):
    for version in K8S_VERSIONS:
        for f, d in docs:
            if d["apiVersion"].startswith("monitoring.coreos.com/"):
                continue
            name = f"{f}: {d['kind']}/{d['metadata']['name']} valid for Kubernetes {version}"
            try:
                kubernetes_validate.validate(d, version, strict=True)
                check(name, True)
            except Exception as e:  # ValidationError, SchemaNotFoundError, ...
                check(name, False, str(e).splitlines()[0])
    schema = json.loads((Path(__file__).parent / "servicemonitor.schema.json").read_text())
    for f, d in docs:
        if d["kind"] == "ServiceMonitor":
            errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(d), key=str)
            check(
                f"{f}: ServiceMonitor/{d['metadata']['name']} matches the vendored CRD schema",
                not errors,
                "; ".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors),
            )
    # The validator must refuse a broken manifest, or the checks above prove nothing.
    broken = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
              "spec": {"ports": [{"port": "not-a-number"}], "selectr": {}}}
    try:
        kubernetes_validate.validate(broken, K8S_VERSIONS[0], strict=True)
        check("the schema validator refuses a broken manifest", False, "it was accepted")
    except Exception:
        check("the schema validator refuses a broken manifest", True)


def check_references(docs):
    by_kind = {}
    for f, d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    names = {(d["kind"], d["metadata"]["name"]) for _, d in docs}

    for svc in by_kind.get("Service", []):
        sel = svc["spec"].get("selector", {})
        pods = [t for _, _, t in pod_templates(docs) if subset(sel, t["metadata"]["labels"])]
        check(f"Service/{svc['metadata']['name']} selects a pod template", bool(pods))
        for port in svc["spec"]["ports"]:
            tp = port.get("targetPort")
            if isinstance(tp, str):
                ok = all(any(p.get("name") == tp for c in t["spec"]["containers"]
                             for p in c.get("ports", [])) for t in pods)
                check(f"Service/{svc['metadata']['name']} targetPort {tp} exists in its pods", ok)

    for sm in by_kind.get("ServiceMonitor", []):
        sel = sm["spec"]["selector"].get("matchLabels", {})
        svcs = [s for s in by_kind.get("Service", []) if subset(sel, s["metadata"].get("labels", {}))]
        check(f"ServiceMonitor/{sm['metadata']['name']} selects a Service", bool(svcs))
        for ep in sm["spec"]["endpoints"]:
            ok = any(p.get("name") == ep.get("port") for s in svcs for p in s["spec"]["ports"])
            check(f"ServiceMonitor/{sm['metadata']['name']} port {ep.get('port')} exists", ok)

    for np in by_kind.get("NetworkPolicy", []):
        sel = np["spec"]["podSelector"].get("matchLabels", {})
        ok = any(subset(sel, t["metadata"]["labels"]) for _, _, t in pod_templates(docs))
        check(f"NetworkPolicy/{np['metadata']['name']} applies to the exporter pods", ok)
        ports = {p.get("port") for r in np["spec"].get("ingress", []) for p in r.get("ports", [])}
        check(f"NetworkPolicy/{np['metadata']['name']} admits the metrics port", 9797 in ports)

    for f, d, t in pod_templates(docs):
        what = f"{d['kind']}/{d['metadata']['name']}"
        spec = t["spec"]
        pod_sc = spec.get("securityContext", {})
        for v in spec.get("volumes", []):
            if "configMap" in v:
                ref = v["configMap"]["name"]
                check(f"{what}: ConfigMap {ref} is defined", ("ConfigMap", ref) in names)
            if "secret" in v:
                ref = v["secret"]["secretName"]
                check(f"{what}: Secret {ref} is defined", ("Secret", ref) in names)
                mode = v["secret"].get("defaultMode", 0o644)
                readable = bool(mode & 0o004) or (bool(mode & 0o040) and "fsGroup" in pod_sc)
                check(f"{what}: Secret {ref} files are readable by the non-root user", readable,
                      f"defaultMode {oct(mode)} with fsGroup {pod_sc.get('fsGroup')}")
        check(f"{what}: pod runs as non-root", pod_sc.get("runAsNonRoot") is True)
        check(f"{what}: no service account token", spec.get("automountServiceAccountToken") is False)
        for c in spec["containers"]:
            sc = c.get("securityContext", {})
            check(f"{what}/{c['name']}: read-only root file system",
                  sc.get("readOnlyRootFilesystem") is True)
            check(f"{what}/{c['name']}: no privilege escalation",
                  sc.get("allowPrivilegeEscalation") is False)
            check(f"{what}/{c['name']}: all capabilities dropped",
                  "ALL" in sc.get("capabilities", {}).get("drop", []))
            mounts = [m["mountPath"] for m in c.get("volumeMounts", [])]
            for arg in c.get("args", []):
                if arg.startswith("--config.file="):
                    p = arg.split("=", 1)[1]
                    check(f"{what}/{c['name']}: {p} is on a mounted volume",
                          any(p == m or p.startswith(m.rstrip("/") + "/") for m in mounts))
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    check(f"{what}/{c['name']}: env {e['name']} refers to a defined Secret",
                          ("Secret", ref["name"]) in names)


def check_configmap_configs(docs, exporter):
    for f, d in docs:
        if d["kind"] != "ConfigMap" or "config.yaml" not in d.get("data", {}):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            creds = Path(tmp) / "credentials"
            creds.mkdir()
            for name in ("access_key", "secret_key", "security_token", "password"):
                (creds / name).write_text(f"dummy-{name}\n")
            text = d["data"]["config.yaml"].replace("/etc/dcs-exporter/credentials", str(creds))
            cfg = Path(tmp) / "config.yaml"
            cfg.write_text(text)
            env = dict(os.environ, HUAWEICLOUD_SDK_AK="DUMMYACCESSKEY")
            r = subprocess.run([exporter, "check-config", f"--config.file={cfg}"],
                               capture_output=True, text=True, env=env, timeout=60)
            check(f"{f}: ConfigMap/{d['metadata']['name']} config passes check-config",
                  r.returncode == 0, (r.stdout + r.stderr).strip().replace("\n", " | "))


def check_dockerfile():
    path = ROOT / "Dockerfile"
    text = path.read_text()
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
    froms = [l for l in lines if l.upper().startswith("FROM ")]
    check("Dockerfile: multi-stage build", len(froms) >= 2, f"{len(froms)} FROM lines")
    final = text[text.rfind("\nFROM "):]
    users = re.findall(r"^USER\s+(\S+)", final, re.M)
    check("Dockerfile: the final stage runs as a non-root user",
          bool(users) and users[-1].split(":")[0] not in ("0", "root"), f"USER {users}")
    check("Dockerfile: the final stage copies only the built binary",
          bool(re.search(r"^COPY --from=\S+ \S+dcs-key-exporter \S+$", final, re.M)))
    check("Dockerfile: exec-form ENTRYPOINT", bool(re.search(r'^ENTRYPOINT \[".+"\]$', final, re.M)))
    check("Dockerfile: no ADD from URLs", not re.search(r"^ADD\s+https?://", text, re.M))
    check("Dockerfile: builds with --locked", "--locked" in text)
    ignore = (ROOT / ".dockerignore").read_text().split()
    check(".dockerignore keeps target/ and .git/ out of the context",
          "target/" in ignore and ".git/" in ignore)


def check_systemd(exporter):
    unit = ROOT / "deploy" / "systemd" / "dcs-key-exporter.service"
    text = unit.read_text()
    for key in ("NoNewPrivileges=yes", "ProtectSystem=strict", "DynamicUser=yes",
                "CapabilityBoundingSet=\n", "MemoryDenyWriteExecute=yes", "ProtectHome=yes",
                "LimitNOFILE="):
        check(f"systemd unit sets {key.strip()}", key in text)
    check("systemd unit grants no writable path",
          not re.search(r"^(ReadWritePaths|StateDirectory|LogsDirectory|CacheDirectory)=", text, re.M))
    if shutil.which("systemd-analyze") is None:
        check("systemd-analyze verify", True, "skipped: systemd-analyze not installed")
        return
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / unit.name
        copy.write_text(text.replace("/usr/local/bin/dcs-key-exporter", str(Path(exporter).resolve())))
        r = subprocess.run(["systemd-analyze", "verify", str(copy)],
                           capture_output=True, text=True, timeout=60)
        out = (r.stdout + r.stderr).strip()
        check("systemd-analyze verify: no errors or warnings", r.returncode == 0 and not out,
              out.replace("\n", " | "))


def check_prometheus_config():
    if shutil.which("promtool") is None:
        check("promtool check config", False, "promtool is not installed")
        return
    src = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        text = src.replace("/etc/prometheus/", f"{base}/")
        for rel in re.findall(rf"{re.escape(str(base))}/(\S+)", text):
            p = base / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if not p.exists():
                p.write_text("")
        shutil.copy(ROOT / "config" / "alerts.yml", base / "rules" / "dcs-key-exporter-alerts.yml")
        cfg = base / "prometheus.yml"
        cfg.write_text(text)
        r = subprocess.run(["promtool", "check", "config", str(cfg)], capture_output=True, text=True)
        out = (r.stdout + r.stderr).strip()
        if r.returncode != 0 and "kubernetes_sd_configs not found" in out:
            # Debian's Prometheus is built without Kubernetes service discovery: check the other
            # jobs, and the Kubernetes one only as YAML.
            doc = yaml.safe_load(text)
            doc["scrape_configs"] = [j for j in doc["scrape_configs"] if "kubernetes_sd_configs" not in j]
            cfg.write_text(yaml.safe_dump(doc))
            r = subprocess.run(["promtool", "check", "config", str(cfg)], capture_output=True, text=True)
            out = (r.stdout + r.stderr).strip()
            check("promtool check config: deploy/prometheus/prometheus.yml", r.returncode == 0,
                  "Kubernetes job skipped: this promtool has no kubernetes_sd_configs"
                  if r.returncode == 0 else out.replace("\n", " | "))
        else:
            check("promtool check config: deploy/prometheus/prometheus.yml", r.returncode == 0,
                  out.replace("\n", " | "))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_no_writes(exporter):
    if shutil.which("strace") is None:
        check("the exporter opens no file for writing", False, "strace is not installed")
        return
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace"
        proc = subprocess.Popen(
            ["strace", "-f", "-qq", "-o", str(trace),
             "-e", "trace=open,openat,openat2,creat,mkdir,mkdirat,rename,renameat,renameat2,"
                   "unlink,unlinkat,truncate,symlink,symlinkat,link,linkat",
             exporter, "--demo", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp)
        served = 0
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline and served < 5:
                try:
                    for path in ("/metrics", "/", "/-/ready"):
                        urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).read()
                    served += 1
                except OSError:
                    pass
                time.sleep(1)
            urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{port}/-/reload", method="POST"), timeout=10).read()
        except OSError:
            pass
        finally:
            # Stop the exporter itself (strace's child); strace then exits with it.
            try:
                children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
            except OSError:
                children = []
            for pid in children:
                try:
                    os.kill(int(pid), signal.SIGTERM)
                except OSError:
                    pass
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        calls = trace.read_text().splitlines()
        writes = [c for c in calls
                  if re.search(r"O_WRONLY|O_RDWR|O_CREAT|O_TRUNC", c)
                  or re.search(r"\b(creat|mkdir|mkdirat|rename\w*|unlink\w*|truncate|symlink\w*|link\w*)\(", c)]
        check("the exporter (--demo, scrapes, a reload) opens no file for writing",
              served >= 5 and not writes,
              f"{len(calls)} file calls, all read-only" if served >= 5 and not writes
              else f"served {served} rounds; writes: {writes[:5]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exporter-bin", required=True)
    args = ap.parse_args()
    args.exporter_bin = str(Path(args.exporter_bin).resolve())
    docs = manifests()
    check_schemas(docs)
    check_references(docs)
    check_configmap_configs(docs, args.exporter_bin)
    check_dockerfile()
    check_systemd(args.exporter_bin)
    check_prometheus_config()
    check_no_writes(args.exporter_bin)
    passed = sum(results)
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
