#!/usr/bin/env python3
"""Conformance of the DCS API simulator with the official Huawei Cloud Python SDK.

Usage:
    python tests/sdk/conformance.py path/to/dcs-key-exporter [--timeout SECONDS]
    python tests/sdk/conformance.py --sim-cmd "cargo run --example sim_server -- 127.0.0.1:{port}"

Starts `<binary> simulate --web.listen-address=127.0.0.1:<free port>` (the default preset: the
demo's varied instances with short task durations), waits until the port answers, then drives
every hot key, big key, autoscan, instance, offline key analysis, backup and node endpoint
through `huaweicloudsdkdcs` with AK/SK
signing, and checks the answers against the documented shapes and error codes. Prints one line
per check and a final `N passed, M failed`; exits 1 on any failure, 2 when the simulator cannot
be started. The simulator is always stopped.

Needs the packages pinned in tests/sdk/requirements.txt.
"""

import argparse
import logging
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import uuid

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkdcs.v2 import (
    AutoscanConfigRequest,
    CreateBigkeyScanTaskRequest,
    CreateHotkeyScanTaskRequest,
    CreateOfflineKeyAnalysisRequest,
    CreateOfflineKeyAnalysisRequestBody,
    DcsClient,
    DeleteBigkeyScanTaskRequest,
    DeleteHotkeyScanTaskRequest,
    DeleteOfflineKeyAnalysisTaskRequest,
    DownloadHotKeyRequest,
    ListBackupRecordsRequest,
    ListBigkeyScanTasksRequest,
    ListGroupReplicationInfoRequest,
    ListHotKeyScanTasksRequest,
    ListInstancesRequest,
    ListOfflineKeyAnalysisTaskRequest,
    ShowNodesInformationRequest,
    ShowOfflineKeyAnalysisTaskRequest,
    ShowBigkeyAutoscanConfigRequest,
    ShowBigkeyScanTaskDetailsRequest,
    ShowHotkeyAutoscanConfigRequest,
    ShowHotkeyTaskDetailsRequest,
    ShowInstanceRequest,
    UpdateBigkeyAutoscanConfigRequest,
    UpdateHotkeyAutoScanConfigRequest,
)

ACCESS_KEY = "SIMULATORACCESSKEY00"
SECRET_KEY = "simulator-secret-key"
PROJECT_ID = "0123456789abcdef0123456789abcdef"

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
KEY_TYPES = {"string", "list", "set", "zset", "hash"}
TASK_STATUSES = {"waiting", "running", "success", "failed"}


class Checks:
    """Counts and prints checks."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"PASS {name}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {name}{': ' + str(detail) if detail else ''}", flush=True)
        return bool(ok)

    def run(self, name, fn):
        """Runs fn(); a raised exception is a failed check. Returns fn's value or None."""
        try:
            value = fn()
        except Exception as e:  # noqa: BLE001 - every error is a reportable failure here
            self.check(name, False, f"{type(e).__name__}: {e}")
            return None
        self.check(name, True)
        return value

    def expect_error(self, name, fn, status, code):
        """fn() must raise the SDK exception with this HTTP status and error code."""
        try:
            fn()
        except exceptions.ClientRequestException as e:
            ok = e.status_code == status and e.error_code == code and bool(e.request_id)
            return self.check(
                name,
                ok,
                f"got {e.status_code} {e.error_code} {e.error_msg!r} request_id={e.request_id!r}",
            )
        except Exception as e:  # noqa: BLE001
            return self.check(name, False, f"unexpected {type(e).__name__}: {e}")
        return self.check(name, False, f"no error, expected {status} {code}")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, timeout):
    """Polls until the port accepts connections; False if the process died or time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def start_simulator(args):
    """Starts the simulator on a free port (three tries); returns (process, port) or None."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DCS_EXPORTER_")}
    for _ in range(3):
        port = free_port()
        if args.sim_cmd:
            cmd = shlex.split(args.sim_cmd.replace("{port}", str(port)))
        else:
            cmd = [args.binary, "simulate", f"--web.listen-address=127.0.0.1:{port}"]
        print(f"starting: {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
        try:
            proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
        except OSError as e:
            print(f"cannot start the simulator: {e}", file=sys.stderr)
            return None
        if wait_for_port(port, proc, args.start_timeout):
            return proc, port
        stop(proc)
    return None


def stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def make_client(port, secret_key=SECRET_KEY):
    config = HttpConfig.get_default_config()
    config.ignore_ssl_verification = True
    config.timeout = (5, 30)
    creds = BasicCredentials(ACCESS_KEY, secret_key, PROJECT_ID)
    return (
        DcsClient.new_builder()
        .with_http_config(config)
        .with_credentials(creds)
        .with_endpoints([f"http://127.0.0.1:{port}"])
        .build()
    )


def wait_finished(show, timeout):
    """Polls show() until the task leaves waiting/running; returns the last response."""
    deadline = time.monotonic() + timeout
    resp = show()
    while resp.status in ("waiting", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
        resp = show()
    return resp


def key_problems(keys, hot):
    """Everything wrong with a list of HotkeysBody / BigkeysBody, as strings."""
    problems = []
    for k in keys:
        if not isinstance(k.name, str) or not k.name:
            problems.append(f"bad name {k.name!r}")
        if k.type not in KEY_TYPES:
            problems.append(f"{k.name!r}: type {k.type!r}")
        want_unit = "byte" if k.type == "string" else "count"
        if k.unit != want_unit:
            problems.append(f"{k.name!r}: unit {k.unit!r} for type {k.type!r}")
        if not isinstance(k.size, int) or k.size <= 0:
            problems.append(f"{k.name!r}: size {k.size!r}")
        if not isinstance(k.db, int) or k.db < 0:
            problems.append(f"{k.name!r}: db {k.db!r}")
        if hot and (not isinstance(k.freq, int) or not 0 <= k.freq <= 255):
            problems.append(f"{k.name!r}: freq {k.freq!r}")
        if not hot and getattr(k, "freq", None) is not None:
            problems.append(f"{k.name!r}: big key with freq")
    return problems


def check_task_record(c, label, resp, instance_id, status=None):
    c.check(f"{label}: id is a UUID", UUID.match(resp.id or ""), resp.id)
    c.check(f"{label}: instance_id", resp.instance_id == instance_id, resp.instance_id)
    c.check(f"{label}: status enum", resp.status in TASK_STATUSES, resp.status)
    if status is not None:
        c.check(f"{label}: status {status}", resp.status == status, resp.status)
    c.check(f"{label}: scan_type manual", resp.scan_type == "manual", resp.scan_type)
    c.check(f"{label}: created_at format", TIMESTAMP.match(resp.created_at or ""), resp.created_at)


def finished_task_checks(c, label, resp, hot):
    c.check(f"{label}: finished with success", resp.status == "success", resp.status)
    for field in ("created_at", "started_at", "finished_at"):
        value = getattr(resp, field)
        c.check(f"{label}: {field} format", TIMESTAMP.match(value or ""), value)
    c.check(
        f"{label}: created <= started <= finished",
        (resp.created_at or "") <= (resp.started_at or "") <= (resp.finished_at or ""),
        (resp.created_at, resp.started_at, resp.finished_at),
    )
    keys = resp.keys or []
    c.check(f"{label}: keys reported", len(keys) > 0)
    c.check(f"{label}: num equals len(keys)", resp.num == len(keys), (resp.num, len(keys)))
    problems = key_problems(keys, hot)
    c.check(f"{label}: key fields typed and consistent", not problems, problems[:5])
    if hot:
        freqs = [k.freq for k in keys]
        c.check(f"{label}: at most 100 hot keys", len(keys) <= 100, len(keys))
        c.check(f"{label}: sorted by freq", freqs == sorted(freqs, reverse=True), freqs[:10])
    else:
        per_type = {}
        for k in keys:
            per_type[k.type] = per_type.get(k.type, 0) + 1
        c.check(f"{label}: at most 100 big keys", len(keys) <= 100, len(keys))
        c.check(f"{label}: at most 20 per type", all(n <= 20 for n in per_type.values()), per_type)
        strings = [k.size for k in keys if k.type == "string"]
        c.check(f"{label}: strings over 10 KB", all(s > 10240 for s in strings), strings[:5])


def analysis_flow(c, client, inst, hot, timeout):
    """create -> show until done -> list (filters, paging) -> delete -> show refused."""
    kind = "hotkey" if hot else "bigkey"
    iid = inst.instance_id
    if hot:
        create = lambda: client.create_hotkey_scan_task(CreateHotkeyScanTaskRequest(instance_id=iid))
        show = lambda tid: client.show_hotkey_task_details(
            ShowHotkeyTaskDetailsRequest(instance_id=iid, hotkey_id=tid))
        delete = lambda tid: client.delete_hotkey_scan_task(
            DeleteHotkeyScanTaskRequest(instance_id=iid, hotkey_id=tid))
        list_ = lambda **kw: client.list_hot_key_scan_tasks(
            ListHotKeyScanTasksRequest(instance_id=iid, **kw))
        missing_code = "DCS.4941"
    else:
        create = lambda: client.create_bigkey_scan_task(CreateBigkeyScanTaskRequest(instance_id=iid))
        show = lambda tid: client.show_bigkey_scan_task_details(
            ShowBigkeyScanTaskDetailsRequest(instance_id=iid, bigkey_id=tid))
        delete = lambda tid: client.delete_bigkey_scan_task(
            DeleteBigkeyScanTaskRequest(instance_id=iid, bigkey_id=tid))
        list_ = lambda **kw: client.list_bigkey_scan_tasks(
            ListBigkeyScanTasksRequest(instance_id=iid, **kw))
        missing_code = "DCS.4942"

    created = c.run(f"create {kind} task on {inst.name}", create)
    if created is None:
        return
    check_task_record(c, f"create {kind}", created, iid)
    c.check(f"create {kind}: waiting or running", created.status in ("waiting", "running"),
            created.status)
    c.check(f"create {kind}: num 0", created.num in (0, None), created.num)
    c.check(f"create {kind}: no keys yet", not created.keys, created.keys)

    listed = c.run(f"list {kind} tasks", lambda: list_())
    if listed is not None:
        ids = [r.id for r in listed.records or []]
        c.check(f"list {kind}: contains the new task", created.id in ids, ids)
        c.check(f"list {kind}: instance_id", listed.instance_id == iid, listed.instance_id)
        c.check(f"list {kind}: count is the total", listed.count == len(ids), (listed.count, ids))
        for r in listed.records or []:
            if r.id == created.id:
                c.check(f"list {kind}: record fields", r.status in TASK_STATUSES
                        and r.scan_type == "manual" and TIMESTAMP.match(r.created_at or ""),
                        r)

    done = c.run(f"show {kind} task until finished",
                 lambda: wait_finished(lambda: show(created.id), timeout))
    if done is None:
        return
    check_task_record(c, f"show {kind}", done, iid)
    finished_task_checks(c, f"show {kind}", done, hot)

    ok = c.run(f"list {kind} tasks status=success",
               lambda: list_(status="success", offset=0, limit=1000))
    if ok is not None:
        c.check(f"list {kind} status=success: only successes",
                all(r.status == "success" for r in ok.records or []),
                [r.status for r in ok.records or []])
        c.check(f"list {kind} status=success: includes the finished task",
                done.id in [r.id for r in ok.records or []])
    none = c.run(f"list {kind} tasks status=waiting", lambda: list_(status="waiting"))
    if none is not None:
        c.check(f"list {kind} status=waiting: count 0 and no records",
                none.count == 0 and not none.records, (none.count, none.records))
    paged = c.run(f"list {kind} tasks limit=1", lambda: list_(offset=0, limit=1))
    if paged is not None:
        c.check(f"list {kind} limit=1: one record", len(paged.records or []) == 1,
                paged.records)
    c.expect_error(f"list {kind} limit=0 -> 400 DCS.4800",
                   lambda: list_(limit=0), 400, "DCS.4800")
    c.expect_error(f"list {kind} limit=1001 -> 400 DCS.4800",
                   lambda: list_(limit=1001), 400, "DCS.4800")

    if hot:
        def download():
            chunks = []
            resp = client.download_hot_key(DownloadHotKeyRequest(instance_id=iid, task_id=done.id))
            # The stream is the underlying `requests` response.
            resp.consume_download_stream(lambda stream: chunks.append(stream.content))
            return b"".join(chunks)
        data = c.run("download hot keys (DownloadHotKey)", download)
        if data is not None:
            first = (done.keys or [None])[0]
            quoted = None if first is None else '"' + first.name.replace('"', '""') + '"'
            c.check("download hot keys: CSV with the top key",
                    data.startswith(b"name,") and quoted is not None
                    and quoted.encode("utf-8") in data, data[:120])

    deleted = c.run(f"delete {kind} task", lambda: delete(done.id))
    if deleted is not None:
        c.check(f"delete {kind}: answers the deleted record",
                deleted.id == done.id and deleted.status == "success", deleted.id)
    c.expect_error(f"show deleted {kind} task -> 400 {missing_code}",
                   lambda: show(done.id), 400, missing_code)
    c.expect_error(f"show unknown {kind} task -> 400 {missing_code}",
                   lambda: show(str(uuid.uuid4())), 400, missing_code)


def autoscan_flow(c, client, inst, hot):
    kind = "hotkey" if hot else "bigkey"
    iid = inst.instance_id
    if hot:
        show = lambda: client.show_hotkey_autoscan_config(
            ShowHotkeyAutoscanConfigRequest(instance_id=iid))
        update = lambda body: client.update_hotkey_auto_scan_config(
            UpdateHotkeyAutoScanConfigRequest(instance_id=iid, body=body))
    else:
        show = lambda: client.show_bigkey_autoscan_config(
            ShowBigkeyAutoscanConfigRequest(instance_id=iid))
        update = lambda body: client.update_bigkey_autoscan_config(
            UpdateBigkeyAutoscanConfigRequest(instance_id=iid, body=body))

    before = c.run(f"show {kind} autoscan", show)
    if before is not None:
        c.check(f"show {kind} autoscan: fields",
                before.instance_id == iid and isinstance(before.enable_auto_scan, bool)
                and isinstance(before.schedule_at, list)
                and TIMESTAMP.match(before.updated_at or ""), before)
    body = AutoscanConfigRequest(enable_auto_scan=True, schedule_at=["21:00", "03:30"])
    updated = c.run(f"update {kind} autoscan", lambda: update(body))
    if updated is not None:
        c.check(f"update {kind} autoscan: echoes the config",
                updated.enable_auto_scan is True
                and sorted(updated.schedule_at or []) == ["03:30", "21:00"]
                and updated.instance_id == iid and TIMESTAMP.match(updated.updated_at or ""),
                updated)
    after = c.run(f"show {kind} autoscan after update", show)
    if after is not None:
        c.check(f"show {kind} autoscan: update persisted",
                after.enable_auto_scan is True
                and sorted(after.schedule_at or []) == ["03:30", "21:00"], after)
    c.expect_error(f"update {kind} autoscan with 25:00 -> 400 DCS.4800",
                   lambda: update(AutoscanConfigRequest(enable_auto_scan=True,
                                                        schedule_at=["25:00"])),
                   400, "DCS.4800")
    c.run(f"disable {kind} autoscan",
          lambda: update(AutoscanConfigRequest(enable_auto_scan=False, schedule_at=[])))


def offline_flow(c, client, inst, timeout):
    """Nodes, groups, backups and one offline key analysis of `inst`, through the SDK models."""
    iid = inst.instance_id
    nodes = c.run(f"ShowNodesInformation {inst.name}", lambda: client.show_nodes_information(
        ShowNodesInformationRequest(instance_id=iid)))
    groups = c.run(f"ListGroupReplicationInfo {inst.name}",
                   lambda: client.list_group_replication_info(
                       ListGroupReplicationInfoRequest(instance_id=iid)))
    backups = c.run(f"ListBackupRecords {inst.name}", lambda: client.list_backup_records(
        ListBackupRecordsRequest(instance_id=iid, limit=100)))
    if nodes is None or groups is None or backups is None:
        return
    c.check("ShowNodesInformation: fields",
            nodes.total == len(nodes.nodes or []) and nodes.nodes
            and all(UUID.match(n.node_id or "") and n.node_type in ("master", "slave")
                    and n.node_role == "redis-server" and isinstance(n.node_port, str)
                    and isinstance(n.group_name, str) and isinstance(n.group_id, str)
                    for n in nodes.nodes), nodes)
    listed_nodes = {n.node_id for n in nodes.nodes or []}
    replicas = [r for g in groups.group_list or [] for r in g.replication_list or []]
    c.check("ListGroupReplicationInfo: groups name the same nodes",
            groups.group_count == len(groups.group_list or [])
            and {r.node_id for r in replicas} == listed_nodes
            and all(r.replication_role in ("master", "slave") for r in replicas), groups)
    records = backups.backup_record_response or []
    c.check("ListBackupRecords: fields",
            backups.total_num == len(records) and records
            and all(UUID.match(b.backup_id or "") and b.status in ("succeed", "failed")
                    and TIMESTAMP.match(b.created_at or "") and isinstance(b.size, int)
                    and b.backup_format == "rdb" and b.backup_type in ("auto", "manual")
                    for b in records), backups)
    ok = [b for b in records if b.status == "succeed"]
    if not ok:
        c.check("a successful backup exists", False)
        return
    node = next((n for n in nodes.nodes if n.node_type == "slave"), nodes.nodes[0])
    body = CreateOfflineKeyAnalysisRequestBody(node_id=node.node_id, backup_id=ok[0].backup_id)
    created = c.run("CreateOfflineKeyAnalysis", lambda: client.create_offline_key_analysis(
        CreateOfflineKeyAnalysisRequest(instance_id=iid, body=body)))
    if created is None:
        return
    tid = created.task_id
    c.check("CreateOfflineKeyAnalysis: task_id", UUID.match(tid or ""), created)
    c.expect_error("second offline key analysis while one runs -> 400 DCS.4231",
                   lambda: client.create_offline_key_analysis(
                       CreateOfflineKeyAnalysisRequest(instance_id=iid, body=body)),
                   400, "DCS.4231")
    c.expect_error("offline key analysis of an unknown node -> 400 DCS.4800",
                   lambda: client.create_offline_key_analysis(CreateOfflineKeyAnalysisRequest(
                       instance_id=iid,
                       body=CreateOfflineKeyAnalysisRequestBody(node_id=str(uuid.uuid4())))),
                   400, "DCS.4800")

    def record():
        page = client.list_offline_key_analysis_task(
            ListOfflineKeyAnalysisTaskRequest(instance_id=iid, offset=0, limit=100))
        return page, next((r for r in page.records or [] if r.id == tid), None)

    deadline = time.monotonic() + timeout
    page, rec = record()
    while rec is not None and rec.status in ("waiting", "running") and time.monotonic() < deadline:
        time.sleep(0.2)
        page, rec = record()
    c.check("ListOfflineKeyAnalysisTask: the task succeeds",
            rec is not None and rec.status == "success" and page.total == len(page.records)
            and page.instance_id == iid and TIMESTAMP.match(rec.created_at or "")
            and TIMESTAMP.match(rec.finished_at or ""), page)
    shown = c.run("ShowOfflineKeyAnalysisTask", lambda: client.show_offline_key_analysis_task(
        ShowOfflineKeyAnalysisTaskRequest(instance_id=iid, task_id=tid)))
    if shown is not None:
        prefixes = shown.largest_key_prefixes or []
        keys = shown.largest_keys or []
        c.check("ShowOfflineKeyAnalysisTask: inputs echoed",
                shown.id == tid and shown.node_id == node.node_id
                and shown.backup_id == ok[0].backup_id and shown.analysis_type == "old_backup"
                and shown.node_type == node.node_type and shown.group_name == node.group_name,
                shown)
        c.check("ShowOfflineKeyAnalysisTask: result shapes",
                prefixes and keys
                and all(isinstance(p.key_prefix, str) and p.type in KEY_TYPES
                        and isinstance(p.bytes, int) and isinstance(p.num, int) for p in prefixes)
                and all(isinstance(k.key, str) and k.type in KEY_TYPES
                        and isinstance(k.bytes, int) and isinstance(k.num_of_elem, int)
                        for k in keys)
                and {t.type for t in shown.type_num or []} <= KEY_TYPES
                and isinstance(shown.total_num, int) and isinstance(shown.total_bytes, int),
                shown)
        c.check("ShowOfflineKeyAnalysisTask: totals add up",
                sum(t.num for t in shown.type_num) == shown.total_num
                and sum(t.bytes for t in shown.type_bytes) == shown.total_bytes
                and sum(p.num for p in prefixes) <= shown.total_num,
                (shown.total_num, shown.type_num))
    deleted = c.run("DeleteOfflineKeyAnalysisTask", lambda: client.delete_offline_key_analysis_task(
        DeleteOfflineKeyAnalysisTaskRequest(instance_id=iid, task_id=tid)))
    if deleted is not None:
        c.check("DeleteOfflineKeyAnalysisTask: task_id", deleted.task_id == tid, deleted)
        _, rec = record()
        c.check("deleted offline task leaves the list", rec is None, rec)
    c.expect_error("show deleted offline task -> 400 DCS.4232",
                   lambda: client.show_offline_key_analysis_task(
                       ShowOfflineKeyAnalysisTaskRequest(instance_id=iid, task_id=tid)),
                   400, "DCS.4232")


def run_checks(c, port, timeout):
    client = make_client(port)

    listed = c.run("ListInstances", lambda: client.list_instances(
        ListInstancesRequest(offset=0, limit=1000)))
    if listed is None or not listed.instances:
        c.check("ListInstances returns instances", False)
        return
    instances = listed.instances
    c.check("ListInstances: instance_num is the total",
            listed.instance_num == len(instances), (listed.instance_num, len(instances)))
    for i in instances:
        ok = (UUID.match(i.instance_id or "") and isinstance(i.name, str) and i.engine == "Redis"
              and isinstance(i.engine_version, str) and isinstance(i.capacity, int)
              and isinstance(i.port, int) and isinstance(i.max_memory, int)
              and isinstance(i.used_memory, int) and isinstance(i.ip, str)
              and isinstance(i.charging_mode, int) and TIMESTAMP.match(i.created_at or "")
              and isinstance(i.no_password_access, str) and isinstance(i.enterprise_project_id, str)
              and all(isinstance(t.key, str) and isinstance(t.value, str) for t in i.tags or []))
        c.check(f"ListInstances: fields of {i.name}", ok, i)
    page = c.run("ListInstances limit=2", lambda: client.list_instances(
        ListInstancesRequest(offset=1, limit=2)))
    if page is not None:
        c.check("ListInstances limit=2: page of 2, total unchanged",
                len(page.instances or []) == min(2, len(instances) - 1)
                and page.instance_num == len(instances)
                and [x.instance_id for x in page.instances] ==
                [x.instance_id for x in instances[1:3]],
                (page.instance_num, [x.name for x in page.instances or []]))
    first = instances[0]
    named = c.run("ListInstances name_equal", lambda: client.list_instances(
        ListInstancesRequest(name=first.name, name_equal="true")))
    if named is not None:
        c.check("ListInstances name_equal: exactly the named instance",
                [x.instance_id for x in named.instances or []] == [first.instance_id],
                [x.name for x in named.instances or []])
    c.expect_error("ListInstances limit=0 -> 400 DCS.4800",
                   lambda: client.list_instances(ListInstancesRequest(limit=0)), 400, "DCS.4800")

    for i in instances:
        shown = c.run(f"ShowInstance {i.name}", lambda i=i: client.show_instance(
            ShowInstanceRequest(instance_id=i.instance_id)))
        if shown is not None:
            c.check(f"ShowInstance {i.name}: fields",
                    shown.instance_id == i.instance_id and shown.name == i.name
                    and shown.cache_mode in ("single", "ha", "cluster")
                    and isinstance(shown.sharding_count, int)
                    and isinstance(shown.replica_count, int)
                    and isinstance(shown.db_number, int)
                    and shown.engine_version == i.engine_version
                    and isinstance(shown.available_zones, list), shown)

    unsupported = [i for i in instances if i.engine_version.startswith("3.")]
    supported = [i for i in instances if not i.engine_version.startswith("3.")
                 and i.status == "RUNNING"]
    if not supported:
        c.check("an instance supporting hot key analysis exists", False)
        return
    # The smallest single-node instance finishes fastest and has no injected task failures in
    # the default preset; the cluster is the slowest, so a second create hits the running one.
    small = next((i for i in supported if "single" in i.spec_code), supported[0])
    big = next((i for i in supported if "cluster" in i.spec_code), supported[-1])

    analysis_flow(c, client, small, hot=True, timeout=timeout)
    analysis_flow(c, client, small, hot=False, timeout=timeout)
    backed_up = next((i for i in supported if "single" not in i.spec_code), supported[0])
    offline_flow(c, client, backed_up, timeout=timeout)
    autoscan_flow(c, client, small, hot=True)
    autoscan_flow(c, client, small, hot=False)

    first_big = c.run(f"create bigkey task on {big.name}", lambda: client.create_bigkey_scan_task(
        CreateBigkeyScanTaskRequest(instance_id=big.instance_id)))
    if first_big is not None:
        c.expect_error("second bigkey task while one runs -> 400 DCS.4918",
                       lambda: client.create_bigkey_scan_task(
                           CreateBigkeyScanTaskRequest(instance_id=big.instance_id)),
                       400, "DCS.4918")

    if unsupported:
        u = unsupported[0]
        c.expect_error(f"hotkey task on Redis {u.engine_version} ({u.name}) -> 400 DCS.4922",
                       lambda: client.create_hotkey_scan_task(
                           CreateHotkeyScanTaskRequest(instance_id=u.instance_id)),
                       400, "DCS.4922")
    else:
        c.check("an instance refusing hot key analysis exists", False)

    ghost = str(uuid.uuid4())
    c.expect_error("ShowInstance of an unknown instance -> 404 DCS.3022",
                   lambda: client.show_instance(ShowInstanceRequest(instance_id=ghost)),
                   404, "DCS.3022")
    c.expect_error("list hotkey tasks of an unknown instance -> 404 DCS.3022",
                   lambda: client.list_hot_key_scan_tasks(
                       ListHotKeyScanTasksRequest(instance_id=ghost)), 404, "DCS.3022")
    c.expect_error("create bigkey task on an unknown instance -> 404 DCS.3022",
                   lambda: client.create_bigkey_scan_task(
                       CreateBigkeyScanTaskRequest(instance_id=ghost)), 404, "DCS.3022")

    wrong = make_client(port, secret_key="not-the-secret-key")
    c.expect_error("wrong secret key -> 401 APIG.0301",
                   lambda: wrong.list_instances(ListInstancesRequest()), 401, "APIG.0301")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("binary", nargs="?", help="path to the dcs-key-exporter binary")
    parser.add_argument("--sim-cmd", help="command starting a simulator instead; {port} is "
                        "replaced by the port to listen on (127.0.0.1)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds to wait for one analysis task to finish")
    parser.add_argument("--start-timeout", type=float, default=30.0,
                        help="seconds to wait for the simulator's port")
    args = parser.parse_args()
    if not args.binary and not args.sim_cmd:
        parser.error("give the binary path or --sim-cmd")
    # The SDK logs every failed call at ERROR; the checks report them instead.
    logging.getLogger("HuaweiCloud-SDK").setLevel(logging.CRITICAL)

    started = start_simulator(args)
    if started is None:
        print("0 passed, 1 failed")
        return 2
    proc, port = started
    c = Checks()
    try:
        run_checks(c, port, args.timeout)
    except Exception as e:  # noqa: BLE001 - report, then still stop the simulator
        c.check("conformance run completed", False, f"{type(e).__name__}: {e}")
    finally:
        stop(proc)
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed else 0


if __name__ == "__main__":
    sys.exit(main())
