#!/usr/bin/env python3
"""System check: the exporter's status page, rendered by headless Chromium.

Starts `<exporter-bin> --demo`, waits until /metrics holds hot key metrics,
then renders http://127.0.0.1:PORT/ with headless Chromium twice: once to a
screenshot (--screenshot, default /tmp/status.png) and once with --dump-dom.
Checks that

* the screenshot is a PNG of the requested size,
* the rendered page names every DCS instance that /metrics reports
  (the instance_id labels of dcs_analysis_supported),
* the page loads nothing from elsewhere: every src/href and CSS url() is
  relative or on the page's own origin.

Usage:
    python3 tests/system/status_page.py --exporter-bin target/debug/dcs-key-exporter [--screenshot /tmp/status.png]

Needs Chromium (Debian package `chromium`). Prints one line per check and
`N passed, M failed`; exits 1 when a check failed, 2 when the setup failed.
Python 3 standard library only.
"""

import argparse
import html.parser
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import urllib.parse

from harness import SetupError, http_get, run_check, start_demo, stop, tail

WIDTH, HEIGHT = 1280, 2000
LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
CSS_URL_RE = re.compile(r"""url\(\s*['"]?([^'")\s]+)""", re.I)
CSS_IMPORT_RE = re.compile(r"""@import\s+['"]([^'"]+)""", re.I)


def unescape_label(value):
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def instance_ids(metrics_text, metric="dcs_analysis_supported"):
    """instance_id label values of every sample of metric."""
    ids = set()
    for line in metrics_text.splitlines():
        if line.startswith(metric + "{"):
            for name, value in LABEL_RE.findall(line[len(metric):]):
                if name == "instance_id":
                    ids.add(unescape_label(value))
    return ids


def run_chromium(chromium, args, profile, timeout):
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(proc)
        raise SetupError(f"chromium did not finish within {timeout}s: {' '.join(cmd)}")
    finally:
        stop(proc)
    return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def png_size(path):
    """(width, height) of a PNG file, or None when it is not one."""
    with open(path, "rb") as f:
        head = f.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


class References(html.parser.HTMLParser):
    """Collects every src/href/srcset/action attribute and CSS url() in a document."""

    def __init__(self):
        super().__init__()
        self.refs = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if name in ("src", "href", "action", "poster", "data"):
                self.refs.append((f"<{tag} {name}>", value.strip()))
            elif name == "srcset":
                for part in value.split(","):
                    if part.strip():
                        self.refs.append((f"<{tag} srcset>", part.strip().split()[0]))
            elif name == "style":
                self.refs.extend((f"<{tag} style>", u) for u in CSS_URL_RE.findall(value))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.refs.extend(("<style>", u) for u in CSS_URL_RE.findall(data) + CSS_IMPORT_RE.findall(data))


def foreign(ref, origin):
    """True when ref points somewhere other than the page's own origin."""
    parsed = urllib.parse.urlparse(ref)
    if parsed.scheme in ("", "data", "about", "javascript", "mailto"):
        # Relative, inline data, or protocol-relative (scheme "" with a netloc).
        return bool(parsed.netloc) and parsed.netloc != origin.netloc
    if parsed.scheme in ("http", "https"):
        return (parsed.scheme, parsed.netloc) != (origin.scheme, origin.netloc)
    return True


def run(args, results, tmp):
    deadline = time.monotonic() + args.timeout
    exporter = None
    try:
        log_path = os.path.join(tmp, "exporter.log")
        exporter, base = start_demo(args.exporter_bin, log_path)

        metrics = ""
        while "dcs_hotkey_frequency" not in metrics:
            if exporter.poll() is not None:
                raise SetupError(f"exporter exited with code {exporter.returncode}:\n{tail(log_path)}")
            if time.monotonic() > deadline:
                raise SetupError(f"no dcs_hotkey_frequency in {base}/metrics within {args.timeout}s:\n{tail(log_path)}")
            time.sleep(1)
            status, body = http_get(f"{base}/metrics")
            metrics = body.decode("utf-8", "replace") if status == 200 else ""
        ids = instance_ids(metrics)
        results.check(bool(ids), "demo metrics", f"{len(ids)} instances in dcs_analysis_supported")

        status, body = http_get(f"{base}/")
        results.check(status == 200 and b"<" in body, "GET / answers HTML", f"HTTP {status}")

        shot = os.path.abspath(args.screenshot)
        if os.path.exists(shot):
            os.remove(shot)
        budget = max(10, deadline - time.monotonic())
        rc, _, err = run_chromium(args.chromium, [f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", f"{base}/"], os.path.join(tmp, "profile-shot"), budget)
        size = png_size(shot) if os.path.exists(shot) else None
        results.check(
            size == (WIDTH, HEIGHT),
            "screenshot",
            f"{shot} {size[0]}x{size[1]}, {os.path.getsize(shot)} bytes" if size else f"no PNG written (exit {rc}): {err.strip()[-300:]}",
        )

        budget = max(10, deadline - time.monotonic())
        rc, dom, err = run_chromium(args.chromium, ["--dump-dom", f"--window-size={WIDTH},{HEIGHT}", f"{base}/"], os.path.join(tmp, "profile-dom"), budget)
        results.check(rc == 0 and "<html" in dom.lower(), "dump-dom", f"{len(dom)} characters" if rc == 0 else f"exit {rc}: {err.strip()[-300:]}")

        missing = sorted(i for i in ids if i not in dom)
        results.check(
            bool(ids) and not missing,
            "page lists every demo instance",
            ", ".join(sorted(ids)) if not missing else "missing: " + ", ".join(missing),
        )

        parser = References()
        parser.feed(dom)
        origin = urllib.parse.urlparse(base)
        bad = [f"{where} {ref}" for where, ref in parser.refs if foreign(ref, origin)]
        results.check(not bad, "no external assets", f"{len(parser.refs)} references, all local" if not bad else "; ".join(bad))
    finally:
        stop(exporter)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exporter-bin", required=True, help="path to the dcs-key-exporter binary")
    parser.add_argument("--screenshot", default="/tmp/status.png", help="where to write the PNG (default /tmp/status.png)")
    parser.add_argument("--chromium", default=None, help="Chromium binary (default: chromium or chromium-browser from PATH)")
    parser.add_argument("--timeout", type=float, default=90, help="overall time budget in seconds (default 90)")
    args = parser.parse_args()

    if not os.path.exists(args.exporter_bin):
        print(f"exporter binary not found: {args.exporter_bin}", file=sys.stderr)
        return 2
    args.chromium = args.chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if not args.chromium:
        print("chromium not found (apt-get install chromium, or pass --chromium)", file=sys.stderr)
        return 2

    return run_check("dcs-status-page-", lambda results, tmp: run(args, results, tmp))

if __name__ == "__main__":
    sys.exit(main())
