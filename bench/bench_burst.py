"""A storm of DHCP commits through the real hook, the real `leasedns apply` and tinydns-data.

2,000 commits fired as fast as possible through hooks/dhcpd-event, once from
one writer in a tight loop and once from 4 parallel writers (dhcpd on both
failover peers, and more than one dhcpd thread of work). LEASEDNS_BIN is a
wrapper that counts `apply` processes and then runs the real leasedns;
tinydns.data_program is a wrapper that counts compiles and then execs the real
tinydns-data. After the last hook returns, data.cdb is polled until every
name is in it (then checked with tinydns-get for a sample and the last one).

Targets: all visible <= 5 s after the last hook returned; <= 20 tinydns-data
runs; <= 100 apply processes (the hook must not start one Python per event).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Row,
    become_subreaper,
    exit_code,
    find_program,
    hook_path,
    leasedns_path,
    machine_note,
    print_table,
    reap,
    spawn_wait,
)

NAME = "burst"
DOMAIN = "lab.example"
VISIBLE_TARGET = 5.0
COMPILE_TARGET = 20
APPLY_TARGET = 100
TIMEOUT = 60.0


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def setup(tmp: Path, tinydns_data: str) -> tuple[dict[str, str], Path, Path]:
    """Config, wrappers and environment for one scenario; returns (env, root, tmp)."""
    state, root = tmp / "state", tmp / "root"
    (state / "spool").mkdir(parents=True)
    root.mkdir()
    compiler = _script(
        tmp / "count-tinydns-data",
        f'#!/bin/sh\necho run >>{tmp}/compiles\nexec {tinydns_data} "$@"\n',
    )
    applier = _script(
        tmp / "count-leasedns",
        f'#!/bin/sh\necho start >>{tmp}/applies\n{leasedns_path()} "$@"\n'
        f"rc=$?\necho end >>{tmp}/applies\nexit $rc\n",
    )
    # The zone itself (SOA, NS) is static data; without it tinydns answers nothing.
    static = tmp / "static.data"
    static.write_text(f".{DOMAIN}:127.0.0.1:a\n")
    cfg = tmp / "leasedns.yaml"
    cfg.write_text(
        f"peer: peer-a\nstate_dir: {state}\ndomain: {DOMAIN}\n"
        f"tinydns:\n  root: {root}\n  data_program: {compiler}\n"
        f"  static: [{static}]\n"
        "build:\n  coalesce_secs: 0.2\n"
    )
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LEASEDNS_SPOOL": str(state / "spool"),
        "LEASEDNS_CONFIG": str(cfg),
        "LEASEDNS_BIN": str(applier),
    }
    return env, root, tmp


def _lines(path: Path, word: str) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if line == word)
    except FileNotFoundError:
        return 0


def _published(root: Path) -> set[str] | None:
    """Names in `data`, provided data.cdb was compiled from it (else None)."""
    try:
        data = root / "data"
        before = data.stat().st_mtime_ns
        text = data.read_text()
        cdb = (root / "data.cdb").stat().st_mtime_ns
    except FileNotFoundError:
        return None
    if cdb < before:
        return None
    return {line[1:].split(":", 1)[0] for line in text.splitlines() if line[:1] in "=+"}


def scenario(label: str, n: int, writers: int, tinydns_data: str) -> list[Row]:
    hook = str(hook_path())
    with tempfile.TemporaryDirectory(prefix="leasedns-bench-burst-") as t:
        env, root, tmp = setup(Path(t), tinydns_data)
        names = [f"burst-{i:05d}" for i in range(n)]

        def ip(i: int) -> str:
            return f"10.{1 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"

        failures = [0] * writers
        ends = [0.0] * writers

        def write(w: int) -> None:
            for i in range(w, n, writers):
                mac = f"2:0:{(i >> 16) & 255:x}:{(i >> 8) & 255:x}:{i & 255:x}:{w:x}"
                _, rc = spawn_wait([hook, "commit", ip(i), mac, names[i], "", "3600"], env)
                failures[w] += rc != 0
            ends[w] = time.perf_counter()

        t0 = time.perf_counter()
        if writers == 1:
            write(0)
        else:
            threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
        t_last = max(ends)
        burst_secs = t_last - t0

        want = {f"{x}.{DOMAIN}" for x in names}
        visible_at = None
        while time.perf_counter() - t_last < TIMEOUT:
            reap()
            got = _published(root)
            if got is not None and want <= got:
                visible_at = time.perf_counter()
                break
            time.sleep(0.01)
        visible = (visible_at - t_last) if visible_at else float("inf")

        # Ask the compiled data.cdb itself, for a sample and the last name.
        tinydns_get = find_program("tinydns-get")
        checked = missing = 0
        if tinydns_get and visible_at:
            for i in [*range(0, n, max(1, n // 20)), n - 1]:
                out = subprocess.run(
                    [tinydns_get, "a", f"{names[i]}.{DOMAIN}"],
                    cwd=root,
                    capture_output=True,
                    text=True,
                    check=False,
                ).stdout
                checked += 1
                missing += ip(i) not in out

        # Let the applies that are still running finish before counting them.
        deadline = time.perf_counter() + TIMEOUT
        while (
            _lines(tmp / "applies", "start") != _lines(tmp / "applies", "end")
            and time.perf_counter() < deadline
        ):
            reap()
            time.sleep(0.05)
        reap()
        applies = _lines(tmp / "applies", "start")
        compiles = _lines(tmp / "compiles", "run")
        leftover = sum(1 for e in os.scandir(env["LEASEDNS_SPOOL"]) if e.name.startswith("ev-"))

    tag = f"{label}: "
    rate = n / burst_secs
    rows = [
        Row(NAME, f"{tag}hook rate ({n} events in {burst_secs:.2f} s)", rate, "/s", summary=True),
        Row(
            NAME,
            f"{tag}last hook return -> all {n} names in data.cdb",
            visible,
            "s",
            target=f"<= {VISIBLE_TARGET:g} s",
            ok=visible <= VISIBLE_TARGET,
        ),
        Row(
            NAME,
            f"{tag}tinydns-data runs",
            compiles,
            "n",
            f"{n} events",
            compiles / n,
            f"<= {COMPILE_TARGET}",
            compiles <= COMPILE_TARGET,
        ),
        Row(
            NAME,
            f"{tag}apply (Python) processes started",
            applies,
            "n",
            f"{n} events",
            applies / n,
            f"<= {APPLY_TARGET}",
            applies <= APPLY_TARGET,
        ),
    ]
    bad = sum(failures)
    if bad or missing or leftover or not visible_at:
        rows.append(
            Row(
                NAME,
                f"{tag}errors: hook failures {bad}, tinydns-get misses {missing}/"
                f"{checked}, events left in spool {leftover}",
                bad + missing + leftover,
                "n",
                target="0",
                ok=False,
            )
        )
    else:
        rows.append(
            Row(NAME, f"{tag}tinydns-get answers checked", checked, "n", target="all", ok=True)
        )
    return rows


def collect(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--events", type=int, default=2000)
    ap.add_argument("--writers", type=int, default=4, help="parallel writers (default 4)")
    args = ap.parse_args(argv)
    tinydns_data = find_program("tinydns-data")
    if not tinydns_data:
        return [Row(NAME, "tinydns-data not installed (apt install tinydns)", 0, "n", ok=False)]
    become_subreaper()  # the hook's detached applies are reaped here
    rows = scenario("1 writer", args.events, 1, tinydns_data)
    rows += scenario(f"{args.writers} writers", args.events, args.writers, tinydns_data)
    return rows


def main(argv: list[str] | None = None) -> int:
    rows = collect(argv)
    print_table(f"burst of commits through hook + apply + tinydns-data ({machine_note()})", rows)
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
