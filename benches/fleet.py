#!/usr/bin/env python3
"""Fleet-scale benchmark of dcs-key-exporter against the DCS simulator.

For each fleet size (default 30, 300 and 2000 instances) it starts `dcs-key-exporter simulate`
with generated instances and the exporter against it (top 30 hot keys per instance, up to 100
big keys per unit; `--hot-top-n 100` exports every hot key, twice the body), then measures,
side by side in one run:

- scrape throughput: wrk against /metrics, and against nginx serving the very same body saved
  as a static file (same connections, threads and duration), plain and with
  `Accept-Encoding: gzip` (nginx then serves a pre-compressed copy with `gzip_static on`);
- scrape latency (wrk --latency, one connection) while the scheduler is busy;
- memory: VmRSS / VmHWM of the exporter from /proc/PID/status, and RSS bytes per series;
- API economy: API calls per completed analysis (from the exporter's debug log: every request
  attempt and every published result, per instance and analysis) and the lag from a task's
  `finished_at` to the moment its `dcs_analysis_last_success_timestamp_seconds` appears on
  /metrics (polled);
- idle CPU: utime + stime of the exporter over a window with no analysis due (long intervals).

Needs: a Linux machine, Python 3.9+, `wrk` and `nginx` on PATH (Debian: `apt-get install wrk
nginx`), and release binaries (built unless --no-build). Nothing is written outside a temporary
directory; nginx runs unprivileged-style on loopback with a generated config.

    python3 benches/fleet.py                       # 30, 300 and 2000 instances (~15 min)
    python3 benches/fleet.py --instances 300 --json /tmp/fleet.json
    python3 benches/fleet.py --instances 10 --quick  # smoke run (< 1 min)

Prints one line per measurement, a summary table, and exits non-zero when a target is missed
(with --check).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path

import machine
from machine import wrk
from machine import cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
AK = "SIMULATORACCESSKEY00"
SK = "simulator-secret-key"
PROJECT = "0123456789abcdef0123456789abcdef"
# Keys exported per result. The simulator reports up to 100 hot keys per instance (about 95 on
# average) and up to 20 big keys per type; every hot key gives three samples (frequency,
# estimated accesses, size or elements), every big key one. With hot keys cut to 30 a fleet of
# 2,000 gives about 290,000 samples and a 51.5 MB body; `--hot-top-n 100` gives every hot key
# (about 630,000 samples, 115 MB).
HOT_TOP_N = 30
BIG_TOP_N = 100
MIB = 1024 * 1024

TARGETS = {
    "throughput_ratio": 0.5,
    "latency_p99_ms": 20.0,
    "rss_mib_300": 64.0,
    "rss_mib_2000": 200.0,
    "calls_per_analysis_p50": 3.0,
    "lag_p50_s": 3.0,
    "idle_cpu_pct": 1.0,
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# Machine state


def wait_quiet(max_load: float, timeout: float, need_load: bool = True) -> dict:
    return machine.wait_quiet(max_load, timeout, need_load, log)


# --------------------------------------------------------------------------------------------
# Processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            c.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answers on 127.0.0.1:{port}{path}")


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def children(pid: int) -> list[int]:
    """Child processes of `pid` (nginx's workers)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def proc_status(pid: int) -> dict:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM", "Threads"):
            out[k] = int(v.split()[0])
    return out


# --------------------------------------------------------------------------------------------
# HTTP


def get(port: int, path: str, gz: bool = False, timeout: float = 60.0) -> tuple[bytes, dict]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Accept-Encoding": "gzip"} if gz else {}
    c.request("GET", path, headers=headers)
    r = c.getresponse()
    body = r.read()
    if r.status != 200:
        raise RuntimeError(f"GET {path}: {r.status}")
    return body, {k.lower(): v for k, v in r.getheaders()}


def sdk_sign(method: str, host: str, path: str, query: dict, body: bytes) -> dict:
    """SDK-HMAC-SHA256, as described in docs/dcs-api.md §5.1."""
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    headers = {
        "content-type": "application/json",
        "host": host,
        "x-project-id": PROJECT,
        "x-sdk-date": date,
    }
    enc = lambda s: urllib.parse.quote(str(s), safe="-_.~")  # noqa: E731
    uri = "/".join(enc(urllib.parse.unquote(seg)) for seg in path.split("/"))
    if not uri.endswith("/"):
        uri += "/"
    q = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(query.items()))
    names = sorted(headers)
    canonical = "\n".join(
        [
            method,
            uri,
            q,
            "".join(f"{n}:{headers[n].strip()}\n" for n in names),
            ";".join(names),
            hashlib.sha256(body).hexdigest(),
        ]
    )
    sts = f"SDK-HMAC-SHA256\n{date}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    sig = hmac.new(SK.encode(), sts.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders={';'.join(names)}, Signature={sig}"
    )
    return headers


def list_instances(port: int) -> list[dict]:
    host = f"127.0.0.1:{port}"
    path = f"/v2/{PROJECT}/instances"
    out: list[dict] = []
    while True:
        query = {"offset": len(out), "limit": 1000}
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        c.request(
            "GET",
            path + "?" + urllib.parse.urlencode(query),
            headers=sdk_sign("GET", host, path, query, b""),
        )
        r = c.getresponse()
        data = json.loads(r.read())
        if r.status != 200:
            raise RuntimeError(f"ListInstances: {r.status} {data}")
        page = data.get("instances") or []
        out.extend(page)
        if not page or len(out) >= int(data.get("instance_num", len(out))):
            return out


NGINX_CONF = """\
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    client_body_temp_path {dir}/tmp-body;
    proxy_temp_path {dir}/tmp-proxy;
    fastcgi_temp_path {dir}/tmp-fastcgi;
    uwsgi_temp_path {dir}/tmp-uwsgi;
    scgi_temp_path {dir}/tmp-scgi;
    server {{
        listen 127.0.0.1:{port};
        root {dir}/www;
        location = /metrics {{
            default_type "text/plain; version=0.0.4; charset=utf-8";
            gzip_static on;
            add_header Vary Accept-Encoding;
        }}
    }}
}}
"""


def start_nginx(workdir: Path, plain: bytes, gz: bytes) -> tuple[subprocess.Popen, int]:
    d = workdir / "nginx"
    (d / "www").mkdir(parents=True, exist_ok=True)
    # nginx workers may run as another user (`nobody` when started as root): let them read.
    for p in (workdir, d, d / "www"):
        p.chmod(0o755)
    (d / "www" / "metrics").write_bytes(plain)
    (d / "www" / "metrics.gz").write_bytes(gz)
    port = free_port()
    conf = d / "nginx.conf"
    conf.write_text(NGINX_CONF.format(workers=os.cpu_count() or 1, dir=d, port=port))
    proc = subprocess.Popen(
        ["nginx", "-p", str(d), "-e", str(d / "error.log"), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=open(d / "stderr.log", "wb"),
    )
    wait_http(port, "/metrics")
    return proc, port


# --------------------------------------------------------------------------------------------
# Exporter


def exporter_config(
    sim_port: int,
    ids: list[str],
    interval: int,
    jitter: int,
    timeout: int,
    hot_top_n: int = HOT_TOP_N,
    big_top_n: int = BIG_TOP_N,
) -> str:
    lines = [
        "clouds:",
        "  - name: bench",
        "    region: cn-north-4",
        f"    endpoint: http://127.0.0.1:{sim_port}",
        f"    project_id: {PROJECT}",
        "    auth:",
        f"      access_key: {AK}",
        f"      secret_key: {SK}",
        "    instances:",
    ]
    lines += [f"      - id: {i}" for i in ids]
    lines += [
        "analysis:",
        f"  hotkey: {{mode: trigger, interval: {interval}s, timeout: {timeout}s, top_n: {hot_top_n}}}",
        f"  bigkey: {{mode: trigger, interval: {interval}s, timeout: {timeout}s, top_n: {big_top_n}}}",
        "scheduler:",
        f"  start_jitter: {jitter}s",
    ]
    return "\n".join(lines) + "\n"


class Exporter:
    def __init__(self, binary: Path, workdir: Path, name: str, config: str, debug: bool):
        self.port = free_port()
        self.cfg = workdir / f"{name}.yaml"
        self.cfg.write_text(config)
        self.log_path = workdir / f"{name}.log"
        self.proc = subprocess.Popen(
            [
                str(binary),
                f"--config.file={self.cfg}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.format=json",
                f"--log.level={'debug' if debug else 'warn'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.log_path, "wb"),
        )
        wait_http(self.port, "/-/healthy")

    def stop(self) -> None:
        stop(self.proc)


LAST_SUCCESS = re.compile(
    rb'^dcs_analysis_last_success_timestamp_seconds\{instance_id="([^"]*)",[^}]*analysis="(\w+)"\} (\S+)$',
    re.M,
)


def last_success(body_gz: bytes) -> dict:
    text = gzip.decompress(body_gz)
    start = text.find(b"\ndcs_analysis_last_success_timestamp_seconds{")
    if start < 0:
        return {}
    end = text.find(b"\n# HELP", start + 1)
    section = text[start + 1 : end if end > 0 else len(text)]
    return {(m.group(1), m.group(2)): float(m.group(3)) for m in LAST_SUCCESS.finditer(section)}


class LagPoller(threading.Thread):
    """Polls /metrics (gzip) and records, for every changed last-success value, the lag from
    the task's finished_at (the value) to the moment the scrape that first showed it ended."""

    def __init__(self, port: int, period: float):
        super().__init__(daemon=True)
        self.port, self.period = port, period
        self.lags: list[float] = []
        self.seen: dict = {}
        self.polls = 0
        self.fetch_s: list[float] = []
        self.running = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            t0 = time.time()
            try:
                body, _ = get(self.port, "/metrics", gz=True)
            except OSError:
                time.sleep(self.period)
                continue
            t1 = time.time()
            self.fetch_s.append(t1 - t0)
            values = last_success(body)
            if self.running.is_set():
                for k, v in values.items():
                    if k in self.seen and self.seen[k] != v:
                        self.lags.append(t1 - v)
            self.seen = values
            self.polls += 1
            self.done.wait(max(0.0, self.period - (time.time() - t0)))


def economy(log_path: Path, t_from: float, t_to: float) -> dict:
    """API requests per completed analysis, per instance and analysis, from the debug log."""
    calls: dict = {}
    first: set = set()
    per_analysis: list[int] = []
    by_kind: dict = {}
    total_calls = 0
    published = 0
    ops: dict = {}
    with open(log_path, "rb") as f:
        for raw in f:
            if b"DCS API request" not in raw and b"published analysis result" not in raw:
                continue
            try:
                e = json.loads(raw)
            except ValueError:
                continue
            span = e.get("span") or {}
            key = (span.get("instance_id"), span.get("analysis"))
            msg = e.get("fields", {}).get("message")
            ts = dt.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
            if msg == "DCS API request":
                calls[key] = calls.get(key, 0) + 1
                if t_from <= ts < t_to:
                    total_calls += 1
                    op = e["fields"].get("operation", "?")
                    ops[op] = ops.get(op, 0) + 1
            elif msg == "published analysis result":
                n = calls.pop(key, 0)
                if key in first and t_from <= ts < t_to:
                    per_analysis.append(n)
                    by_kind.setdefault(key[1], []).append(n)
                    published += 1
                first.add(key)
    out = {
        "completed": published,
        "calls_in_window": total_calls,
        "operations": ops,
    }
    if per_analysis:
        per_analysis.sort()
        out["calls_per_analysis_p50"] = statistics.median(per_analysis)
        out["calls_per_analysis_p90"] = per_analysis[int(0.9 * (len(per_analysis) - 1))]
        out["calls_per_analysis_mean"] = round(sum(per_analysis) / len(per_analysis), 3)
        out["histogram"] = {str(k): per_analysis.count(k) for k in sorted(set(per_analysis))}
        for kind, v in sorted(by_kind.items()):
            out[f"{kind}_calls_p50"] = statistics.median(v)
            out[f"{kind}_calls_mean"] = round(sum(v) / len(v), 3)
    return out


def pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def series_count(plain: bytes) -> int:
    return sum(1 for line in plain.split(b"\n") if line and not line.startswith(b"#"))


# --------------------------------------------------------------------------------------------
# One fleet size


def run_scale(args, binary: Path, n: int, workdir: Path) -> dict:
    res: dict = {"instances": n}
    quick = args.quick
    interval = max(args.interval, n // 20)
    timeout = max(60, interval * 4)
    log(f"== {n} instances: analysis interval {interval}s, time scale {args.time_scale}")
    res["before"] = wait_quiet(args.max_load, args.quiet_timeout)
    res["interval_s"] = interval

    sim_port = free_port()
    sim = subprocess.Popen(
        [
            str(binary),
            "simulate",
            f"--web.listen-address=127.0.0.1:{sim_port}",
            f"--instances={n}",
            f"--seed={args.seed}",
            f"--sim.time-scale={args.time_scale}",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / f"sim-{n}.log", "wb"),
    )
    exp = nginx = None
    try:
        wait_http(sim_port, "/", 30)
        insts = list_instances(sim_port)
        ids = [i["instance_id"] for i in insts]
        res["simulated_instances"] = len(ids)

        # ---- busy phase: short intervals, debug log for the API economy.
        exp = Exporter(
            binary,
            workdir,
            f"busy-{n}",
            exporter_config(
                sim_port, ids, interval, interval, timeout, args.hot_top_n, args.big_top_n
            ),
            debug=True,
        )
        poller = LagPoller(exp.port, args.poll_period if n <= 500 else 2 * args.poll_period)
        poller.start()
        warm = interval + (5 if quick else 15)
        log(f"warming up for {warm}s (every analysis runs at least once)")
        time.sleep(warm)
        plain, _ = get(exp.port, "/metrics")
        res["body_bytes"] = len(plain)
        res["series"] = series_count(plain)
        res["hot_series_per_instance"] = round(
            plain.count(b"\ndcs_hotkey_frequency{") / max(1, n), 1
        )
        res["big_series_per_instance"] = round(
            (plain.count(b"\ndcs_bigkey_size_bytes{") + plain.count(b"\ndcs_bigkey_elements{"))
            / max(1, n),
            1,
        )
        per_inst: dict = {}
        for m in re.finditer(rb'\ndcs_hotkey_frequency\{instance_id="([^"]*)"', plain):
            per_inst[m.group(1)] = per_inst.get(m.group(1), 0) + 1
        counts = sorted(per_inst.values())
        if counts:
            res["hot_keys_per_analysed_instance"] = {
                "instances": len(counts),
                "min": counts[0],
                "p50": counts[len(counts) // 2],
                "max": counts[-1],
                "at_top": sum(1 for c in counts if c >= args.hot_top_n),
            }
            log(f"hot keys per instance with a hot key result: {res['hot_keys_per_analysed_instance']}")
        log(
            f"body {len(plain) / MIB:.1f} MiB, {res['series']} series; per instance: "
            f"{res['hot_series_per_instance']} hot keys, {res['big_series_per_instance']} big keys"
        )

        window = 2 * interval if quick or n > 500 else max(3 * interval, 45)
        if args.scrapes_only:
            window = 0
        poller.running.set()
        t_from = time.time()
        log(f"measuring API economy and lag for {window}s")
        time.sleep(window)
        t_to = time.time()
        poller.running.clear()
        eco = economy(exp.log_path, t_from, t_to)
        eco["window_s"] = round(t_to - t_from, 1)
        eco["lag_poll_period_s"] = poller.period
        eco["lag_samples"] = len(poller.lags)
        eco["lag_p50_s"] = pct(poller.lags, 50)
        eco["lag_p90_s"] = pct(poller.lags, 90)
        eco["lag_scrape_p50_s"] = pct(poller.fetch_s, 50)
        res["economy"] = eco
        log(
            f"calls per completed analysis p50 {eco.get('calls_per_analysis_p50')} "
            f"(mean {eco.get('calls_per_analysis_mean')}, {eco['completed']} analyses; hot key "
            f"p50 {eco.get('hotkey_calls_p50')} mean {eco.get('hotkey_calls_mean')}, big key "
            f"p50 {eco.get('bigkey_calls_p50')} mean {eco.get('bigkey_calls_mean')}); "
            f"lag p50 {eco['lag_p50_s'] and round(eco['lag_p50_s'], 2)}s "
            f"p90 {eco['lag_p90_s'] and round(eco['lag_p90_s'], 2)}s ({len(poller.lags)} samples, "
            f"polled every {poller.period}s)"
        )

        # ---- scrapes, while the scheduler keeps running (the poller is stopped).
        poller.done.set()
        poller.join()
        plain, _ = get(exp.port, "/metrics")
        gz, hdrs = get(exp.port, "/metrics", gz=True)
        assert hdrs.get("content-encoding") == "gzip", hdrs
        assert gzip.decompress(gz).startswith(plain[:1000])
        res["gzip_bytes"] = len(gz)
        nginx, nginx_port = start_nginx(workdir / f"n{n}", plain, gz)
        ngz, nh = get(nginx_port, "/metrics", gz=True)
        assert nh.get("content-encoding") == "gzip" and ngz == gz, "nginx must serve the same .gz"
        secs = args.wrk_seconds
        scrape = {}
        pids = {"exporter": [exp.proc.pid], "nginx": [nginx.pid] + children(nginx.pid)}
        for enc in ("plain", "gzip"):
            # Rounds alternate between the two servers, so that a change in what else runs on
            # the machine falls on both; the ratio is of the summed requests.
            runs: dict = {"exporter": [], "nginx": []}
            for _ in range(args.rounds):
                for target, port in (("exporter", exp.port), ("nginx", nginx_port)):
                    q = wait_quiet(args.max_load, args.quiet_timeout, need_load=False)
                    cpu0 = sum(cpu_seconds(p) for p in pids[target])
                    r = wrk(
                        f"http://127.0.0.1:{port}/metrics",
                        args.connections,
                        args.threads,
                        secs,
                        enc == "gzip",
                        latency=True,
                    )
                    cpu = sum(cpu_seconds(p) for p in pids[target]) - cpu0
                    r["load1_before"] = q["load1"]
                    r["cpu_ms_per_request"] = round(1000 * cpu / max(1, r["rps"] * secs), 2)
                    runs[target].append(r)
                    log(f"wrk {target:8} {enc:5}: {r['rps']:8.1f} req/s  p99 {r.get('p99_ms')} ms  "
                        f"{r['cpu_ms_per_request']} ms CPU per request (load {q['load1']:.1f})")
            for target, rs in runs.items():
                r = dict(rs[-1])
                r["rps"] = round(sum(x["rps"] for x in rs) / len(rs), 2)
                r["rounds_rps"] = [x["rps"] for x in rs]
                r["cpu_ms_per_request"] = round(
                    statistics.median(x["cpu_ms_per_request"] for x in rs), 2)
                scrape[f"{target}_{enc}"] = r
            ratio = scrape[f"exporter_{enc}"]["rps"] / max(1e-9, scrape[f"nginx_{enc}"]["rps"])
            scrape[f"ratio_{enc}"] = round(ratio, 3)
            log(f"exporter/nginx {enc}: {ratio:.2f} over {args.rounds} rounds")
            for target, port in (("exporter", exp.port), ("nginx", nginx_port)):
                r = wrk(f"http://127.0.0.1:{port}/metrics", 1, 1, secs, enc == "gzip", latency=True)
                scrape[f"{target}_{enc}_1conn"] = r
                log(f"wrk {target:8} {enc:5} 1 connection: p50 {r.get('p50_ms')} ms p99 {r.get('p99_ms')} ms")
        res["scrape"] = scrape
        st = proc_status(exp.proc.pid)
        res["busy_rss_mib"] = round(st["VmRSS"] / 1024, 1)
        res["busy_hwm_mib"] = round(st["VmHWM"] / 1024, 1)
        res["rss_bytes_per_series"] = round(st["VmRSS"] * 1024 / max(1, res["series"]), 1)
        log(f"busy RSS {res['busy_rss_mib']} MiB (peak {res['busy_hwm_mib']} MiB), "
            f"{res['rss_bytes_per_series']} B per series")
        stop(nginx)
        nginx = None
        exp.stop()
        exp = None
        if args.scrapes_only:
            return res

        # ---- idle phase: every analysis runs once at start, the next one is an hour away.
        exp = Exporter(
            binary,
            workdir,
            f"idle-{n}",
            exporter_config(sim_port, ids, 3600, 0, 600, args.hot_top_n, args.big_top_n),
            debug=False,
        )
        settle = 20 if quick else 40
        log(f"idle phase: letting the first analyses finish ({settle}s)")
        time.sleep(settle)
        get(exp.port, "/metrics", gz=True)
        measure = 10 if quick else args.idle_seconds
        c0, t0 = cpu_seconds(exp.proc.pid), time.monotonic()
        time.sleep(measure)
        c1, t1 = cpu_seconds(exp.proc.pid), time.monotonic()
        res["idle_cpu_pct"] = round(100 * (c1 - c0) / (t1 - t0), 3)
        st = proc_status(exp.proc.pid)
        res["idle_rss_mib"] = round(st["VmRSS"] / 1024, 1)
        res["idle_window_s"] = measure
        log(f"idle CPU {res['idle_cpu_pct']}% of one core over {measure}s; RSS {res['idle_rss_mib']} MiB")
    finally:
        stop(nginx)
        if exp:
            exp.stop()
        stop(sim)
    return res


def check(results: list[dict]) -> list[str]:
    missed = []
    for r in results:
        n = r["instances"]
        s = r.get("scrape", {})
        for enc in ("plain", "gzip"):
            if s.get(f"ratio_{enc}", 1) < TARGETS["throughput_ratio"]:
                missed.append(f"{n}: {enc} throughput {s[f'ratio_{enc}']} of nginx")
            p99 = s.get(f"exporter_{enc}_1conn", {}).get("p99_ms")
            if p99 is not None and p99 > TARGETS["latency_p99_ms"]:
                missed.append(f"{n}: {enc} p99 {p99} ms")
        limit = TARGETS["rss_mib_300"] if n <= 300 else TARGETS["rss_mib_2000"]
        peak = max(r.get("busy_rss_mib", 0), r.get("busy_hwm_mib", 0))
        if peak > limit:
            missed.append(f"{n}: RSS {peak} MiB (peak) > {limit}")
        e = r.get("economy", {})
        if e.get("calls_per_analysis_p50", 0) > TARGETS["calls_per_analysis_p50"]:
            missed.append(f"{n}: {e['calls_per_analysis_p50']} calls per analysis")
        if (e.get("lag_p50_s") or 0) > TARGETS["lag_p50_s"]:
            missed.append(f"{n}: lag p50 {e['lag_p50_s']:.2f}s")
        if r.get("idle_cpu_pct", 0) > TARGETS["idle_cpu_pct"]:
            missed.append(f"{n}: idle CPU {r['idle_cpu_pct']}%")
    return missed


def summary(results: list[dict]) -> str:
    rows = [
        ("instances", lambda r: r["instances"]),
        ("series", lambda r: r.get("series")),
        ("body MiB (plain / gzip)", lambda r: f"{r['body_bytes'] / MIB:.1f} / {r['gzip_bytes'] / MIB:.2f}"),
        ("exporter plain req/s", lambda r: r["scrape"]["exporter_plain"]["rps"]),
        ("nginx plain req/s", lambda r: r["scrape"]["nginx_plain"]["rps"]),
        ("ratio plain", lambda r: r["scrape"]["ratio_plain"]),
        ("exporter gzip req/s", lambda r: r["scrape"]["exporter_gzip"]["rps"]),
        ("nginx gzip req/s", lambda r: r["scrape"]["nginx_gzip"]["rps"]),
        ("ratio gzip", lambda r: r["scrape"]["ratio_gzip"]),
        ("CPU ms / request plain, exporter / nginx", lambda r: "{} / {}".format(r["scrape"]["exporter_plain"]["cpu_ms_per_request"], r["scrape"]["nginx_plain"]["cpu_ms_per_request"])),
        ("CPU ms / request gzip, exporter / nginx", lambda r: "{} / {}".format(r["scrape"]["exporter_gzip"]["cpu_ms_per_request"], r["scrape"]["nginx_gzip"]["cpu_ms_per_request"])),
        ("p50 / p99 ms plain, 1 conn", lambda r: "{p50_ms} / {p99_ms}".format(**r["scrape"]["exporter_plain_1conn"])),
        ("  nginx", lambda r: "{p50_ms} / {p99_ms}".format(**r["scrape"]["nginx_plain_1conn"])),
        ("p50 / p99 ms gzip, 1 conn", lambda r: "{p50_ms} / {p99_ms}".format(**r["scrape"]["exporter_gzip_1conn"])),
        ("  nginx", lambda r: "{p50_ms} / {p99_ms}".format(**r["scrape"]["nginx_gzip_1conn"])),
        ("RSS MiB busy (peak)", lambda r: f"{r['busy_rss_mib']} ({r['busy_hwm_mib']})"),
        ("RSS bytes / series", lambda r: r["rss_bytes_per_series"]),
        ("calls / analysis p50 (mean)", lambda r: f"{r['economy'].get('calls_per_analysis_p50')} ({r['economy'].get('calls_per_analysis_mean')})"),
        ("  hot key p50 (mean)", lambda r: f"{r['economy'].get('hotkey_calls_p50')} ({r['economy'].get('hotkey_calls_mean')})"),
        ("  big key p50 (mean)", lambda r: f"{r['economy'].get('bigkey_calls_p50')} ({r['economy'].get('bigkey_calls_mean')})"),
        ("API calls / s", lambda r: round(r['economy']['calls_in_window'] / r['economy']['window_s'], 1)),
        ("lag p50 / p90 s", lambda r: f"{(r['economy']['lag_p50_s'] or 0):.2f} / {(r['economy']['lag_p90_s'] or 0):.2f}"),
        ("idle CPU % of a core", lambda r: r["idle_cpu_pct"]),
        ("idle RSS MiB", lambda r: r["idle_rss_mib"]),
        ("hot keys / instance min/p50 (at top N)", lambda r: "{min}/{p50} ({at_top} of {instances})".format(**r["hot_keys_per_analysed_instance"])),
        ("load1 at start", lambda r: r["before"]["load1"]),
    ]
    out = ["| figure | " + " | ".join(str(r["instances"]) for r in results) + " |"]
    out.append("|---|" + "---|" * len(results))
    for name, f in rows[1:]:
        cells = []
        for r in results:
            try:
                cells.append(str(f(r)))
            except (KeyError, TypeError, ZeroDivisionError):
                cells.append("–")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", default="30,300,2000", help="comma-separated fleet sizes")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--hot-top-n", type=int, default=HOT_TOP_N,
                    help="hot keys exported per instance (100: every hot key the simulator reports)")
    ap.add_argument("--big-top-n", type=int, default=BIG_TOP_N, help="big keys exported per unit")
    ap.add_argument("--time-scale", type=float, default=0.05, help="simulator task duration factor")
    ap.add_argument("--interval", type=int, default=15, help="analysis interval in the busy phase (s)")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--wrk-seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=1,
                    help="wrk runs per server and encoding, alternating between the two")
    ap.add_argument("--idle-seconds", type=int, default=30)
    ap.add_argument("--poll-period", type=float, default=0.5, help="lag poller period (s)")
    ap.add_argument("--max-load", type=float, default=0.7, help="wait for a 1-minute load below this")
    ap.add_argument("--quiet-timeout", type=float, default=600, help="longest wait for a quiet machine (s)")
    ap.add_argument("--no-build", action="store_true", help="use the existing release binary")
    ap.add_argument("--binary", type=Path, help="use this exporter binary (implies --no-build)")
    ap.add_argument("--scrapes-only", action="store_true",
                    help="after the warm-up, measure scrapes and memory only (no API economy, "
                         "lag or idle phase)")
    ap.add_argument("--quick", action="store_true", help="short phases (smoke run)")
    ap.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--json", type=Path, help="write all results here")
    args = ap.parse_args()
    if args.quick:
        args.wrk_seconds = min(args.wrk_seconds, 3)
        args.interval = min(args.interval, 5)
        args.quiet_timeout = min(args.quiet_timeout, 5)
        args.max_load = max(args.max_load, 100.0)

    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            print(f"error: {tool} not found on PATH (Debian: apt-get install wrk nginx)", file=sys.stderr)
            return 2
    if not args.no_build and not args.binary:
        log("cargo build --release")
        subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "dcs-key-exporter"], cwd=ROOT, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    binary = args.binary or target / "release" / "dcs-key-exporter"
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    if args.binary:
        # The build measured, not the checkout: `--version` names its revision.
        rev = subprocess.run([str(binary), "--version"], capture_output=True, text=True).stdout.strip()
    log(f"binary {binary} ({rev}), {os.cpu_count()} CPUs, wrk {args.connections} connections x {args.threads} threads")

    results = []
    with tempfile.TemporaryDirectory(prefix="dcs-fleet-bench-") as tmp:
        os.chmod(tmp, 0o755)  # nginx workers may run as another user
        for n in [int(x) for x in args.instances.split(",") if x.strip()]:
            results.append(run_scale(args, binary, n, Path(tmp)))
    print()
    print(summary(results))
    missed = check(results)
    for m in missed:
        print(f"target missed: {m}")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "head": rev, "results": results}, indent=2, default=str))
    print(f"{len(results)} fleet sizes measured, {len(missed)} targets missed")
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
