#!/usr/bin/env python3
"""A stand-in for `dcs-key-exporter --demo`, used to test the system check scripts themselves.

It serves hand-written metrics that follow the metrics contract (namespace `dcs`)
for four made-up instances, plus /-/ready, /-/healthy and a minimal status page
at /. It knows nothing about DCS; the real end-to-end run uses the exporter:

    python3 tests/system/check_prometheus.py --exporter-bin tests/system/fake_exporter.py
    python3 tests/system/status_page.py --exporter-bin tests/system/fake_exporter.py

Accepts `--demo` (ignored) and `--web.listen-address=HOST:PORT`. Python 3
standard library only.
"""

import argparse
import html
import http.server
import time

START = time.time()

# (id, name, shards): cluster, master/standby, hot key unsupported, flaky.
INSTANCES = [
    ("5560df16-cebf-4473-95c4-d1b573c16e79", "orders-cache", ["10.0.0.1:6379", "10.0.0.2:6379"]),
    ("8a1e7c02-3b55-4d0e-9f1a-2c6d7e8f9a01", "sessions", [""]),
    ("c0ffee00-1111-4222-8333-444455556666", "legacy-cache", [""]),
    ("d15ea5e0-aaaa-4bbb-8ccc-dddd0000eeee", "flaky-cache", [""]),
]
HOT_KEYS = [("user:42:profile", "string", "0", 255, 3000, "byte"), ('cart:"7"', "hash", "0", 230, 120, "count"), ("feed:home", "zset", "1", 180, 800, "count")]
BIG_KEYS = [("blob:report", "string", "0", 20480, "byte"), ("queue:jobs", "list", "0", 120000, "count"), ("tags:all", "set", "2", 4000, "count")]
REASONS = ["task_failed", "timeout", "api_error", "auth", "unsupported"]


def esc(value):
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def labels(**kv):
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in kv.items()) + "}"


def estimated(freq, factor=10):
    c = freq
    return 0 if c < 5 else (c - 5) + factor * (c - 5) * (c - 6) / 2


def metrics():
    now = time.time()
    up = now - START
    out = []

    def family(name, kind, help_text):
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")

    family("dcs_hotkey_frequency", "gauge", "LFU frequency of a hot key, from the newest completed hot key analysis (cached).")
    for iid, name, shards in INSTANCES:
        if name == "legacy-cache":
            continue
        for i, (key, ktype, db, freq, _, _) in enumerate(HOT_KEYS):
            out.append(f"dcs_hotkey_frequency{labels(instance_id=iid, instance_name=name, key=key, key_type=ktype, db=db, shard=shards[i % len(shards)])} {freq}")
    family("dcs_hotkey_estimated_accesses", "gauge", "Accesses that drive a fresh key's LFU counter to freq (decay ignored).")
    for iid, name, shards in INSTANCES:
        if name == "legacy-cache":
            continue
        for i, (key, ktype, db, freq, _, _) in enumerate(HOT_KEYS):
            out.append(f"dcs_hotkey_estimated_accesses{labels(instance_id=iid, instance_name=name, key=key, key_type=ktype, db=db, shard=shards[i % len(shards)])} {estimated(freq)}")
    for metric, unit in (("dcs_hotkey_size_bytes", "byte"), ("dcs_hotkey_elements", "count")):
        family(metric, "gauge", f"Size of a hot key whose unit is {unit}.")
        for iid, name, shards in INSTANCES:
            if name == "legacy-cache":
                continue
            for i, (key, ktype, db, _, size, u) in enumerate(HOT_KEYS):
                if u == unit:
                    out.append(f"{metric}{labels(instance_id=iid, instance_name=name, key=key, key_type=ktype, db=db, shard=shards[i % len(shards)])} {size}")
    for metric, unit in (("dcs_bigkey_size_bytes", "byte"), ("dcs_bigkey_elements", "count")):
        family(metric, "gauge", f"Size of a big key whose unit is {unit}.")
        for iid, name, shards in INSTANCES:
            for i, (key, ktype, db, size, u) in enumerate(BIG_KEYS):
                if u == unit:
                    out.append(f"{metric}{labels(instance_id=iid, instance_name=name, key=key, key_type=ktype, db=db, shard=shards[i % len(shards)])} {size}")

    def per_analysis(metric, kind, value):
        family(metric, kind, "Per instance and analysis.")
        for iid, name, _ in INSTANCES:
            for analysis in ("hotkey", "bigkey"):
                v = value(name, analysis)
                if v is not None:
                    out.append(f"{metric}{labels(instance_id=iid, instance_name=name, analysis=analysis)} {v}")

    unsupported = lambda name, analysis: name == "legacy-cache" and analysis == "hotkey"  # noqa: E731
    per_analysis("dcs_analysis_keys", "gauge", lambda n, a: None if unsupported(n, a) else 12)
    per_analysis("dcs_analysis_duration_seconds", "gauge", lambda n, a: None if unsupported(n, a) else 3.5)
    per_analysis("dcs_analysis_queue_seconds", "gauge", lambda n, a: None if unsupported(n, a) else 0.5)
    per_analysis("dcs_analysis_last_success_timestamp_seconds", "gauge", lambda n, a: None if unsupported(n, a) else round(now - 5, 3))
    per_analysis("dcs_analysis_consecutive_failures", "gauge", lambda n, a: 2 if n == "flaky-cache" else 0)
    per_analysis("dcs_analysis_supported", "gauge", lambda n, a: 0 if unsupported(n, a) else 1)
    per_analysis("dcs_analysis_running", "gauge", lambda n, a: 1 if a == "bigkey" and n == "sessions" else 0)
    per_analysis("dcs_analysis_interval_seconds", "gauge", lambda n, a: 10)
    family("dcs_analysis_failures_total", "counter", "Attempts that produced no result, by reason.")
    for iid, name, _ in INSTANCES:
        for analysis in ("hotkey", "bigkey"):
            for reason in REASONS:
                v = int(up / 5) if (name == "flaky-cache" and reason == "task_failed") else (1 if unsupported(name, analysis) and reason == "unsupported" else 0)
                out.append(f"dcs_analysis_failures_total{labels(instance_id=iid, instance_name=name, analysis=analysis, reason=reason)} {v}")
    family("dcs_analysis_tasks_total", "counter", "Analysis tasks created or adopted.")
    for iid, name, _ in INSTANCES:
        for analysis in ("hotkey", "bigkey"):
            for origin in ("created", "adopted"):
                out.append(f"dcs_analysis_tasks_total{labels(instance_id=iid, instance_name=name, analysis=analysis, origin=origin)} {int(up / 3) if origin == 'created' else 1}")
    family("dcs_instance_info", "gauge", "Instance details.")
    for iid, name, _ in INSTANCES:
        out.append(f"dcs_instance_info{labels(instance_id=iid, instance_name=name, engine_version='5.0', spec_code='redis.ha.xu1.large.r2.2', status='RUNNING')} 1")

    family("dcs_api_requests_total", "counter", "DCS API requests, retries included.")
    ops = [("ListHotKeyScanTasks", "200", 1.0), ("ShowHotkeyTaskDetails", "200", 2.0), ("CreateBigkeyScanTask", "200", 0.2), ("CreateHotkeyScanTask", "200", 0.2), ("CreateHotkeyScanTask", "400", 0.05)]
    for op, code, per_s in ops:
        out.append(f"dcs_api_requests_total{labels(operation=op, code=code)} {int(up * per_s)}")
    family("dcs_api_request_duration_seconds", "histogram", "DCS API request latency.")
    buckets = ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]
    for op in sorted({o for o, _, _ in ops}):
        n = int(up * sum(p for o, _, p in ops if o == op))
        for i, le in enumerate(buckets):
            out.append(f"dcs_api_request_duration_seconds_bucket{labels(operation=op, le=le)} {n if i >= 3 else n // 4}")
        out.append(f"dcs_api_request_duration_seconds_sum{labels(operation=op)} {n * 0.03:.3f}")
        out.append(f"dcs_api_request_duration_seconds_count{labels(operation=op)} {n}")
    family("dcs_exporter_build_info", "gauge", "Build information.")
    out.append(f"dcs_exporter_build_info{labels(version='0.0.0-fake', revision='fake')} 1")
    family("dcs_exporter_config_last_reload_successful", "gauge", "1 if the last config (re)load succeeded.")
    out.append("dcs_exporter_config_last_reload_successful 1")
    family("process_cpu_seconds_total", "counter", "CPU time.")
    out.append(f"process_cpu_seconds_total {time.process_time():.3f}")
    family("process_resident_memory_bytes", "gauge", "Resident memory.")
    out.append("process_resident_memory_bytes 12345678")
    family("process_open_fds", "gauge", "Open file descriptors.")
    out.append("process_open_fds 9")
    family("process_start_time_seconds", "gauge", "Start time.")
    out.append(f"process_start_time_seconds {START:.3f}")
    return "\n".join(out) + "\n"


def status_page():
    rows = "".join(f"<tr><td>{html.escape(n)}</td><td>{html.escape(i)}</td><td>ok</td></tr>" for i, n, _ in INSTANCES)
    return f"<!doctype html><html><head><title>dcs-key-exporter</title><style>body{{font-family:sans-serif}}</style></head><body><h1>dcs-key-exporter (fake)</h1><p><a href=\"/metrics\">Metrics</a></p><table>{rows}</table></body></html>"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/metrics":
            body, ctype = metrics().encode(), "text/plain; version=0.0.4; charset=utf-8"
        elif self.path in ("/-/ready", "/-/healthy"):
            body, ctype = b"OK\n", "text/plain"
        elif self.path == "/":
            body, ctype = status_page().encode(), "text/html; charset=utf-8"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", action="store_true")
    parser.add_argument("--web.listen-address", dest="listen", default="127.0.0.1:9797")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    http.server.ThreadingHTTPServer((host or "0.0.0.0", int(port)), Handler).serve_forever()


if __name__ == "__main__":
    main()
