"""Two peers under load: 4 hook writers each, with apply, sync and reconcile running all along.

Each of two leasedns peers (own state, tinydns root and config; each pushes its journal to
the other with real rsync and wakes it with `notify`) gets 4 concurrent writers firing N
commits each through the real hook, which starts `leasedns apply --from-hook` itself. While
they write, each peer also runs `leasedns apply`, `leasedns sync` and `leasedns reconcile
--check` in loops. Then one final sync each way and an apply on both.

Checked: no event lost or duplicated (every written event is held exactly once per
(peer, ip) in the union of the journals, and no journal line was written twice), every
name in both peers' `data`, both `data` files byte-identical, and the number of
tinydns-data runs (a counting wrapper) far below the number of events.

    python bench/bench_load.py [-n 5000] [--writers 4]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Row,
    exit_code,
    find_program,
    hook_path,
    leasedns_path,
    machine_note,
    print_table,
)

NAME = "load"
DOMAIN = "lab.example"
PEERS = ("peer-a", "peer-b")
REBUILD_RATIO_TARGET = 0.05  # tinydns-data runs per event, at most
ZONES = f".{DOMAIN}:127.0.0.1:ns.{DOMAIN}:300\n"


@dataclass
class Peer:
    name: str
    base: Path
    cfg: Path
    env: dict[str, str]

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def root(self) -> Path:
        return self.base / "root"

    def lines(self, log: str, word: str) -> int:
        try:
            return sum(1 for x in (self.base / log).read_text().splitlines() if x == word)
        except FileNotFoundError:
            return 0


@dataclass
class LoadResult:
    """What one load run saw; `problems` is empty when nothing was lost or differs."""

    events: int = 0
    write_secs: float = 0.0
    total_secs: float = 0.0
    hook_failures: int = 0
    rebuilds: dict[str, int] = field(default_factory=dict)
    hook_applies: dict[str, int] = field(default_factory=dict)
    loops: Counter[str] = field(default_factory=Counter)  # "peer-a apply rc=0" -> runs
    lost: int = 0
    duplicated: int = 0  # distinct events beyond one per (peer, ip)
    rewritten: int = 0  # journal lines held twice (an event journaled more than once)
    problems: list[str] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # the last output of a failed loop run

    @property
    def rate(self) -> float:
        return self.events / self.write_secs if self.write_secs else 0.0


def _script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def setup(tmp: Path, tinydns_data: str) -> dict[str, Peer]:
    leasedns = str(leasedns_path())
    peers = {}
    for me in PEERS:
        base = tmp / me
        (base / "state" / "spool").mkdir(parents=True)
        # As after the first apply (a sync before it fails: see tests/test_faults.py).
        (base / "state" / "journal" / me).mkdir(parents=True)
        (base / "root").mkdir()
        _script(
            base / "count-tinydns-data",
            f'#!/bin/sh\necho run >>{base}/compiles\nexec {tinydns_data} "$@"\n',
        )
        _script(
            base / "count-leasedns",
            f'#!/bin/sh\necho start >>{base}/applies\n{leasedns} "$@"\nrc=$?\n'
            f"echo end >>{base}/applies\nexit $rc\n",
        )
        (base / "static.data").write_text(ZONES)
        (base / "dhcpd.leases").write_text(
            "lease 10.99.0.1 {\n  starts 4 2030/01/02 03:04:05;\n  ends 4 2030/01/02 04:04:05;\n"
            "  binding state active;\n  hardware ethernet 02:99:00:00:00:01;\n}\n"
        )
    for me, other in zip(PEERS, reversed(PEERS), strict=True):
        base, obase = tmp / me, tmp / other
        cfg = base / "leasedns.yaml"
        cfg.write_text(
            f"peer: {me}\nstate_dir: {base}/state\ndomain: {DOMAIN}\n"
            f"tinydns:\n  root: {base}/root\n  data_program: {base}/count-tinydns-data\n"
            f"  static: [{base}/static.data]\n"
            f"dhcpd:\n  leases: [{base}/dhcpd.leases]\n"
            "build:\n  coalesce_secs: 0.2\n"
            f"sync:\n  timeout_secs: 60\n  partners:\n  - name: {other}\n"
            f"    rsync_target: {obase}/state/journal\n"
            f"    notify: [{base}/count-leasedns, -q, -c, {obase}/leasedns.yaml, apply]\n"
        )
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LEASEDNS_SPOOL": str(base / "state/spool"),
            "LEASEDNS_CONFIG": str(cfg),
            "LEASEDNS_BIN": str(base / "count-leasedns"),
        }
        peers[me] = Peer(me, base, cfg, env)
    return peers


def ip_of(p: int, w: int, i: int) -> str:
    """Distinct per (peer, writer, event): 10.<peer+1><writer>.<i/256>.<i%256>."""
    return f"10.{(p + 1) * 10 + w}.{i >> 8}.{i & 255}"


def name_of(p: int, w: int, i: int) -> str:
    return f"p{p}w{w}e{i}"


def expected(n: int, writers: int) -> dict[tuple[str, str], str]:
    """(peer, ip) -> name of every event the writers fire."""
    return {
        (PEERS[p], ip_of(p, w, i)): name_of(p, w, i)
        for p in range(len(PEERS))
        for w in range(writers)
        for i in range(n)
    }


def run_load(tmp: Path, n: int, writers: int = 4, tinydns_data: str | None = None) -> LoadResult:
    """The whole scenario in `tmp`; raises nothing for lost events, reports them instead."""
    tinydns_data = tinydns_data or find_program("tinydns-data") or "tinydns-data"
    peers = setup(tmp, tinydns_data)
    leasedns = str(leasedns_path())
    hook = str(hook_path())
    res = LoadResult(events=len(PEERS) * writers * n)
    lock = threading.Lock()
    failures: list[str] = []

    def write(p: int, w: int) -> None:
        peer = peers[PEERS[p]]
        for i in range(n):
            mac = f"2:{p:x}:{w:x}:0:{i >> 8:x}:{i & 255:x}"
            proc = subprocess.run(
                [hook, "commit", ip_of(p, w, i), mac, name_of(p, w, i), "", "86400"],
                env=peer.env,
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode:
                with lock:
                    failures.append(f"{peer.name} {name_of(p, w, i)}: {proc.stderr.strip()}")

    stop = threading.Event()

    def loop(peer: Peer, what: str, argv: list[str], pause: float) -> None:
        while not stop.is_set():
            proc = subprocess.run(
                [leasedns, "-q", "-c", str(peer.cfg), *argv],
                capture_output=True,
                text=True,
                check=False,
            )
            with lock:
                res.loops[f"{peer.name} {what} exit {proc.returncode}"] += 1
                if proc.returncode and what != "reconcile --check":
                    res.errors[f"{peer.name} {what}"] = (proc.stdout + proc.stderr).strip()[-400:]
                if "Traceback" in proc.stderr:
                    failures.append(f"{peer.name} {what}: {proc.stderr.strip()[-300:]}")
            stop.wait(pause)

    t0 = time.perf_counter()
    loops = [
        threading.Thread(target=loop, args=(peer, what, argv, pause))
        for peer in peers.values()
        for what, argv, pause in (
            ("apply", ["apply"], 0.1),
            ("sync", ["sync"], 0.2),
            ("reconcile --check", ["reconcile", "--check"], 0.3),
        )
    ]
    writers_t = [
        threading.Thread(target=write, args=(p, w))
        for p in range(len(PEERS))
        for w in range(writers)
    ]
    for th in loops + writers_t:
        th.start()
    for th in writers_t:
        th.join()
    res.write_secs = time.perf_counter() - t0
    stop.set()
    for th in loops:
        th.join()
    # The applies the hooks started (and the partners' notifications) finish.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and any(
        p.lines("applies", "start") != p.lines("applies", "end") for p in peers.values()
    ):
        time.sleep(0.05)
    # The link is up at the end: one sync each way, then apply on both.
    for peer in peers.values():
        out = subprocess.run(
            [leasedns, "-c", str(peer.cfg), "sync"], capture_output=True, text=True, check=False
        )
        if out.returncode:
            failures.append(f"final sync from {peer.name}: {out.stdout}{out.stderr}")
    for peer in peers.values():
        out = subprocess.run(
            [leasedns, "-q", "-c", str(peer.cfg), "apply"],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode:
            failures.append(f"final apply on {peer.name}: {out.stderr}")
    res.total_secs = time.perf_counter() - t0
    res.hook_failures = len([f for f in failures if f.startswith(PEERS)])
    res.problems.extend(failures[:20])
    check(peers, n, writers, res)
    for peer in peers.values():
        res.rebuilds[peer.name] = peer.lines("compiles", "run")
        res.hook_applies[peer.name] = peer.lines("applies", "start")
    return res


def check(peers: dict[str, Peer], n: int, writers: int, res: LoadResult) -> None:
    """Lost, duplicated, differing: compare both peers' journals and data with what was fired."""
    from leasedns import journal

    want = expected(n, writers)
    datas = {}
    for peer in peers.values():
        left = [e for e in os.listdir(peer.state / "spool") if e.startswith("ev-")]
        if left:
            res.problems.append(f"{peer.name}: {len(left)} events left in the spool")
        held = journal.read_all(peer.state / "journal")
        got: dict[tuple[str, str], set[str]] = {}
        for pj in held.values():
            res.problems.extend(pj.problems[:5])
            res.rewritten += len(pj.events) - len(set(pj.events))
            for e in set(pj.events):
                got.setdefault((e.peer, e.ip), set()).add(e.client_name)
        lost = [k for k, name in want.items() if name not in got.get(k, set())]
        dup = sum(len(v) - 1 for v in got.values())
        extra = [k for k in got if k not in want]
        res.lost = max(res.lost, len(lost))
        res.duplicated = max(res.duplicated, dup)
        if lost or dup or extra:
            res.problems.append(
                f"{peer.name} journals: {len(lost)} lost (e.g. {lost[:3]}), "
                f"{dup} duplicated, {len(extra)} unexpected"
            )
        data = (peer.root / "data").read_bytes()
        datas[peer.name] = data
        published = {
            line[1:].split(":")[0] for line in data.decode().splitlines() if line[:1] in "=+"
        }
        missing = [name for name in want.values() if f"{name}.{DOMAIN}" not in published]
        if missing:
            res.problems.append(
                f"{peer.name} data: {len(missing)} names missing, e.g. {missing[:3]}"
            )
        cdb, dat = peer.root / "data.cdb", peer.root / "data"
        if not cdb.exists() or cdb.stat().st_mtime_ns < dat.stat().st_mtime_ns:
            res.problems.append(f"{peer.name}: data.cdb is older than data")
    if len(set(datas.values())) != 1:
        res.problems.append("the peers' data files differ")
    for owner in PEERS:  # each journal replicated byte for byte
        copies = [
            b"".join(p.read_bytes() for p in journal.segments(peer.state / "journal" / owner))
            for peer in peers.values()
        ]
        if copies[0] != copies[1]:
            res.problems.append(f"journal {owner} differs between the peers")


def rows(res: LoadResult, n: int, writers: int) -> list[Row]:
    tag = f"2 peers x {writers} writers x {n}"
    rebuilds = max(res.rebuilds.values()) if res.rebuilds else 0
    loops = sum(res.loops.values())
    out = [
        Row(
            NAME,
            f"{tag}: events/s through the hooks while apply/sync/reconcile run "
            f"({res.events} events in {res.write_secs:.1f} s)",
            res.rate,
            "/s",
            summary=True,
        ),
        Row(NAME, f"{tag}: wall time to both peers converged", res.total_secs, "s", summary=True),
        Row(
            NAME,
            f"{tag}: tinydns-data runs per peer ("
            + ", ".join(f"{k} {v}" for k, v in res.rebuilds.items())
            + ")",
            rebuilds,
            "n",
            f"{res.events} events",
            rebuilds / res.events if res.events else None,
            f"<= {REBUILD_RATIO_TARGET:g}x",
            rebuilds <= REBUILD_RATIO_TARGET * res.events,
        ),
        Row(
            NAME,
            f"{tag}: apply processes started by the hooks and notify ("
            + ", ".join(f"{k} {v}" for k, v in res.hook_applies.items())
            + ")",
            sum(res.hook_applies.values()),
            "n",
            f"{res.events} events",
            sum(res.hook_applies.values()) / res.events if res.events else None,
        ),
        Row(
            NAME,
            f"{tag}: concurrent apply/sync/reconcile runs ({loops}: "
            + ", ".join(f"{k} x{v}" for k, v in sorted(res.loops.items()))
            + ")",
            loops,
            "n",
        ),
        Row(
            NAME,
            f"{tag}: events lost / duplicated / journaled twice",
            res.lost + res.duplicated + res.rewritten,
            "n",
            target="0",
            ok=res.lost == res.duplicated == res.rewritten == 0 and not res.problems,
        ),
    ]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--events", type=int, default=5000, help="events per writer")
    ap.add_argument("--writers", type=int, default=4, help="writers per peer (default 4)")
    args = ap.parse_args(argv)
    tinydns_data = find_program("tinydns-data")
    rsync = find_program("rsync")
    if not tinydns_data or not rsync:
        rows_ = [Row(NAME, "tinydns-data or rsync not installed", 0, "n", ok=False)]
    else:
        with tempfile.TemporaryDirectory(prefix="leasedns-bench-load-") as t:
            res = run_load(Path(t), args.events, args.writers, tinydns_data)
        rows_ = rows(res, args.events, args.writers)
        print(
            f"lost={res.lost} duplicated={res.duplicated} journaled-twice={res.rewritten} "
            f"hook failures={res.hook_failures}"
        )
        for p in res.problems:
            print(f"PROBLEM: {p}")
        for k, v in res.errors.items():
            print(f"failed during the load (not a loss): {k}: {v}")
    print_table(f"two peers under load ({machine_note()})", rows_)
    return exit_code(rows_)


if __name__ == "__main__":
    sys.exit(main())
