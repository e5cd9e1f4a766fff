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

Then it runs a fleet: `<exporter-bin> simulate --instances=300` and the
exporter discovering those 300 instances, waits until most have results, and
checks that

* the summary table has one row per instance, and every row links to an
  element of the page (the instance's details) that exists,
* laid out by Chromium at 1280x1000, the summary fits on one screen (1000 px)
  per 40 instances: no row is taller than 25 px, and it is no wider than the
  window. Headless Chromium reports the layout through a copy of the page with
  a measuring script appended (the served page forbids scripts).

A screenshot of the top of the fleet page is written next to --screenshot
(`-fleet.png`).

Then it scans a real `redis-server` (filled with keys of every type) as two
targets: `native-ok` with the default user, and `native-noperm` with an ACL
user that may not run PTTL, so that its big key scan (which counts the key
families) fails `auth`. Once both have been scanned it checks, on the page as
Chromium renders it, that

* below the introduction the page speaks of scans and servers: no DCS, no
  task, no console,
* the summary's heading counts exactly the state cells of its table, one
  column per analysis (key families and hot slots included),
* key family memory is in binary units like every other size (no raw
  bytes), and the families of native-ok show their keys without a TTL,
* native-noperm's key families are failing with the big key scan they come
  with, and say so with its error (PTTL refused), not "none".

A screenshot of it is written next to --screenshot (`-native.png`). Without
`redis-server` this part is skipped, or fails with --require-redis.

Usage:
    python3 tests/system/status_page.py --exporter-bin target/debug/dcs-key-exporter [--screenshot /tmp/status.png] [--require-redis]

Needs Chromium (Debian package `chromium`). Prints one line per check and
`N passed, M failed`; exits 1 when a check failed, 2 when the setup failed.
Python 3 standard library only.
"""

import argparse
import html
import html.parser
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.parse

from check_prometheus import redis_command, start_redis
from harness import SetupError, free_port, http_get, run_check, start, start_demo, stop, tail, wait_ready

WIDTH, HEIGHT = 1280, 2000
FLEET = 300
SCREEN_W, SCREEN_H = 1280, 1000
# The summary must fit on one screen per this many instances.
ROWS_PER_SCREEN = 40
SIM_AK, SIM_SK, SIM_PROJECT = "SIMULATORACCESSKEY00", "simulator-secret-key", "0123456789abcdef0123456789abcdef"
# Appended to a copy of the page: reports the summary table's layout in an attribute of <body>.
MEASURE = """<script>
(function () {
  var t = document.querySelector("table.summary");
  var out = {found: !!t, viewport: window.innerWidth};
  if (t) {
    var rows = Array.prototype.slice.call(t.querySelectorAll("tr"), 1);
    var r = t.getBoundingClientRect();
    out.rows = rows.length;
    out.height = r.height;
    out.width = r.width;
    out.right = r.right;
    out.max_row = Math.max.apply(null, rows.map(function (x) { return x.getBoundingClientRect().height; }));
  }
  document.body.setAttribute("data-summary", JSON.stringify(out));
})();
</script>"""
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


class Anchors(html.parser.HTMLParser):
    """The summary table's row links (href="#...") and every id in the document."""

    def __init__(self):
        super().__init__()
        self.ids = set()
        self.links = []
        self._in_summary = False
        self._row_links = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "table":
            self._in_summary = "summary" in (attrs.get("class") or "").split()
        elif tag == "tr" and self._in_summary:
            self._row_links = []
        elif tag == "a" and self._row_links is not None and (attrs.get("href") or "").startswith("#"):
            self._row_links.append(attrs["href"][1:])

    def handle_endtag(self, tag):
        if tag == "tr" and self._row_links is not None:
            self.links.append(self._row_links)
            self._row_links = None
        elif tag == "table":
            self._in_summary = False


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


def fleet_config(sim_port):
    return f"""clouds:
  - name: fleet
    region: cn-north-4
    endpoint: http://127.0.0.1:{sim_port}
    project_id: {SIM_PROJECT}
    auth:
      access_key: {SIM_AK}
      secret_key: {SIM_SK}
    discovery:
      refresh_interval: 5m
scheduler:
  start_jitter: 5s
"""


def run_fleet(args, results, tmp):
    """The status page of a 300-instance fleet: one summary row each, a few screens in all."""
    deadline = time.monotonic() + args.fleet_timeout
    sim = exporter = None
    try:
        sim_port = free_port()
        sim_log = os.path.join(tmp, "simulate.log")
        sim = start([args.exporter_bin, "simulate", f"--instances={FLEET}", "--seed=7", "--sim.time-scale=0.01",
                     f"--web.listen-address=127.0.0.1:{sim_port}", "--log.level=warn"], sim_log)
        # The simulator answers any unknown path with 404 DCS.4001: any answer means it is up.
        while http_get(f"http://127.0.0.1:{sim_port}/", timeout=2)[0] is None:
            if sim.poll() is not None or time.monotonic() > deadline:
                raise SetupError(f"simulator did not start:\n{tail(sim_log)}")
            time.sleep(0.5)
        cfg = os.path.join(tmp, "fleet.yaml")
        with open(cfg, "w") as f:
            f.write(fleet_config(sim_port))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        exp_log = os.path.join(tmp, "fleet-exporter.log")
        exporter = start([args.exporter_bin, f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{port}",
                          "--log.level=warn"], exp_log)
        wait_ready("exporter", f"{base}/-/ready", exporter, exp_log, deadline)

        # Wait until (nearly) every instance has a result, so rows carry their keys.
        ids, done = set(), set()
        while time.monotonic() < deadline:
            if exporter.poll() is not None:
                raise SetupError(f"exporter exited with code {exporter.returncode}:\n{tail(exp_log)}")
            status, body = http_get(f"{base}/metrics", timeout=10)
            text = body.decode("utf-8", "replace") if status == 200 else ""
            ids = instance_ids(text)
            done = instance_ids(text, "dcs_analysis_last_success_timestamp_seconds")
            if len(ids) >= FLEET and len(done) >= FLEET * 0.95:
                break
            time.sleep(2)
        results.check(len(ids) == FLEET, "fleet discovered", f"{len(ids)} of {FLEET} instances on /metrics, {len(done)} with a result")

        status, body = http_get(f"{base}/", timeout=10)
        page = body.decode("utf-8", "replace") if status == 200 else ""
        results.check(status == 200, "fleet status page", f"HTTP {status}, {len(body)} bytes")

        budget = max(10, deadline - time.monotonic())
        rc, dom, err = run_chromium(args.chromium, ["--dump-dom", f"--window-size={SCREEN_W},{SCREEN_H}", f"{base}/"],
                                    os.path.join(tmp, "profile-fleet-dom"), budget)
        anchors = Anchors()
        anchors.feed(dom)
        rows = anchors.links[1:]  # the first row is the header
        dangling = [r for r in rows if not r or r[0] not in anchors.ids]
        results.check(
            len(rows) == FLEET and not dangling,
            "summary: one row per instance, each linking to its details",
            f"{len(rows)} rows, {len(rows) - len(dangling)} with a link to an existing id"
            + (f"; dangling: {dangling[:3]}" if dangling else ""),
        )
        missing = sorted(i for i in ids if i not in dom)
        results.check(not missing, "fleet page names every instance", f"{len(missing)} missing" if missing else f"{len(ids)} ids")

        copy = os.path.join(tmp, "measure.html")
        with open(copy, "w", encoding="utf-8") as f:
            f.write(page.replace("</body>", MEASURE + "\n</body>", 1))
        budget = max(10, deadline - time.monotonic())
        rc, dom, err = run_chromium(args.chromium, ["--dump-dom", f"--window-size={SCREEN_W},{SCREEN_H}", f"file://{copy}"],
                                    os.path.join(tmp, "profile-measure"), budget)
        m = re.search(r'data-summary="([^"]*)"', dom)
        layout = json.loads(html.unescape(m.group(1))) if m else {}
        limit = SCREEN_H / ROWS_PER_SCREEN
        screens = layout.get("height", 0) / SCREEN_H
        results.check(
            layout.get("rows") == FLEET and 0 < layout.get("max_row", 1e9) <= limit,
            f"summary fits one {SCREEN_H} px screen per {ROWS_PER_SCREEN} instances",
            f"{layout.get('rows')} rows, {layout.get('height', 0):.0f} px ({screens:.1f} screens), "
            f"tallest row {layout.get('max_row', 0):.1f} px (limit {limit:.0f})" if layout else f"no layout reported (exit {rc}): {err.strip()[-300:]}",
        )
        results.check(
            bool(layout) and layout.get("right", 1e9) <= layout.get("viewport", 0),
            "summary fits the window's width",
            f"table {layout.get('width', 0):.0f} px wide, right edge {layout.get('right', 0):.0f} px, window {layout.get('viewport')} px",
        )

        shot = os.path.abspath(args.screenshot)
        shot = (shot[:-4] if shot.endswith(".png") else shot) + "-fleet.png"
        if os.path.exists(shot):
            os.remove(shot)
        budget = max(10, deadline - time.monotonic())
        rc, _, err = run_chromium(args.chromium, [f"--screenshot={shot}", f"--window-size={SCREEN_W},{SCREEN_H}", f"{base}/"],
                                  os.path.join(tmp, "profile-fleet-shot"), budget)
        size = png_size(shot) if os.path.exists(shot) else None
        results.check(size == (SCREEN_W, SCREEN_H), "fleet screenshot", shot if size else f"no PNG written (exit {rc})")
    finally:
        stop(exporter)
        stop(sim)


class PageText(html.parser.HTMLParser):
    """The text of a rendered page, the text of each `<section>` (by id), and the summary
    table's rows as lists of cell texts (the heading row first)."""

    def __init__(self):
        super().__init__()
        self.parts = []
        self.sections = {}
        self.rows = []
        self._section = None
        self._in_summary = False
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._section = attrs.get("id")
            self.sections[self._section] = []
        elif tag == "table":
            self._in_summary = "summary" in (attrs.get("class") or "").split()
        elif tag == "tr" and self._in_summary:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "section":
            self._section = None
        elif tag == "table":
            self._in_summary = False
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None
        elif tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        self.parts.append(data)
        if self._section is not None:
            self.sections[self._section].append(data)
        if self._cell is not None:
            self._cell.append(data)

    def text(self, section=None):
        parts = self.parts if section is None else self.sections.get(section, [])
        return " ".join(" ".join(parts).split())


def redis_cli(port, *args):
    """Sends one command to the server on `port`; returns the raw reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(redis_command(*args))
        return sock.recv(65536)


def native_config(path, port):
    with open(path, "w", encoding="utf-8") as f:
        f.write(
            "redis:\n"
            f"  - {{id: native-ok, name: native-ok, address: 'redis://127.0.0.1:{port}'}}\n"
            f"  - {{id: native-noperm, name: native-noperm, address: 'redis://nopttl:pw@127.0.0.1:{port}'}}\n"
            "scheduler: {start_jitter: 0s}\n"
        )


def run_native(args, results, tmp):
    """The status page of two Redis targets, one whose big key scan fails for want of PTTL."""
    redis_bin = shutil.which(args.redis_server)
    if not redis_bin:
        if args.require_redis:
            raise SetupError(f"{args.redis_server} not found (--require-redis)")
        results.skip("status page of Redis targets", f"{args.redis_server} not found")
        return
    deadline = time.monotonic() + args.timeout
    procs = []
    try:
        port = start_redis(redis_bin, tmp, procs, deadline)
        reply = redis_cli(port, "ACL", "SETUSER", "nopttl", "on", ">pw", "~*", "&*", "+@all", "-pttl")
        if not reply.startswith(b"+OK"):
            raise SetupError(f"ACL SETUSER refused: {reply!r}")
        cfg = os.path.join(tmp, "native.yaml")
        native_config(cfg, port)
        web = free_port()
        base = f"http://127.0.0.1:{web}"
        log = os.path.join(tmp, "native-exporter.log")
        procs.append(start([args.exporter_bin, f"--config.file={cfg}", f"--web.listen-address=127.0.0.1:{web}"], log))
        wait_ready("exporter", f"{base}/-/ready", procs[-1], log, deadline)

        # Until native-ok has key families and native-noperm's big key scan has failed.
        scanned = failed = False
        while not (scanned and failed):
            if procs[-1].poll() is not None:
                raise SetupError(f"exporter exited with code {procs[-1].returncode}:\n{tail(log)}")
            if time.monotonic() > deadline:
                raise SetupError(f"no key families of native-ok or no failure of native-noperm within {args.timeout}s:\n{tail(log)}")
            time.sleep(1)
            status, body = http_get(f"{base}/metrics")
            text = body.decode("utf-8", "replace") if status == 200 else ""
            scanned = 'dcs_keyfamily_keys_without_ttl{instance_id="native-ok"' in text
            failed = re.search(r'dcs_analysis_consecutive_failures\{instance_id="native-noperm",[^}]*analysis="bigkey"\} [1-9]', text) is not None
        results.ok("Redis targets scanned", "native-ok has key families, native-noperm's big key scan failed")

        budget = max(10, deadline - time.monotonic())
        rc, dom, err = run_chromium(args.chromium, ["--dump-dom", f"--window-size={WIDTH},{HEIGHT}", f"{base}/"],
                                    os.path.join(tmp, "profile-native"), budget)
        if rc != 0 or "<html" not in dom.lower():
            raise SetupError(f"chromium --dump-dom failed (exit {rc}): {err.strip()[-300:]}")
        page = PageText()
        page.feed(dom)
        text = page.text()
        body = text[text.find("Summary"):]
        words = [w for w in ("DCS", "task", "console", "manual scan") if w in body]
        results.check(not words, "a page of Redis targets speaks of scans and servers",
                      "no DCS, task, console" if not words else "found: " + ", ".join(words))

        head, rows = page.rows[0], page.rows[1:]
        states = ("ok", "running", "failing", "unsupported", "waiting")
        columns = [i for i, h in enumerate(head) if h in ("hot keys", "big keys", "key families", "hot slots")]
        cells = {s: 0 for s in states}
        for row in rows:
            for i in columns:
                state = row[i].split(" ")[0]
                if state in cells:
                    cells[state] += 1
        m = re.search(r"analyses: (\d+) ok, (\d+) running, (\d+) failing, (\d+) unsupported, (\d+) waiting", text)
        counted = dict(zip(states, map(int, m.groups()))) if m else None
        results.check(
            counted == cells and len(columns) == 4,
            "the summary counts the cells it shows",
            f"columns {[head[i] for i in columns]}; heading {counted}, cells {cells}",
        )

        ok = page.text("i-native-ok")
        families = ok[ok.find("keyfamily"):]
        raw = re.findall(r"\d{5,} bytes", families)
        sized = re.search(r"without TTL memory .*?\d+\.\d (KiB|MiB)", families)
        results.check(not raw and sized is not None, "key family memory in binary units, with keys without a TTL",
                      sized.group(0)[:120] if sized and not raw else f"raw bytes: {raw[:3]}; section: {families[:300]}")

        noperm = page.text("i-native-noperm")
        fam = noperm[noperm.find("keyfamily"):]
        said = re.search(r"last error none of their own: they come with the big key scan, whose last (attempt|\d+ attempts) failed: .*? auth ?: .*?pttl", fam)
        summary_row = next((r for r in rows if r and r[0] == "native-noperm"), [])
        fam_cell = summary_row[head.index("key families")] if summary_row and "key families" in head else ""
        results.check(
            said is not None and fam_cell.startswith("failing"),
            "key families fail with the big key scan they come with, and say why",
            f"summary cell {fam_cell!r}; " + (said.group(0)[:200] if said else f"section: {fam[:400]}"),
        )

        shot = os.path.abspath(args.screenshot)
        shot = (shot[:-4] if shot.endswith(".png") else shot) + "-native.png"
        if os.path.exists(shot):
            os.remove(shot)
        budget = max(10, deadline - time.monotonic())
        rc, _, err = run_chromium(args.chromium, [f"--screenshot={shot}", f"--window-size={WIDTH},{HEIGHT}", f"{base}/"],
                                  os.path.join(tmp, "profile-native-shot"), budget)
        size = png_size(shot) if os.path.exists(shot) else None
        results.check(size == (WIDTH, HEIGHT), "native screenshot", shot if size else f"no PNG written (exit {rc})")
    finally:
        for proc in reversed(procs):
            stop(proc)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exporter-bin", required=True, help="path to the dcs-key-exporter binary")
    parser.add_argument("--screenshot", default="/tmp/status.png", help="where to write the PNG (default /tmp/status.png)")
    parser.add_argument("--chromium", default=None, help="Chromium binary (default: chromium or chromium-browser from PATH)")
    parser.add_argument("--timeout", type=float, default=90, help="time budget of the demo check in seconds (default 90)")
    parser.add_argument("--fleet-timeout", type=float, default=180, help=f"time budget of the {FLEET}-instance check in seconds (default 180)")
    parser.add_argument("--redis-server", default="redis-server", help="redis-server binary for the Redis target page (default: from PATH)")
    parser.add_argument("--require-redis", action="store_true", help="fail instead of skipping the Redis target page without redis-server")
    args = parser.parse_args()

    if not os.path.exists(args.exporter_bin):
        print(f"exporter binary not found: {args.exporter_bin}", file=sys.stderr)
        return 2
    args.chromium = args.chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    if not args.chromium:
        print("chromium not found (apt-get install chromium, or pass --chromium)", file=sys.stderr)
        return 2

    def all_three(results, tmp):
        run(args, results, tmp)
        run_fleet(args, results, tmp)
        run_native(args, results, tmp)

    return run_check("dcs-status-page-", all_three)

if __name__ == "__main__":
    sys.exit(main())
