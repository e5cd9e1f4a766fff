#!/usr/bin/env python3
"""Checks the Rust client's AK/SK signatures with the official Huawei Cloud SDK's signer.

Usage:
    python tests/sdk/verify_client_signatures.py target/debug/examples/every_call
    python tests/sdk/verify_client_signatures.py            # builds the example with cargo

Starts an HTTP server on 127.0.0.1 (ephemeral port) that recomputes the signature of every
request it receives with `huaweicloudsdkcore.signer.signer.Signer` (its canonical request,
string-to-sign and HMAC code), from the received method, path, query, the headers named in
SignedHeaders and the body. A mismatch is answered 401 APIG.0301 like the API gateway; a match
gets a plausible 200 JSON answer. Then runs the `every_call` example against it (once with plain
AK/SK, once with temporary credentials and an endpoint path prefix) and checks that every
request verified and every call succeeded; a last run with a wrong secret key must be refused. Prints one line per check and a closing `N passed, M failed`; exits 1 on any failure.

Needs the packages pinned in tests/sdk/requirements.txt.
"""

import datetime
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

AK = "AKTESTEXAMPLE0000000"
SK = "SKtestExampleSecretKey0000000000000000000"
SECURITY_TOKEN = "temporary-security-token/with+odd=chars"
PROJECT = "0123456789abcdef0123456789abcdef"
INSTANCE = "5560df16-cebf-4473-95c4-d1b573c16e79"
# A task id that needs percent-encoding in the path.
TASK_ID = "task 1:ü~x"
MAX_SKEW = datetime.timedelta(minutes=15)
# Every call of the example: 6 per scan analysis, ShowInstance and ListInstances, the four
# offline key analysis calls and the backup, node and group listings.
EXPECTED_OPERATIONS = [
    "CreateHotkeyScanTask", "ListHotKeyScanTasks", "ShowHotkeyTaskDetails",
    "ShowHotkeyAutoscanConfig", "UpdateHotkeyAutoScanConfig", "DeleteHotkeyScanTask",
    "CreateBigkeyScanTask", "ListBigkeyScanTasks", "ShowBigkeyScanTaskDetails",
    "ShowBigkeyAutoscanConfig", "UpdateBigkeyAutoscanConfig", "DeleteBigkeyScanTask",
    "ShowInstance", "ListInstances",
    "ListBackupRecords", "ShowNodesInformation", "ListGroupReplicationInfo",
    "CreateOfflineKeyAnalysis", "ListOfflineKeyAnalysisTask", "ShowOfflineKeyAnalysisTask",
    "DeleteOfflineKeyAnalysisTask",
]


def parse_authorization(value):
    """Splits `SDK-HMAC-SHA256 Access=.., SignedHeaders=a;b, Signature=..` into a dict."""
    algorithm, _, rest = value.partition(" ")
    if algorithm != "SDK-HMAC-SHA256":
        return None
    fields = {}
    for part in rest.split(","):
        name, sep, val = part.strip().partition("=")
        if not sep:
            return None
        fields[name] = val
    if not {"Access", "SignedHeaders", "Signature"} <= fields.keys():
        return None
    return fields


def parse_query(raw):
    """Query pairs decoded with %XX only ('+' stays '+'), as the SDK builds them."""
    pairs = []
    for piece in raw.split("&"):
        if not piece:
            continue
        key, _, value = piece.partition("=")
        pairs.append((unquote(key), unquote(value)))
    return pairs


def verify(method, raw_path, headers, body, secret_key):
    """Returns (ok, reason) for one received request, using the SDK's own signer code."""
    auth_value = headers.get("Authorization")
    if not auth_value:
        return False, "no Authorization header"
    auth = parse_authorization(auth_value)
    if auth is None:
        return False, "malformed Authorization header"
    if auth["Access"] != AK:
        return False, "unknown access key"
    signed = auth["SignedHeaders"].split(";")
    for required in ("host", "x-sdk-date", "content-type", "x-project-id"):
        if required not in signed:
            return False, "%s is not signed" % required
    if signed != sorted(signed):
        return False, "SignedHeaders not sorted"
    date = headers.get("X-Sdk-Date")
    try:
        sent = datetime.datetime.strptime(date or "", "%Y%m%dT%H%M%SZ")
    except ValueError:
        return False, "bad X-Sdk-Date %r" % date
    now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    if abs(now - sent) > MAX_SKEW:
        return False, "X-Sdk-Date too far from now"
    if "x-security-token" in {k.lower() for k in headers.keys()} and "x-security-token" not in signed:
        return False, "X-Security-Token sent but not signed"

    path, _, query = raw_path.partition("?")
    # Only the signed headers take part, as on the gateway; names as received.
    header_params = {}
    for name in signed:
        value = headers.get(name)
        if value is None:
            return False, "signed header %s missing" % name
        header_params[name] = value
    request = SdkRequest(
        method=method,
        schema="http",
        host=headers.get("Host"),
        resource_path=path,
        uri=raw_path,
        query_params=parse_query(query),
        header_params=header_params,
        body=body,
    )
    signer = Signer(BasicCredentials(AK, secret_key, PROJECT))
    canonical = signer._process_canonical_request(request, signed)
    string_to_sign = signer._process_string_to_sign(canonical, sent)
    expected = signer._sign_string_to_sign(string_to_sign, secret_key)
    if expected != auth["Signature"]:
        return False, "signature mismatch (canonical request %r)" % canonical
    return True, "signature ok"


def plausible_answer(method, path):
    """A 200 JSON body of the documented shape for the operation behind `path`."""
    segments = path.split("/")
    now = "2024-01-01T00:00:00.000Z"
    task = {
        "id": TASK_ID, "instance_id": INSTANCE, "status": "success", "scan_type": "manual",
        "created_at": now, "started_at": now, "finished_at": now, "num": 1,
        "keys": [{"name": "k", "type": "string", "shard": "192.168.1.134:6379", "db": 0,
                  "size": 3000, "unit": "byte", "freq": 4}],
    }
    last = unquote(segments[-1])
    if last == "key-analysis" and method == "POST":
        return {"task_id": TASK_ID}
    if last == "key-analysis":
        return {"instance_id": INSTANCE, "total": 1, "records": [
            {k: task[k] for k in ("id", "status", "created_at", "started_at", "finished_at")}]}
    if len(segments) >= 2 and segments[-2] == "key-analysis":
        if method == "DELETE":
            return {"task_id": TASK_ID}
        return {"id": TASK_ID, "instance_id": INSTANCE, "node_id": "n1", "backup_id": "b1",
                "group_name": "group-0", "node_type": "slave", "analysis_type": "old_backup",
                "started_at": now, "finished_at": now,
                "largest_key_prefixes": [{"key_prefix": "user:", "type": "hash", "bytes": 10, "num": 1}],
                "largest_keys": [], "total_bytes": 10, "total_num": 1,
                "type_bytes": [{"type": "hash", "bytes": 10}], "type_num": [{"type": "hash", "num": 1}]}
    if last == "backups":
        return {"total_num": 1, "backup_record_response": [
            {"backup_id": "b1", "status": "succeed", "created_at": now, "updated_at": now}]}
    if last == "logical-nodes":
        return {"instance_id": INSTANCE, "total": 1, "nodes": [
            {"node_id": "n1", "node_type": "master", "node_role": "redis-server", "group_name": "group-0"}]}
    if last == "groups":
        return {"group_count": 1, "group_list": [{"group_id": "g0", "group_name": "group-0",
                "replication_list": [{"replication_role": "master", "node_id": "n1"}]}]}
    if last in ("hotkey-tasks", "bigkey-tasks"):
        return {"instance_id": INSTANCE, "count": 1, "records": [
            {k: task[k] for k in ("id", "status", "scan_type", "created_at", "started_at", "finished_at")}]}
    if last == "autoscan":
        return {"instance_id": INSTANCE, "enable_auto_scan": True,
                "schedule_at": ["21:00", "09:30"], "updated_at": now}
    if last in ("hotkey-task", "bigkey-task") or (len(segments) >= 2 and segments[-2] in ("hotkey-task", "bigkey-task")):
        return task
    instance = {"instance_id": INSTANCE, "name": "dcs-a", "engine": "Redis",
                "engine_version": "5.0", "status": "RUNNING"}
    if last == "instances":
        return {"instance_num": 1, "instances": [instance]}
    return instance


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.results = []  # (method, path, ok, reason)


def make_handler(recorder):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):  # keep the output to our own lines
            pass

        def handle_any(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                ok, reason = verify(self.command, self.path, self.headers, body, SK)
            except Exception as e:  # a malformed request must fail, not crash the server
                ok, reason = False, "verification raised %s: %s" % (type(e).__name__, e)
            path = self.path.partition("?")[0]
            with recorder.lock:
                recorder.results.append((self.command, self.path, ok, reason))
            if ok:
                status, payload = 200, plausible_answer(self.command, path)
            else:
                status, payload = 401, {
                    "error_code": "APIG.0301",
                    "error_msg": "Incorrect IAM authentication information: verify aksk signature fail",
                    "request_id": "verify-%d" % len(recorder.results),
                }
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Request-Id", "req-%d" % len(recorder.results))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = handle_any

    return Handler


def example_binary(argv):
    if len(argv) > 1:
        return argv[1]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run(["cargo", "build", "--example", "every_call"], cwd=root, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
    return os.path.join(target, "debug", "examples", "every_call")


def main(argv):
    binary = example_binary(argv)
    recorder = Recorder()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(recorder))
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    passed = failed = 0

    def check(ok, line):
        nonlocal passed, failed
        if ok:
            passed += 1
            print("ok   " + line)
        else:
            failed += 1
            print("FAIL " + line)

    try:
        runs = [
            ("aksk", [f"http://127.0.0.1:{port}", PROJECT, AK, SK, INSTANCE]),
            ("temporary", [f"http://127.0.0.1:{port}/prefix", PROJECT, AK, SK, INSTANCE, SECURITY_TOKEN]),
        ]
        for name, args in runs:
            with recorder.lock:
                recorder.results.clear()
            try:
                proc = subprocess.run([binary] + args, capture_output=True, text=True, timeout=120)
            except (OSError, subprocess.TimeoutExpired) as e:
                check(False, "%s: cannot run %s: %s" % (name, binary, e))
                continue
            with recorder.lock:
                results = list(recorder.results)
            for method, path, ok, reason in results:
                check(ok, "%s: %s %s: %s" % (name, method, path, reason))
            check(len(results) == len(EXPECTED_OPERATIONS),
                  "%s: %d requests received, %d expected" % (name, len(results), len(EXPECTED_OPERATIONS)))
            lines = proc.stdout.splitlines()
            outcome = dict(line.split(" ", 1) for line in lines if " " in line)
            for op in EXPECTED_OPERATIONS:
                check(outcome.get(op) == "ok", "%s: %s -> %s" % (name, op, outcome.get(op, "(no line)")))
            check(proc.returncode == 0, "%s: every_call exit status %d" % (name, proc.returncode))
            if proc.returncode != 0 and proc.stderr:
                print(proc.stderr.rstrip())

        # Control: signatures made with another secret key must all be refused, and the
        # example must report the 401s, or the checks above prove nothing.
        with recorder.lock:
            recorder.results.clear()
        args = [f"http://127.0.0.1:{port}", PROJECT, AK, SK[:-1] + "X", INSTANCE]
        try:
            proc = subprocess.run([binary] + args, capture_output=True, text=True, timeout=120)
            with recorder.lock:
                results = list(recorder.results)
            check(len(results) > 0 and not any(ok for _, _, ok, _ in results),
                  "control: all %d requests signed with a wrong key were refused" % len(results))
            check(proc.returncode == 1 and "HTTP 401 APIG.0301" in proc.stdout,
                  "control: every_call reported the 401s (exit status %d)" % proc.returncode)
        except (OSError, subprocess.TimeoutExpired) as e:
            check(False, "control: cannot run %s: %s" % (binary, e))
    finally:
        server.shutdown()
        server.server_close()

    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
