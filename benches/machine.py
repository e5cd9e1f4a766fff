"""What the benchmark scripts share: the state of the machine (load, compilers running,
waiting for quiet) and the load tool they drive (wrk).

Timings on a shared machine mean something only when it is quiet, and every result says what
load it was measured at.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Callable


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def compilers_running() -> int:
    n = 0
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if (p / "comm").read_text().strip() in ("rustc", "cc1", "cc1plus", "ld", "cargo"):
                    n += 1
            except OSError:
                pass
    return n


def wait_quiet(max_load: float, timeout: float, need_load: bool = True,
               log: Callable[[str], None] = print) -> dict:
    """Waits until no compiler runs (and the 1-minute load is below max_load); returns the state."""
    deadline = time.monotonic() + timeout
    while True:
        state = {"load1": load1(), "compilers": compilers_running()}
        quiet = state["compilers"] == 0 and (not need_load or state["load1"] < max_load)
        if quiet or time.monotonic() >= deadline:
            state["quiet"] = quiet
            return state
        log(f"machine busy (load {state['load1']:.2f}, {state['compilers']} compiler processes); waiting")
        time.sleep(min(30.0, max(1.0, deadline - time.monotonic())))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    # utime and stime are fields 14 and 15 of stat(5); fields[0] is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, connections: int, threads: int, seconds: int, gz: bool, latency: bool) -> dict:
    """Runs wrk on `url`: requests per second, transfer, errors and (with `latency`) the
    latency percentiles in ms (`p50_ms`, `p99_ms`, ...)."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s"]
    if latency:
        cmd.append("--latency")
    if gz:
        cmd += ["-H", "Accept-Encoding: gzip"]
    cmd.append(url)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    res = {"cmd": " ".join(cmd), "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    if m:
        res["transfer"] = m.group(1) + m.group(2)
    errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(errs.group(1)) if errs else 0
    sock = re.search(r"Socket errors: (.*)", out)
    res["socket_errors"] = sock.group(1) if sock else ""
    for pct, val, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        ms = float(val) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
        res[f"p{pct}_ms"] = round(ms, 3)
    return res
