#!/usr/bin/env python3
"""System check: the dashboards and alert rules against a real Prometheus.

Starts `<exporter-bin> --demo` and a Prometheus that scrapes it every second and
loads a copy of config/alerts.yml, then checks that

* the provisioned Grafana data source's `timeInterval` equals the scrape
  interval of every shipped scrape config (deploy/prometheus/prometheus.yml,
  the ServiceMonitor, the README's example),
* every panel query and every annotation query of every dashboard in
  grafana/dashboards/ returns data (template variables are replaced by real
  values, see `substitute`; `label_values` and `query_result` variables with a
  value/text regex are resolved like Grafana does; `$__rate_interval` is what
  Grafana derives from that `timeInterval`). The panels of Redis and Valkey
  targets get their data from a second exporter analysing a real `redis-server`
  the check starts and fills: one target at the default throttle, one slow
  enough that a scan is in progress for a while, and one whose hot keys come
  from MONITOR samples of a small read workload the check runs. Without
  `redis-server` they are skipped, or fail with --require-redis. The hot slot
  panels need a server with CLUSTER SLOT-STATS (Valkey 8.0+, Redis 8.2+):
  with --slot-stats-server the check starts a one-node cluster of it with
  slot stats on; without, they are skipped. The per-key CPU and network
  panels need Redis 8.6+ HOTKEYS, which no server the check can start has:
  they are always skipped, with that reason,
* every alerting and recording rule evaluates without error,
* the hot key alert (DcsHotKey) fires.

The copy of the rules has every `for:` duration replaced by `--for` (default
10s) so alerts fire within the time budget; thresholds are unchanged.

Usage:
    python3 tests/system/check_prometheus.py --exporter-bin target/debug/dcs-key-exporter [--timeout 120] [--require-redis]

Needs `prometheus` (and optionally `promtool`) on PATH or given with
--prometheus / --promtool. Prints one line per check and `N passed, M failed`;
exits 1 when a check failed, 2 when the setup failed. Python 3 standard
library only.
"""

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import socket
import urllib.parse

from harness import SetupError, free_port, http_get, run_check, start, stop, tail, wait_ready

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
JOB = "dcs"

DATASOURCE = os.path.join(ROOT, "grafana", "provisioning", "datasources", "prometheus.yml")
SCRAPE_CONFIGS = [
    (os.path.join(ROOT, "deploy", "prometheus", "prometheus.yml"), r"(?m)^\s*scrape_interval:\s*(\S+)"),
    (os.path.join(ROOT, "deploy", "kubernetes", "servicemonitor.yaml"), r"(?m)^\s*interval:\s*(\S+)"),
    (os.path.join(ROOT, "README.md"), r"(?m)^\s*scrape_interval:\s*(\S+)"),
]


def seconds(duration):
    """`60s`, `1m`, `2m30s` as seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    return sum(int(n) * units[u] for n, u in parts)


def time_interval():
    """The provisioned data source's timeInterval (Grafana's idea of the scrape interval)."""
    with open(DATASOURCE, encoding="utf-8") as f:
        m = re.search(r"(?m)^\s*timeInterval:\s*(\S+)", f.read())
    if not m:
        raise SetupError(f"no timeInterval in {DATASOURCE}")
    return m.group(1)


# Grafana's built-in variables. Prometheus here scrapes every second, but the panels are
# evaluated with the windows Grafana uses against the shipped 60 s scrape interval:
# $__rate_interval = max($__interval + timeInterval, 4 × timeInterval).
BUILTINS = {
    "__rate_interval": "240s",  # set from the data source's timeInterval in run()
    "__interval": "60s",  # never below timeInterval
    "__interval_ms": "60000",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
}

VAR_RE = re.compile(r"\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)")
LITERAL_RE = re.compile(r'(=~|!~|!=|=)(\s*)"((?:[^"\\]|\\.)*)"')
LABEL_VALUES_RE = re.compile(r"^\s*label_values\(\s*(?:(.*?)\s*,\s*)?(\w+)\s*\)\s*$", re.S)
QUERY_RESULT_RE = re.compile(r"^\s*query_result\((.*)\)\s*$", re.S)


# ----------------------------------------------------------------- Prometheus API


class Prom:
    def __init__(self, base):
        self.base = base

    def api(self, path, params):
        url = f"{self.base}{path}?{urllib.parse.urlencode(params, doseq=True)}"
        status, body = http_get(url, timeout=10)
        if status is None:
            raise SetupError(f"Prometheus unreachable: {body.decode(errors='replace')}")
        try:
            doc = json.loads(body)
        except ValueError:
            return "error", f"HTTP {status}: {body[:200]!r}"
        if doc.get("status") != "success":
            return "error", f"{doc.get('errorType')}: {doc.get('error')}"
        return "success", doc["data"]

    def query(self, expr):
        """Returns ("success", result list) or ("error", message)."""
        status, data = self.api("/api/v1/query", {"query": expr})
        if status != "success":
            return status, data
        if data["resultType"] in ("vector", "matrix"):
            return status, data["result"]
        return status, [data["result"]]  # scalar or string: one value

    def label_values(self, label, selector):
        params = {"match[]": selector} if selector else {}
        status, data = self.api(f"/api/v1/label/{label}/values", params)
        return sorted(data) if status == "success" else []


# ----------------------------------------------------------------- dashboards


def panels(dashboard):
    """All panels, including those nested in collapsed rows."""
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])


def quote_promql(value):
    return value.replace("\\", "\\\\").replace('"', '\\"')


def substitute(expr, values, escape=True):
    """Replaces Grafana variables in expr.

    values maps a variable name to its value. Inside a `=~`/`!~` string the
    value is regex-escaped (as Grafana does for multi-value variables) unless
    escape is false (the value is a regex already); inside any string it is
    then quoted for PromQL; elsewhere (e.g. `[$__range]`) it goes in verbatim.
    Unknown variables are left alone, so the query fails visibly.
    """

    def literal(m):
        op, space, body = m.group(1), m.group(2), m.group(3)
        regex = escape and op in ("=~", "!~")

        def one(v):
            name = v.group(1) or v.group(2) or v.group(3)
            if name not in values:
                return v.group(0)
            return quote_promql(re.escape(values[name]) if regex else values[name])

        return f'{op}{space}"{VAR_RE.sub(one, body)}"'

    expr = LITERAL_RE.sub(literal, expr)
    # Outside string literals (range durations); values here never contain `$`.
    return VAR_RE.sub(lambda m: values.get(m.group(1) or m.group(2) or m.group(3), m.group(0)), expr)


def variable_candidates(prom, dashboard):
    """Maps each query variable of the dashboard to the values it can take now.

    Variables are resolved in order, so `label_values(x{job=~"$job"}, id)` sees
    the values found for $job (all of them, as the "All" option would).
    """
    found = {}
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        q = var.get("definition") or var.get("query")
        if isinstance(q, dict):
            q = q.get("query", "")
        alternation = {k: "|".join(re.escape(v) for v in vs) for k, vs in found.items() if vs}
        alternation.update(BUILTINS)
        m = LABEL_VALUES_RE.match(q or "")
        r = QUERY_RESULT_RE.match(q or "")
        if m:
            selector, label = m.group(1), m.group(2)
            if selector:
                selector = substitute(selector, alternation, escape=False)
            values = prom.label_values(label, selector)
        elif r:
            status, result = prom.query(substitute(r.group(1), alternation, escape=False))
            values = [query_result_text(s) for s in result] if status == "success" else []
        else:
            values = []
        found[var["name"]] = apply_regex(var.get("regex") or "", values)
    return found


def query_result_text(series):
    """One series as Grafana's query_result() shows it: `name{a="x",b="y"} value timestamp_ms`."""
    labels = dict(series.get("metric", {}))
    name = labels.pop("__name__", "")
    ts, value = series.get("value", [0, ""])
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}} {value} {int(float(ts) * 1000)}"


def apply_regex(regex, texts):
    """A variable's regex, as Grafana applies it: keep matches; the `value` group (else the
    first group, else the match) is the value. Grafana's JavaScript `(?<name>` is Python's
    `(?P<name>`."""
    if not regex:
        return sorted(set(texts))
    m = re.fullmatch(r"/(.*)/([gimsuy]*)", regex, re.S)
    pattern, flags = (m.group(1), m.group(2)) if m else (regex, "")
    compiled = re.compile(pattern.replace("(?<", "(?P<"), re.I if "i" in flags else 0)
    values = set()
    for text in texts:
        hit = compiled.search(text)
        if not hit:
            continue
        if "value" in compiled.groupindex:
            values.add(hit.group("value"))
        elif compiled.groups:
            values.add(hit.group(1))
        else:
            values.add(hit.group(0))
    return sorted(values)


class PanelQuery:
    def __init__(self, dash_file, panel, target):
        self.name = f"{dash_file} / {panel.get('title', '?')} / {target.get('refId', '?')}"
        self.expr = target["expr"]
        self.dash_file = dash_file
        self.done = False
        self.error = None
        self.last = "no result yet"

    def attempt(self, prom, candidates):
        names = sorted({m.group(1) or m.group(2) or m.group(3) for m in VAR_RE.finditer(self.expr)} - set(BUILTINS))
        missing = [n for n in names if not candidates.get(n)]
        if missing:
            self.last = "no values yet for " + ", ".join("$" + n for n in missing)
            return False
        for combo in itertools.islice(itertools.product(*(candidates[n] for n in names)), 50):
            values = dict(BUILTINS)
            values.update(zip(names, combo))
            expr = substitute(self.expr, values)
            status, result = prom.query(expr)
            if status != "success":
                # A query Prometheus rejects will not get better with time.
                self.error = f"{result} in {expr}"
                return False
            if result:
                chosen = ", ".join(f"${n}={v}" for n, v in zip(names, combo))
                self.done = True
                self.last = f"{len(result)} series" + (f" with {chosen}" if chosen else "")
                return True
            self.last = f"empty result for {expr}"
        return False


def load_dashboards(directory):
    queries = []
    dashboards = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(directory, name), encoding="utf-8") as f:
            dashboard = json.load(f)
        dashboards.append((name, dashboard))
        for panel in panels(dashboard):
            for target in panel.get("targets", []):
                if target.get("expr"):
                    queries.append(PanelQuery(name, panel, target))
        for annotation in dashboard.get("annotations", {}).get("list", []):
            if annotation.get("expr"):
                queries.append(PanelQuery(name, {"title": f"annotation {annotation.get('name', '?')}"},
                                          {"expr": annotation["expr"], "refId": "annotation"}))
    return dashboards, queries


# ----------------------------------------------------------------- rules


def rules_copy(src, dst, for_duration):
    """Copies the rule file, replacing every `for: <duration>` line; returns the count."""
    with open(src, encoding="utf-8") as f:
        text = f.read()
    text, n = re.subn(r"(?m)^(\s*)for:\s*\S+\s*$", lambda m: f"{m.group(1)}for: {for_duration}", text)
    with open(dst, "w", encoding="utf-8") as f:
        f.write(text)
    return n


# Metrics only Redis and Valkey targets export: their panels need the native exporter.
NATIVE_ONLY = re.compile(
    r"dcs_bigkey_memory_bytes|dcs_analysis_scan_|dcs_hotkey_source_info|dcs_hotkey_accesses_per_second"
    r"|dcs_keyfamily_keys_without_ttl")
# Only from Redis 8.6+ HOTKEYS sessions (tests/it/hotkey_sources.rs checks them against fakes).
HOTKEYS_ONLY = re.compile(r"dcs_hotkey_cpu_seconds_per_second|dcs_hotkey_network_bytes_per_second")
OTHER_MEASURES = re.compile(r"dcs_hotkey_frequency|dcs_hotkey_accesses_per_second")
# Only from servers with CLUSTER SLOT-STATS (--slot-stats-server).
SLOT_STATS_ONLY = re.compile(r"dcs_hotslot_")


def redis_command(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def start_redis(server_bin, tmp, procs, deadline):
    """Starts redis-server on a loopback port with an LFU policy and fills it with keys of
    every type (3,000 strings and 100 collections); returns its port."""
    port = free_port()
    data = os.path.join(tmp, "redis")
    os.mkdir(data)
    log = os.path.join(tmp, "redis.log")
    proc = start([server_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                  "--dir", data, "--maxmemory-policy", "allkeys-lfu"], log)
    procs.append(proc)
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SetupError(f"redis-server did not start:\n{tail(log)}")
            time.sleep(0.1)
    with sock:
        cmds = bytearray()
        for i in range(3000):
            cmds += redis_command("SET", f"native:str:{i}", "x" * (16 + i))
        for i in range(20):
            members = [f"m{j}" for j in range(10 + 10 * i)]
            cmds += redis_command("RPUSH", f"native:list:{i}", *members)
            cmds += redis_command("SADD", f"native:set:{i}", *members)
            cmds += redis_command("HSET", f"native:hash:{i}", *[x for m in members for x in (m, "v")])
            cmds += redis_command("ZADD", f"native:zset:{i}", *[x for j, m in enumerate(members) for x in (j, m)])
            cmds += redis_command("XADD", f"native:stream:{i}", "*", "f", "v")
        cmds += redis_command("PING")
        sock.sendall(cmds)
        got = b""
        while not got.endswith(b"+PONG\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise SetupError("redis-server closed the connection while being filled")
            got += chunk
        if b"\r\n-" in got or got.startswith(b"-"):
            raise SetupError(f"redis-server refused a command while being filled: {got[:200]!r}")
    return port


def start_slot_stats_cluster(server_bin, tmp, procs, deadline):
    """A one-node cluster of `server_bin` serving every slot, with slot stats on; its port."""
    port = free_port()
    data = os.path.join(tmp, "cluster")
    os.mkdir(data)
    log = os.path.join(tmp, "cluster.log")
    proc = start([server_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                  "--dir", data, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                  "--cluster-slot-stats-enabled", "yes"], log)
    procs.append(proc)
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SetupError(f"{server_bin} did not start:\n{tail(log)}")
            time.sleep(0.1)
    with sock:
        sock.sendall(redis_command("CLUSTER", "ADDSLOTSRANGE", 0, 16383))
        if not sock.recv(100).startswith(b"+OK"):
            raise SetupError("the cluster node refused CLUSTER ADDSLOTSRANGE")
    return port


def workload(ports, stop_at):
    """Reads a few keys on each port, every 20 ms, until `stop_at`: the traffic the MONITOR
    target samples and the hot slot polls measure."""
    socks = []
    for port in ports:
        try:
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            pass
    cmds = b"".join(redis_command("GET", f"native:str:{i}") for i in range(5)) + redis_command("SET", "hot", "v")
    while time.monotonic() < stop_at:
        for s in socks:
            try:
                s.sendall(cmds)
                s.recv(65536)
            except OSError:
                pass
        time.sleep(0.02)
    for s in socks:
        s.close()


def native_config(path, redis_port, cluster_port=None):
    """Targets on one server: `native-cache` at the default throttle (results within a
    second), `native-slow` at 100 keys/s (a big key scan runs for 30 s of every minute),
    `native-monitor` with hot keys from MONITOR samples; and, given a cluster, `native-cluster`
    for its hot slots."""
    address = f"redis://127.0.0.1:{redis_port}"
    cluster = ""
    if cluster_port:
        cluster = (f"  - id: native-cluster\n    name: native-cluster\n"
                   f"    address: {json.dumps(f'redis://127.0.0.1:{cluster_port}')}\n"
                   "    analysis: {hotkey: {mode: off}, bigkey: {mode: off}, hotslot: {interval: 5s, timeout: 4s}}\n")
    with open(path, "w", encoding="utf-8") as f:
        f.write(
            "redis:\n"
            f"  - {{id: native-cache, name: native-cache, address: {json.dumps(address)}}}\n"
            f"  - id: native-slow\n    name: native-slow\n    address: {json.dumps(address)}\n"
            "    throttle: {keys_per_second: 100}\n"
            "    analysis: {hotkey: {mode: off}, bigkey: {interval: 1m, timeout: 50s}}\n"
            f"  - id: native-monitor\n    name: native-monitor\n    address: {json.dumps(address)}\n"
            "    analysis:\n"
            "      hotkey: {source: monitor, interval: 10s, monitor: {window: 1s}}\n"
            "      bigkey: {mode: off}\n"
            + cluster +
            "analysis:\n"
            "  hotkey: {interval: 1m, top_n: 10}\n"
            "  bigkey: {interval: 1m, top_n: 10}\n"
            "scheduler: {start_jitter: 0s}\n"
        )


def prometheus_config(path, rules, targets):
    with open(path, "w", encoding="utf-8") as f:
        f.write(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  evaluation_interval: 1s\n"
            "rule_files:\n"
            f"  - {json.dumps(rules)}\n"
            "scrape_configs:\n"
            f"  - job_name: {JOB}\n"
            "    static_configs:\n"
            f"      - targets: {json.dumps(targets)}\n"
        )


def rule_health(prom):
    """Returns (number of rules, [problems]) from /api/v1/rules."""
    status, data = prom.api("/api/v1/rules", {})
    if status != "success":
        return 0, [data]
    count, problems = 0, []
    for group in data.get("groups", []):
        for rule in group.get("rules", []):
            count += 1
            if rule.get("health") not in ("ok", "unknown"):
                problems.append(f"{group['name']}/{rule['name']}: {rule.get('health')} {rule.get('lastError', '')}")
            elif rule.get("health") == "unknown":
                problems.append(f"{group['name']}/{rule['name']}: not evaluated yet")
    return count, problems


def firing(prom, alertname):
    status, data = prom.api("/api/v1/alerts", {})
    if status != "success":
        return []
    return [a for a in data.get("alerts", []) if a["labels"].get("alertname") == alertname and a.get("state") == "firing"]


# ----------------------------------------------------------------- main


def run(args, results, tmp):
    deadline = time.monotonic() + args.timeout
    procs = []
    interval = time_interval()
    scrape = []
    for path, pattern in SCRAPE_CONFIGS:
        with open(path, encoding="utf-8") as f:
            scrape += [(os.path.relpath(path, ROOT), v) for v in re.findall(pattern, f.read())]
    different = [f"{where}: {v}" for where, v in scrape if seconds(v) != seconds(interval)]
    results.check(
        bool(scrape) and not different,
        "data source timeInterval matches the shipped scrape interval",
        f"timeInterval {interval}; " + ("; ".join(different) if different else f"{len(scrape)} scrape intervals, all equal"),
    )
    BUILTINS["__rate_interval"] = f"{4 * seconds(interval)}s"
    try:
        exporter_port = free_port()
        exporter_log = os.path.join(tmp, "exporter.log")
        exporter = start([args.exporter_bin, "--demo", f"--web.listen-address=127.0.0.1:{exporter_port}"], exporter_log)
        procs.append(exporter)
        wait_ready("exporter", f"http://127.0.0.1:{exporter_port}/-/ready", exporter, exporter_log, min(deadline, time.monotonic() + 30))
        results.ok("exporter ready", f"127.0.0.1:{exporter_port}")
        targets = [f"127.0.0.1:{exporter_port}"]

        redis_bin = shutil.which(args.redis_server)
        cluster_port = None
        if redis_bin:
            redis_port = start_redis(redis_bin, tmp, procs, deadline)
            if args.slot_stats_server:
                if not shutil.which(args.slot_stats_server):
                    raise SetupError(f"{args.slot_stats_server} not found (--slot-stats-server)")
                cluster_port = start_slot_stats_cluster(args.slot_stats_server, tmp, procs, deadline)
            threading.Thread(target=workload, args=([p for p in (redis_port, cluster_port) if p], deadline),
                             daemon=True).start()
            native_port = free_port()
            native_yaml = os.path.join(tmp, "native.yml")
            native_config(native_yaml, redis_port, cluster_port)
            native_log = os.path.join(tmp, "native-exporter.log")
            native = start([args.exporter_bin, f"--config.file={native_yaml}",
                            f"--web.listen-address=127.0.0.1:{native_port}"], native_log)
            procs.append(native)
            wait_ready("native exporter", f"http://127.0.0.1:{native_port}/-/ready", native, native_log,
                       min(deadline, time.monotonic() + 30))
            results.ok("native exporter ready", f"127.0.0.1:{native_port}, redis-server on 127.0.0.1:{redis_port}")
            targets.append(f"127.0.0.1:{native_port}")
        elif args.require_redis:
            raise SetupError(f"{args.redis_server} not found (--require-redis)")

        rules = os.path.join(tmp, "alerts.yml")
        n = rules_copy(args.rules, rules, args.for_duration)
        results.ok("rules copied", f"{n} `for:` durations set to {args.for_duration}")
        if args.promtool and shutil.which(args.promtool):
            check = subprocess.run([args.promtool, "check", "rules", rules], capture_output=True, text=True)
            if check.returncode == 0:
                results.ok("promtool check rules", check.stdout.strip().splitlines()[-1].strip())
            else:
                results.fail("promtool check rules", (check.stdout + check.stderr).strip())

        prom_port = free_port()
        config = os.path.join(tmp, "prometheus.yml")
        prometheus_config(config, rules, targets)
        prom_log = os.path.join(tmp, "prometheus.log")
        prometheus = start(
            [
                args.prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={os.path.join(tmp, 'data')}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            prom_log,
        )
        procs.append(prometheus)
        wait_ready("prometheus", f"http://127.0.0.1:{prom_port}/-/ready", prometheus, prom_log, min(deadline, time.monotonic() + 60))
        results.ok("prometheus ready", f"127.0.0.1:{prom_port}")
        prom = Prom(f"http://127.0.0.1:{prom_port}")

        dashboards, queries = load_dashboards(args.dashboards)
        if not queries:
            raise SetupError(f"no panel queries found in {args.dashboards}")
        if not redis_bin:
            for q in [q for q in queries if NATIVE_ONLY.search(q.expr)]:
                results.skip(q.name, f"needs a Redis target; {args.redis_server} not found")
                queries.remove(q)
        # A query that also reads another measure (`a or b`) gets its data from that one.
        for q in [q for q in queries if HOTKEYS_ONLY.search(q.expr) and not OTHER_MEASURES.search(q.expr)]:
            results.skip(q.name, "needs Redis 8.6+ HOTKEYS, which no server here has")
            queries.remove(q)
        if not cluster_port:
            for q in [q for q in queries if SLOT_STATS_ONLY.search(q.expr)]:
                results.skip(q.name, "needs a server with CLUSTER SLOT-STATS (--slot-stats-server)")
                queries.remove(q)

        up = hot = None
        rules_state = (0, ["not checked"])
        while True:
            for proc, name in ((exporter, "exporter"), (prometheus, "prometheus")):
                if proc.poll() is not None:
                    raise SetupError(f"{name} exited with code {proc.returncode}:\n{tail(exporter_log if name == 'exporter' else prom_log)}")
            if up is None:
                status, result = prom.query(f'up{{job="{JOB}"}} == 1')
                if status == "success" and result:
                    up = True
                    results.ok("scrape target up")
            candidates = {name: variable_candidates(prom, dashboard) for name, dashboard in dashboards}
            for q in queries:
                if not q.done and q.error is None:
                    q.attempt(prom, candidates[q.dash_file])
            if hot is None:
                alerts = firing(prom, "DcsHotKey")
                if alerts:
                    hot = alerts[0]
            rules_state = rule_health(prom)
            pending = [q for q in queries if not q.done and q.error is None]
            if (not pending and hot is not None and up and rules_state[0] and not rules_state[1]) or time.monotonic() > deadline:
                break
            time.sleep(2)

        if not up:
            results.fail("scrape target up", f"see {prom_log}")
        for q in queries:
            if q.done:
                results.ok(q.name, q.last)
            else:
                results.fail(q.name, q.error or q.last)
        count, problems = rules_state
        if count and not problems:
            results.ok("rules evaluate without errors", f"{count} rules")
        else:
            results.fail("rules evaluate without errors", "; ".join(problems) or "no rules loaded")
        if hot is not None:
            labels = hot["labels"]
            results.ok("DcsHotKey firing", f"key {labels.get('key')!r} on {labels.get('instance_name')} ({labels.get('instance_id')}), frequency {hot.get('value')}")
        else:
            results.fail("DcsHotKey firing", f"not firing within {args.timeout}s")
    finally:
        for proc in reversed(procs):
            stop(proc)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exporter-bin", required=True, help="path to the dcs-key-exporter binary")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for data and alerts (default 120)")
    parser.add_argument("--prometheus", default="prometheus", help="prometheus binary (default: from PATH)")
    parser.add_argument("--promtool", default="promtool", help="promtool binary; skipped when not found")
    parser.add_argument("--rules", default=os.path.join(ROOT, "config", "alerts.yml"), help="rule file to load")
    parser.add_argument("--dashboards", default=os.path.join(ROOT, "grafana", "dashboards"), help="folder of dashboard JSON files")
    parser.add_argument("--for", dest="for_duration", default="10s", help="replaces every `for:` duration of the rules (default 10s)")
    parser.add_argument("--redis-server", default="redis-server", help="redis-server binary for the Redis target panels (default: from PATH)")
    parser.add_argument("--require-redis", action="store_true", help="fail instead of skipping the Redis target panels without redis-server")
    parser.add_argument("--slot-stats-server", help="a Valkey 8.0+ or Redis 8.2+ server binary for the hot slot panels (skipped without)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs, config, TSDB)")
    args = parser.parse_args()

    if not os.path.exists(args.exporter_bin):
        print(f"exporter binary not found: {args.exporter_bin}", file=sys.stderr)
        return 2
    if not shutil.which(args.prometheus):
        print(f"prometheus binary not found: {args.prometheus}", file=sys.stderr)
        return 2

    return run_check(
        "dcs-check-prometheus-",
        lambda results, tmp: run(args, results, tmp),
        keep=args.keep,
        keep_on_failure=True,
    )

if __name__ == "__main__":
    sys.exit(main())
