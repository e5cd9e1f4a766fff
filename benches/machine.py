"""The state of the benchmark machine: load, compilers running, waiting for quiet.

Shared by the benchmark scripts: timings on a shared machine mean something only when it is
quiet, and every result says what load it was measured at.
"""

from __future__ import annotations

import os
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
