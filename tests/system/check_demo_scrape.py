#!/usr/bin/env python3
"""Checks a real scrape of `dcs-key-exporter --demo`.

Starts the demo on a free loopback port and checks that:
  - hot keys, big keys and an unsupported analysis are on /metrics within 15 seconds,
  - `promtool check metrics` accepts the exposition, plain and gzip-compressed,
  - /-/healthy and /-/ready answer 200 and SIGTERM ends the process with exit code 0.
Prints one line per check and a closing `N passed, M failed`; exits 1 on any failure.

Usage: check_demo_scrape.py --exporter-bin PATH
"""
import argparse
import gzip
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

RESULTS = []


def check(name, ok, detail=""):
    RESULTS.append(ok)
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail and not ok else ''}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, headers=None):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, r.headers, r.read()


def promtool_ok(text):
    with tempfile.NamedTemporaryFile("wb", suffix=".prom", delete=False) as f:
        f.write(text)
        path = f.name
    try:
        with open(path, "rb") as f:
            p = subprocess.run(["promtool", "check", "metrics"], stdin=f, capture_output=True)
        # promtool exits 1 on errors; lint warnings (exit 3 on some versions) are printed too.
        out = (p.stdout + p.stderr).decode(errors="replace").strip()
        return p.returncode == 0, out
    finally:
        os.unlink(path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exporter-bin", required=True)
    args = ap.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [args.exporter_bin, "--demo", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=log, start_new_session=True)
    started = time.monotonic()
    try:
        body = b""
        wanted = [b"dcs_hotkey_frequency{", b"dcs_bigkey_size_bytes{", b"dcs_bigkey_elements{",
                  b'dcs_analysis_supported{instance_id="6a1f3c2e-0d4b-4e8a-9f21-3b7c5d9e1a04",'
                  b'instance_name="legacy-redis30",analysis="hotkey"} 0']
        while time.monotonic() - started < 15:
            try:
                _, _, body = get(base + "/metrics")
                if all(w in body for w in wanted):
                    break
            except OSError:
                pass
            time.sleep(0.25)
        elapsed = time.monotonic() - started
        missing = [w.decode() for w in wanted if w not in body]
        check("hot keys, big keys and an unsupported analysis within 15 s",
              not missing, f"missing after {elapsed:.1f}s: {missing}")

        status, headers, plain = get(base + "/metrics")
        check("metrics content type",
              headers.get("Content-Type", "").startswith("text/plain; version=0.0.4"),
              headers.get("Content-Type", ""))
        ok, out = promtool_ok(plain)
        check("promtool check metrics (plain)", ok, out)
        status, headers, gz = get(base + "/metrics", {"Accept-Encoding": "gzip"})
        check("gzip when accepted", headers.get("Content-Encoding") == "gzip")
        try:
            unzipped = gzip.decompress(gz)
            ok, out = promtool_ok(unzipped)
            check("promtool check metrics (gunzipped)", ok, out)
        except OSError as e:
            check("promtool check metrics (gunzipped)", False, str(e))
        for path in ["/-/healthy", "/-/ready", "/"]:
            try:
                status, _, _ = get(base + path)
            except OSError as e:
                status = str(e)
            check(f"GET {path} answers 200", status == 200, str(status))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            code = "hung"
        check("SIGTERM ends the exporter with exit code 0", code == 0, f"exit {code}")
        if not all(RESULTS):
            log.seek(0)
            sys.stdout.write(log.read().decode(errors="replace")[-4000:])
    passed = sum(RESULTS)
    print(f"{passed} passed, {len(RESULTS) - passed} failed")
    return 0 if all(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(main())
