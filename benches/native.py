#!/usr/bin/env python3
"""Benchmark of the exporter's own scans of a Redis server against redis-cli's.

On one machine and one 1M-key dataset (DEBUG POPULATE strings plus collections of known
size), side by side in one run:

1. full-speed scan time: the exporter's big key and hot key scans (throttle lifted) against
   `redis-cli --bigkeys`, `--memkeys` and `--hotkeys` (goal: at least 5x faster than each);
2. the impact on the server's clients: p99 latency and throughput of a concurrent
   `redis-benchmark` GET workload with no scan (baseline), during the exporter's big key scan
   at its default throttle, and during `redis-cli --bigkeys` (goal: no worse than redis-cli),
   in rounds (--impact-rounds, default 5), medians reported with the scans' own rates;
3. exporter memory: peak RSS (VmHWM) after a full-speed big key scan of 1M and of 5M keys
   (goal: the difference is under 10 MiB).

With --families it measures the cost of key families instead: full-speed big key scan time
and peak RSS on the same keyspace without families, with families (default naming: the
dataset's few families), and with every key its own family (a rule `^.*$` -> `$0`, the worst
case for the bounded family table).

With --monitor it measures what a bounded MONITOR sample (`analysis.hotkey.source: monitor`)
costs the server's clients: GET throughput and p99 of a concurrent redis-benchmark workload
without a sample and while one runs (in rounds, medians reported), the length of a sample at the
default bounds under that workload (the exporter's log), and from these the average cost per
interval: the requests a default sample loses, against what the server serves in a default
15-minute interval, and measured directly over a 40 s run with a sample every 10 s.

With --scrapes it measures how a full-speed scan affects scrapes of the exporter itself: the
latency and rate of `wrk` hammering /metrics (4 connections, 8 s) while the exporter rescans
1M keys at full speed, against the same exporter with no scan running, in rounds
(--impact-rounds), medians reported with the scan's own key rate. --binary measures another
build the same way (an older revision, for comparison). Needs `wrk` (Debian: `apt-get install
wrk`).

Needs Linux, Python 3.9+, redis-server, redis-cli and redis-benchmark on PATH (Debian:
`apt-get install redis-server redis-tools`) and the release binary (built unless --no-build).
Everything runs on loopback ports in a temporary directory.

    python3 benches/native.py                 # the full run (~10 min)
    python3 benches/native.py --keys 100000   # a quicker, smaller run
    python3 benches/native.py --families      # key families: scan time and RSS with/without
    python3 benches/native.py --scrapes       # scrape latency during full-speed scans
    python3 benches/native.py --monitor       # what a MONITOR sample costs the clients
    python3 benches/native.py --big-node 20000000   # a 20M-key node at the defaults (~1 h)
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import machine

ROOT = Path(__file__).resolve().parent.parent
BIN = ROOT / "target" / "release" / "dcs-key-exporter"
MIB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    def __init__(self, tmp: Path, name: str, *args: str) -> None:
        self.port = free_port()
        self.dir = tmp / name
        self.dir.mkdir()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.dir),
             "--logfile", "server.log", "--enable-debug-command", "yes", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            if self.cli("PING", check=False).strip() == "PONG":
                return
            time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def cli(self, *args: str, check: bool = True) -> str:
        r = subprocess.run(["redis-cli", "-p", str(self.port), *args],
                           capture_output=True, text=True)
        if check and r.returncode != 0:
            raise SystemExit(f"redis-cli {args}: {r.stderr}")
        return r.stdout

    def cpu(self) -> float:
        return machine.cpu_seconds(self.proc.pid)

    def calls(self) -> dict[str, int]:
        """Calls per command since the last `CONFIG RESETSTAT` (the benchmark's own server)."""
        return {m.group(1): int(m.group(2)) for m in re.finditer(
            r"^cmdstat_([^:]+):calls=(\d+)", self.cli("INFO", "commandstats"), re.M)}

    def round_trip_ms(self) -> float:
        """Mean PING round trip of one client without pipelining: what bounds redis-cli."""
        out = subprocess.run(
            ["redis-benchmark", "-p", str(self.port), "-c", "1", "-n", "20000", "-t", "ping",
             "--csv"], capture_output=True, text=True, check=True).stdout
        return float(list(csv.DictReader(io.StringIO(out)))[-1]["avg_latency_ms"])

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def resp(*args: bytes) -> bytes:
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def populate(r: Redis, keys: int) -> None:
    """`keys` strings of 16 bytes, then 200 collections of each type with known sizes."""
    r.cli("DEBUG", "POPULATE", str(keys), "key", "16")
    buf = io.BytesIO()
    for i in range(200):
        n = 10 + i * 5
        members = [b"m%d" % j for j in range(n)]
        buf.write(resp(b"RPUSH", b"list:%d" % i, *members))
        buf.write(resp(b"SADD", b"set:%d" % i, *members))
        buf.write(resp(b"HSET", b"hash:%d" % i, *[x for m in members for x in (m, b"v")]))
        buf.write(resp(b"ZADD", b"zset:%d" % i, *[x for j, m in enumerate(members)
                                                  for x in (b"%d" % j, m)]))
        buf.write(resp(b"SET", b"str:%d" % i, b"x" * (100 + i * 50)))
    subprocess.run(["redis-cli", "-p", str(r.port), "--pipe"], input=buf.getvalue(),
                   check=True, capture_output=True)


def timed(cmd: list[str]) -> float:
    t = time.monotonic()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - t


def per_key(calls: dict[str, int], keys: int) -> str:
    """The commands a scan sent, per key of the keyspace (SCAN apart)."""
    per = sorted(((n / keys, c) for c, n in calls.items() if c not in ("scan", "config|resetstat",
                                                                        "info", "ping")),
                 reverse=True)
    return ", ".join(f"{c} {v:.3g}" for v, c in per if v >= 0.0005) or "none"


class Exporter:
    def __init__(self, tmp: Path, redis_port: int, kps: int | None, analysis: str,
                 interval: str = "1h", extra: str = "", binary: Path = BIN,
                 analyses: str | None = None, settings: str = "",
                 log: Path | None = None) -> None:
        """One analysis of the server (the other off; `settings` added to its own), or
        `analyses` as given; `log`: where the exporter's log goes (info level)."""
        self.port = free_port()
        throttle = f"    throttle: {{keys_per_second: {kps}}}\n" if kps else ""
        other = "bigkey" if analysis == "hotkey" else "hotkey"
        if analyses is None:
            analyses = (f"      {other}: {{mode: off}}\n"
                        f"      {analysis}: {{interval: {interval}, timeout: 1h, top_n: 100"
                        f"{settings}}}\n")
        cfg = tmp / f"exporter-{self.port}.yaml"
        cfg.write_text(
            f"redis:\n  - id: bench\n    address: redis://127.0.0.1:{redis_port}\n{throttle}"
            f"    analysis:\n{analyses}{extra}scheduler: {{start_jitter: 0s}}\n")
        self.started = time.monotonic()
        out = open(log, "w") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(
            [str(binary), "--config.file", str(cfg),
             "--web.listen-address", f"127.0.0.1:{self.port}",
             "--log.level", "info" if log else "warn"],
            stdout=out, stderr=out)

    def metrics(self) -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                return r.read().decode()
        except OSError:
            return ""

    def value(self, name: str, analysis: str) -> float | None:
        m = re.search(rf'^{name}{{instance_id="bench",instance_name="bench",'
                      rf'analysis="{analysis}"}} (\S+)$', self.metrics(), re.M)
        return float(m.group(1)) if m else None

    def wait_result(self, analysis: str, limit: float = 1800) -> float:
        """Waits for the first result; returns the exporter's own scan duration."""
        until = time.monotonic() + limit
        while time.monotonic() < until:
            d = self.value("dcs_analysis_duration_seconds", analysis)
            if d is not None:
                return d + (self.value("dcs_analysis_queue_seconds", analysis) or 0.0)
            time.sleep(0.2)
        raise SystemExit(f"no {analysis} result within {limit}s")

    def wait_scanning(self, analysis: str) -> None:
        until = time.monotonic() + 60
        while time.monotonic() < until:
            if (self.value("dcs_analysis_scan_keys_scanned", analysis) or 0) > 0:
                return
            time.sleep(0.1)
        raise SystemExit("the scan did not start")

    def hwm(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) * 1024

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def benchmark(port: int, requests: int, keyspace: int = 1_000_000) -> tuple[float, float]:
    """(requests per second, p99 ms) of 50 clients doing random GETs."""
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", "get", "-n", str(requests), "-c", "50",
         "-r", str(keyspace), "--csv"], capture_output=True, text=True, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    row = rows[-1]
    return float(row["rps"]), float(row["p99_latency_ms"])


FAMILY_CONFIGS = (
    ("without families", ""),
    ("with families (default naming)", "      keyfamily: {mode: trigger, top_n: 20}\n"),
    ("with families, every key its own family",
     "      keyfamily:\n        mode: trigger\n        top_n: 20\n"
     "        families: {rules: [{match: '^.*$', family: '$0'}]}\n"),
)


@contextlib.contextmanager
def filled_server(name: str, keys: int, report) -> Iterator[tuple[Path, Redis]]:
    """A temporary directory and a server in it filled with the dataset (its size reported),
    stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix="native-bench-") as t:
        tmp = Path(t)
        r = Redis(tmp, name)
        try:
            populate(r, keys)
            report("keys", f"{int(r.cli('DBSIZE')):,}")
            yield tmp, r
        finally:
            r.stop()


def families(keys: int, report) -> None:
    """Scan time and exporter peak RSS of a full-speed big key scan, with and without
    families, on one server; then, at the default throttle (where the walk's duration is the
    throttle's), the server CPU the walk costs per 1,000 keys, with and without families."""
    with filled_server("families", keys, report) as (tmp, r):
        for what, extra in FAMILY_CONFIGS[:2]:
            e = Exporter(tmp, r.port, None, "bigkey", extra=extra)
            e.wait_scanning("bigkey")
            cpu, walked = r.cpu(), e.value("dcs_analysis_scan_keys_scanned", "bigkey") or 0
            time.sleep(20)
            cpu = r.cpu() - cpu
            walked = (e.value("dcs_analysis_scan_keys_scanned", "bigkey") or 0) - walked
            e.stop()
            report(f"default throttle, {what}",
                   f"{walked / 20:,.0f} keys/s, server CPU {cpu * 1e6 / max(walked, 1):.1f} us/key")
        for what, extra in FAMILY_CONFIGS:
            e = Exporter(tmp, r.port, 10_000_000, "bigkey", extra=extra)
            took = e.wait_result("bigkey")
            if extra:
                until = time.monotonic() + 60
                while e.value("dcs_analysis_keys", "keyfamily") is None:
                    if time.monotonic() > until:
                        raise SystemExit("no key families published")
                    time.sleep(0.2)
            hwm = e.hwm()
            e.stop()
            report(f"big key scan {what}", f"{took:.2f} s, peak RSS {hwm / MIB:.1f} MiB")


def scrapes(keys: int, rounds: int, binary: Path, report) -> None:
    """Scrape latency of the exporter with no scan running, and while it rescans the keyspace
    at full speed (a new scan a second after each ends), in interleaved rounds."""
    with filled_server("scrapes", keys, report) as (tmp, r):
        runs: dict[str, list[tuple[float, float, float, float]]] = {}
        for _ in range(rounds):
            for case, interval in (("no scan running", "1h"),
                                   ("full-speed scans running", "1s")):
                e = Exporter(tmp, r.port, 10_000_000, "bigkey", interval=interval,
                             binary=binary)
                e.wait_result("bigkey")
                before, at = r.calls().get("strlen", 0), time.monotonic()
                w = machine.wrk(f"http://127.0.0.1:{e.port}/metrics", connections=4,
                                threads=1, seconds=8, gz=False, latency=True)
                rate = (r.calls().get("strlen", 0) - before) / (time.monotonic() - at)
                e.stop()
                runs.setdefault(case, []).append((w["p50_ms"], w["p99_ms"], w["rps"], rate))
        for case, got in runs.items():
            med = [statistics.median(x[i] for x in got) for i in range(4)]
            scan = f", scanning {med[3]:,.0f} keys/s" if med[3] else ""
            report(f"/metrics, {case}, median of {len(got)}",
                   f"p50 {med[0]:.3f} ms, p99 {med[1]:.3f} ms, {med[2]:,.0f} req/s{scan} "
                   "(p99s: " + " ".join(f"{x[1]:.3f}" for x in got) + ")")


def monitoring(r: Redis) -> bool:
    """Whether a client of `r` is in MONITOR mode."""
    return any(" flags=O " in line for line in r.cli("CLIENT", "LIST").splitlines())


def monitor_cost(rounds: int, requests: int, report) -> None:
    """GET throughput and p99 without and during a MONITOR sample; a default sample's length
    under the workload; the average cost per interval."""
    with filled_server("monitor", 100_000, report) as (tmp, r):
        runs: dict[str, list[tuple[float, float, float, float]]] = {}
        # The source, with bounds that let one whole workload run fit in one sample.
        long = (", source: monitor, monitor: {window: 60s, max_commands: 10000000, "
                "max_bytes: 1073741824}")

        def measured(e: Exporter | None) -> tuple[float, float, float, float]:
            """rps, p99, and the server's and the exporter's CPU per request (us)."""
            cpu, ecpu = r.cpu(), machine.cpu_seconds(e.proc.pid) if e else 0.0
            rps, p99 = benchmark(r.port, requests, 100_000)
            spent = (r.cpu() - cpu) / requests * 1e6
            espent = (machine.cpu_seconds(e.proc.pid) - ecpu) / requests * 1e6 if e else 0.0
            return rps, p99, spent, espent

        for _ in range(rounds):
            runs.setdefault("no MONITOR sample", []).append(measured(None))
            e = Exporter(tmp, r.port, None, "hotkey", settings=long)
            until = time.monotonic() + 30
            while not monitoring(r):
                if time.monotonic() > until:
                    raise SystemExit("no MONITOR sample started")
                time.sleep(0.01)
            got = measured(e)
            if not monitoring(r):
                raise SystemExit("the sample ended before the workload; lower --requests")
            runs.setdefault("a MONITOR sample running", []).append(got)
            e.stop()
        med = {}
        for case, got in runs.items():
            rps, p99, cpu, ecpu = (statistics.median(x[i] for x in got) for i in range(4))
            med[case] = rps
            exporter = f", exporter CPU {ecpu:.2f} us" if ecpu else ""
            report(f"GET with {case}, median of {len(got)}",
                   f"{rps:,.0f} req/s, p99 {p99:.3f} ms, server CPU {cpu:.2f} us per GET"
                   f"{exporter} (p99s: " + " ".join(f"{x[1]:.3f}" for x in got) + ")")
        # The default bounds (2 s, 100,000 commands, 16 MiB) under the same workload, one
        # sample every 10 s for 40 s, against 40 s without.
        log = tmp / "monitor.log"
        base_n = int(med["no MONITOR sample"] * 40)
        base = benchmark(r.port, base_n, 100_000)
        e = Exporter(tmp, r.port, None, "hotkey", interval="10s", settings=", source: monitor",
                     log=log)
        time.sleep(1)
        sampled = benchmark(r.port, base_n, 100_000)
        e.stop()
        samples = [float(m.group(1)) for m in re.finditer(
            r"MONITOR sample taken.* seconds=([\d.]+)", log.read_text())]
        ends = re.findall(r"MONITOR sample taken.* ended=(\w+)", log.read_text())
        if not samples:
            raise SystemExit("no MONITOR sample in the exporter's log")
        window = statistics.median(samples)
        report("default sample under this workload",
               f"{window:.2f} s, ended by {', '.join(sorted(set(ends)))} "
               f"({len(samples)} samples)")
        lost = (med["no MONITOR sample"] - med["a MONITOR sample running"]) * window
        report("requests one default sample costs",
               f"{lost:,.0f}, {lost / (med['no MONITOR sample'] * 900) * 100:.3f}% of a "
               f"15-minute interval's")
        report("40 s of GETs, a default sample every 10 s",
               f"{sampled[0]:,.0f} req/s, p99 {sampled[1]:.3f} ms against {base[0]:,.0f} "
               f"req/s, p99 {base[1]:.3f} ms without (throughput "
               f"{(sampled[0] / base[0] - 1) * 100:+.1f}%)")


def big_node(keys: int, small_keys: int, requests: int, report) -> None:
    """A big node at the defaults: every analysis on (hot keys from LFU, big keys, key
    families), the default throttle, one exporter. Reports the time from the exporter's start
    to each first result, the node's keys per second over all scans from the server's side
    (`OBJECT FREQ` calls of the hot key walk plus the big key walk's size commands, which are
    one per key), the exporter's peak RSS against a small node's, and the GET p99 of a
    concurrent workload with no scan, during the exporter's scans and during
    `redis-cli --bigkeys`."""
    def run(n: int) -> tuple[dict[str, float], float, list[float]]:
        with tempfile.TemporaryDirectory(prefix="native-bench-") as t:
            tmp = Path(t)
            r = Redis(tmp, "node", "--maxmemory-policy", "allkeys-lfu")
            try:
                populate(r, n)
                report(f"keys of the {n:,}-key node", f"{int(r.cli('DBSIZE')):,}")
                impact: list[float] = []
                if n == keys:
                    _, p99 = benchmark(r.port, requests)
                    impact.append(p99)
                r.cli("CONFIG", "RESETSTAT")
                # Every analysis on, everything else at its default (timeouts included).
                started = time.monotonic()
                e = Exporter(tmp, r.port, None, "bigkey", analyses=(
                    "      hotkey: {interval: 24h}\n      bigkey: {interval: 24h}\n"
                    "      keyfamily: {mode: trigger}\n"))
                done: dict[str, float] = {}
                rates: list[float] = []
                last = (time.monotonic(), r.calls())
                while len(done) < 3:
                    time.sleep(5)
                    for a in ("hotkey", "bigkey", "keyfamily"):
                        if a not in done and e.value("dcs_analysis_last_success_timestamp_seconds", a):
                            done[a] = time.monotonic() - started
                    now, calls = time.monotonic(), r.calls()
                    walked = sum(calls.get(c, 0) - last[1].get(c, 0)
                                 for c in ("object|freq", "strlen", "llen", "scard", "zcard",
                                           "hlen", "xlen"))
                    if len(done) == 0:
                        rates.append(walked / (now - last[0]))
                    last = (now, calls)
                    if n == keys and len(impact) == 1 and len(done) == 0 and rates:
                        _, p99 = benchmark(r.port, requests)
                        impact.append(p99)
                    if time.monotonic() - started > 6 * 3600:
                        raise SystemExit("no result within 6 hours")
                hwm = e.hwm()
                e.stop()
                if n == keys:
                    cli = subprocess.Popen(["redis-cli", "-p", str(r.port), "--bigkeys"],
                                           stdout=subprocess.DEVNULL)
                    time.sleep(0.5)
                    _, p99 = benchmark(r.port, requests)
                    impact.append(p99)
                    cli.terminate()
                    cli.wait()
                return done, hwm, impact + [statistics.median(rates) if rates else 0.0]
            finally:
                r.stop()

    small_done, small_hwm, _ = run(small_keys)
    done, hwm, impact = run(keys)
    for a in ("hotkey", "bigkey", "keyfamily"):
        report(f"first {a} result, {keys:,} keys, defaults", f"{done[a] / 60:.1f} min")
        report(f"first {a} result, {small_keys:,} keys, defaults", f"{small_done[a]:.0f} s")
    report("node's keys per second, every scan on (server side, median of 5 s windows)",
           f"{impact[-1]:,.0f}")
    report(f"exporter peak RSS, {small_keys:,} keys", f"{small_hwm / MIB:.1f} MiB")
    report(f"exporter peak RSS, {keys:,} keys", f"{hwm / MIB:.1f} MiB")
    report("difference", f"{(hwm - small_hwm) / MIB:+.1f} MiB")
    report("GET p99: no scan / during the exporter's scans / during redis-cli --bigkeys",
           " / ".join(f"{x:.3f} ms" for x in impact[:3]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--big-keys", type=int, default=5_000_000,
                    help="keyspace of the second memory measurement")
    ap.add_argument("--requests", type=int, default=400_000,
                    help="GETs per redis-benchmark run")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--impact-rounds", type=int, default=5,
                    help="rounds of the GET workload without a scan, during the exporter's and "
                         "during redis-cli's")
    ap.add_argument("--max-load", type=float, default=0.7,
                    help="wait for a 1-minute load below this before the full-speed runs")
    ap.add_argument("--quiet-timeout", type=float, default=600,
                    help="longest wait for a quiet machine (s)")
    ap.add_argument("--families", action="store_true",
                    help="measure the cost of key families instead")
    ap.add_argument("--scrapes", action="store_true",
                    help="measure scrape latency during full-speed scans instead")
    ap.add_argument("--monitor", action="store_true",
                    help="measure what a MONITOR sample costs the server's clients instead")
    ap.add_argument("--binary", type=Path, default=BIN,
                    help="the exporter binary to measure with --scrapes")
    ap.add_argument("--big-node", type=int, metavar="KEYS",
                    help="measure a node of KEYS keys at the defaults instead (every analysis, "
                         "the default throttle): time to each first result, the node's keys "
                         "per second, peak RSS against a --keys node, GET p99")
    args = ap.parse_args()
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked"], cwd=ROOT, check=True)
    results: list[tuple[str, str]] = []

    def report(what: str, value: str) -> None:
        results.append((what, value))
        print(f"{what}: {value}", flush=True)

    if args.families or args.scrapes or args.big_node or args.monitor:
        if args.big_node:
            big_node(args.big_node, args.keys, args.requests, report)
        elif args.families:
            families(args.keys, report)
        elif args.monitor:
            state = machine.wait_quiet(args.max_load, args.quiet_timeout)
            report("load before the runs",
                   f"{state['load1']:.2f}" + ("" if state["quiet"] else " (never went quiet)"))
            monitor_cost(args.impact_rounds, args.requests, report)
        else:
            scrapes(args.keys, args.impact_rounds, args.binary, report)
        print("\n| measurement | value |\n|---|---|")
        for what, value in results:
            print(f"| {what} | {value} |")
        return
    with tempfile.TemporaryDirectory(prefix="native-bench-") as t:
        tmp = Path(t)
        r = Redis(tmp, "main", "--maxmemory-policy", "allkeys-lfu")
        try:
            populate(r, args.keys)
            total = int(r.cli("DBSIZE"))
            report("keys", f"{total:,}")
            # 1. Full speed, on a quiet machine: redis-cli's times are bound by round trips,
            # the exporter's by the server's work, and a busy machine moves both.
            state = machine.wait_quiet(args.max_load, args.quiet_timeout)
            report("load before the full-speed runs",
                   f"{state['load1']:.2f}" + ("" if state["quiet"] else " (never went quiet)"))
            report("loopback round trip (PING, one client)", f"{r.round_trip_ms() * 1000:.0f} us")
            times = {}

            def measured(what: str, run) -> float:
                r.cli("CONFIG", "RESETSTAT")
                cpu = r.cpu()
                took = run()
                spent = r.cpu() - cpu
                report(what, f"{took:.2f} s (server CPU {spent:.2f} s; per key: "
                       f"{per_key(r.calls(), total)})")
                return took

            for flag in ("--bigkeys", "--memkeys", "--hotkeys"):
                times[flag] = measured(f"redis-cli {flag}",
                                       lambda: timed(["redis-cli", "-p", str(r.port), flag]))
            for analysis, against in (("bigkey", ("--bigkeys", "--memkeys")),
                                      ("hotkey", ("--hotkeys",))):
                def scan() -> float:
                    e = Exporter(tmp, r.port, 10_000_000, analysis)
                    took = e.wait_result(analysis)
                    e.stop()
                    return took
                took = measured(f"exporter {analysis} scan, full speed", scan)
                for flag in against:
                    report(f"  faster than redis-cli {flag}", f"{times[flag] / took:.1f}x")
            # 2. Impact on clients: rounds of the three cases side by side (the differences are
            # near this machine's noise, so one round says little), medians reported.
            runs: dict[str, list[tuple[float, float, float]]] = {}
            ended = 0  # rounds in which redis-cli finished before the workload did

            def workload(case: str, counted: str) -> None:
                before, t = r.calls().get(counted, 0), time.monotonic()
                rps, p99 = benchmark(r.port, args.requests)
                rate = (r.calls().get(counted, 0) - before) / (time.monotonic() - t)
                runs.setdefault(case, []).append((rps, p99, rate))

            for _ in range(args.impact_rounds):
                workload("no scan", "strlen")
                e = Exporter(tmp, r.port, None, "bigkey", interval="1s")
                e.wait_scanning("bigkey")
                workload("exporter's scan (default throttle)", "strlen")
                e.stop()
                cli = subprocess.Popen(["redis-cli", "-p", str(r.port), "--bigkeys"],
                                       stdout=subprocess.DEVNULL)
                time.sleep(0.5)
                workload("redis-cli --bigkeys", "type")
                if cli.poll() is not None:
                    ended += 1
                cli.terminate()
                cli.wait()
            for case, rounds in runs.items():
                rps = statistics.median(x[0] for x in rounds)
                p99 = statistics.median(x[1] for x in rounds)
                rate = statistics.median(x[2] for x in rounds)
                scan = "" if case == "no scan" else f", scanning {rate:,.0f} keys/s"
                report(f"GET during {case}, median of {len(rounds)}",
                       f"{rps:,.0f} req/s, p99 {p99:.3f} ms{scan} (p99s: "
                       + " ".join(f"{x[1]:.3f}" for x in rounds) + ")"
                       + (f" (redis-cli ended before the workload in {ended} rounds)"
                          if ended and case.startswith("redis-cli") else ""))
            # 3. Memory.
            e = Exporter(tmp, r.port, 10_000_000, "bigkey")
            e.wait_result("bigkey")
            small = e.hwm()
            e.stop()
        finally:
            r.stop()
        r = Redis(tmp, "big")
        try:
            populate(r, args.big_keys)
            e = Exporter(tmp, r.port, 10_000_000, "bigkey")
            e.wait_result("bigkey")
            big = e.hwm()
            e.stop()
        finally:
            r.stop()
        report(f"exporter peak RSS, {args.keys:,} keys", f"{small / MIB:.1f} MiB")
        report(f"exporter peak RSS, {args.big_keys:,} keys", f"{big / MIB:.1f} MiB")
        report("difference", f"{(big - small) / MIB:+.1f} MiB")
    print("\n| measurement | value |\n|---|---|")
    for what, value in results:
        print(f"| {what} | {value} |")


if __name__ == "__main__":
    sys.exit(main())
