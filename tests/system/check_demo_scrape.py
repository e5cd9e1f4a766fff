#!/usr/bin/env python3
"""Checks a real scrape of `dcs-key-exporter --demo`.

Starts the demo on a free loopback port and checks that:
  - hot keys, big keys and an unsupported analysis are on /metrics within 15 seconds,
  - `promtool check metrics` accepts the exposition, plain and gzip-compressed,
  - /-/healthy and /-/ready answer 200 and SIGTERM ends the process with exit code 0.
Prints one line per check and a closing `N passed, M failed`; exits 1 on any failure, 2 when
the setup failed.

Usage: check_demo_scrape.py --exporter-bin PATH
"""
import argparse
import gzip
import os
import subprocess
import sys
import tempfile
import time

from harness import SetupError, fetch, run_check, start_demo, stop, tail

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


def run(args, results, tmp):
    log_path = os.path.join(tmp, "exporter.log")
    proc, base = start_demo(args.exporter_bin, log_path)
    started = time.monotonic()
    try:
        body = b""
        wanted = [b"dcs_hotkey_frequency{", b"dcs_bigkey_size_bytes{", b"dcs_bigkey_elements{",
                  b'dcs_analysis_supported{instance_id="6a1f3c2e-0d4b-4e8a-9f21-3b7c5d9e1a04",'
                  b'instance_name="legacy-redis30",analysis="hotkey"} 0']
        while time.monotonic() - started < 15:
            if proc.poll() is not None:
                raise SetupError(f"the demo exited with code {proc.returncode}:\n{tail(log_path)}")
            status, _, body = fetch(base + "/metrics")
            if status == 200 and all(w in body for w in wanted):
                break
            time.sleep(0.25)
        elapsed = time.monotonic() - started
        missing = [w.decode() for w in wanted if w not in body]
        results.check(not missing, "hot keys, big keys and an unsupported analysis within 15 s",
                      f"{elapsed:.1f}s" if not missing else f"missing after {elapsed:.1f}s: {missing}")

        _, headers, plain = fetch(base + "/metrics")
        content_type = headers.get("Content-Type", "")
        results.check(content_type.startswith("text/plain; version=0.0.4"), "metrics content type", content_type)
        ok, out = promtool_ok(plain)
        results.check(ok, "promtool check metrics (plain)", "" if ok else out)
        _, headers, gz = fetch(base + "/metrics", {"Accept-Encoding": "gzip"})
        results.check(headers.get("Content-Encoding") == "gzip", "gzip when accepted")
        try:
            ok, out = promtool_ok(gzip.decompress(gz))
            results.check(ok, "promtool check metrics (gunzipped)", "" if ok else out)
        except OSError as e:
            results.fail("promtool check metrics (gunzipped)", str(e))
        for path in ["/-/healthy", "/-/ready", "/"]:
            status, _, _ = fetch(base + path)
            results.check(status == 200, f"GET {path} answers 200", str(status))
    finally:
        code = stop(proc, grace=15)
        results.check(code == 0, "SIGTERM ends the exporter with exit code 0",
                      f"exit {code}" if code is not None else "killed after 15 s")
        if results.failed:
            print(tail(log_path, 40))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exporter-bin", required=True)
    args = ap.parse_args()
    return run_check("dcs-demo-scrape-", lambda results, tmp: run(args, results, tmp))


if __name__ == "__main__":
    sys.exit(main())
