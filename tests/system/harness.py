"""What the system checks share: results, processes, HTTP.

Each check in this folder starts real processes (the exporter, Prometheus,
Chromium) on loopback ports, prints one PASS/FAIL line per check and ends with
`N passed, M failed`; exit code 0 when all passed, 1 when a check failed, 2
when the setup failed. Python 3 standard library only.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


class SetupError(Exception):
    """The check could not get as far as running its checks."""


class Results:
    """Prints one line per check as it is made, and the closing summary."""

    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def check(self, ok, name, detail=""):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print(f"{'PASS' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else ""), flush=True)
        return ok

    def ok(self, name, detail=""):
        self.check(True, name, detail)

    def fail(self, name, detail=""):
        self.check(False, name, detail)

    def skip(self, name, why):
        self.skipped += 1
        print(f"SKIP {name}: {why}", flush=True)

    def finish(self, setup_failed=False):
        """Prints the summary; returns the exit code."""
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        print(f"{self.passed} passed, {self.failed} failed{skipped}", flush=True)
        if setup_failed:
            return 2
        return 1 if self.failed else 0


def run_check(prefix, run, keep=False, keep_on_failure=False):
    """Runs `run(results, tmp)` with a fresh temporary folder; returns the exit code.

    A SetupError counts as a failed `setup` check and makes the exit code 2. SIGTERM ends the
    run like Ctrl-C, so that `finally` blocks stop the processes. The folder is removed
    afterwards unless `keep`, or `keep_on_failure` and a check failed."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = Results()
    tmp = tempfile.mkdtemp(prefix=prefix)
    setup_failed = False
    try:
        run(results, tmp)
    except SetupError as e:
        setup_failed = True
        results.fail("setup", str(e))
    finally:
        if keep or (keep_on_failure and results.failed):
            print(f"logs and config kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return results.finish(setup_failed)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd, log_path):
    """Starts cmd in its own process group, stdout and stderr to log_path."""
    log = open(log_path, "wb")
    try:
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as e:
        raise SetupError(f"cannot start {cmd[0]}: {e}") from e
    finally:
        log.close()


def start_demo(exporter_bin, log_path):
    """Starts `exporter_bin --demo` on a free loopback port; returns (process, base URL)."""
    port = free_port()
    proc = start([exporter_bin, "--demo", f"--web.listen-address=127.0.0.1:{port}"], log_path)
    return proc, f"http://127.0.0.1:{port}"


def stop(proc, grace=5):
    """Ends the process group of proc: SIGTERM, then SIGKILL after `grace` seconds.

    Returns the exit code, or None if it had to be killed (or was never started)."""
    if proc is None:
        return None
    if proc.poll() is not None:
        return proc.returncode
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        return proc.wait(timeout=grace)
    except (ProcessLookupError, PermissionError):
        return proc.poll()
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        return None


def tail(path, lines=20):
    """The last lines of a log file, indented, for error messages."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def fetch(url, headers=None, timeout=5):
    """Returns (status, headers, body); (None, {}, error text) when nothing answered."""
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()
    except (urllib.error.URLError, OSError) as e:
        return None, {}, str(e).encode()


def http_get(url, timeout=5):
    """Returns (status, body) or (None, error text)."""
    status, _, body = fetch(url, timeout=timeout)
    return status, body


def wait_ready(name, url, proc, log_path, deadline):
    """Polls url until it answers 200; fails when proc exits or the deadline passes."""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SetupError(f"{name} exited with code {proc.returncode} before it was ready:\n{tail(log_path)}")
        status, _ = http_get(url, timeout=2)
        if status == 200:
            return
        time.sleep(0.5)
    raise SetupError(f"{name} not ready at {url} in time:\n{tail(log_path)}")
