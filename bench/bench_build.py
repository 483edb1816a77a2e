"""A full build at scale: 100,000 live bindings from two peers' journals, against tinydns-data.

Generates journal/peer-a and journal/peer-b (about two events per binding:
first commits, renewals, some from the other failover peer, and earlier
holders of the same addresses that released), then measures in one run:

  (i)  leasedns read journals + merge + render (the library, in a child
       process so its peak RSS can be read), stage by stage; and the
       end-to-end `leasedns apply` (first build, then one new event);
  (ii) tinydns-data compiling the data file leasedns rendered (the reference).

Target: (i) <= 5 x (ii).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    JOURNAL_KEY,
    Row,
    exit_code,
    find_program,
    fmt,
    hook_path,
    leasedns_path,
    machine_note,
    print_table,
    spawn_wait,
)

NAME = "build"
TARGET = 5.0
PEERS = ("peer-a", "peer-b")
DOMAIN = "lab.example"

FIRST = (
    "anna",
    "ben",
    "carla",
    "dmitri",
    "eva",
    "farid",
    "grace",
    "hugo",
    "ines",
    "jonas",
    "kim",
    "lars",
    "maria",
    "nils",
    "olga",
    "pedro",
    "quinn",
    "rosa",
    "sven",
    "tara",
)
ALNUM = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


def client_name(rng: random.Random, i: int) -> str:
    """A realistic, mostly unique DHCP client name (some need sanitising)."""
    k = rng.random()
    if k < 0.30:
        return "DESKTOP-" + "".join(rng.choice(ALNUM) for _ in range(7))
    if k < 0.45:
        return f"{rng.choice(FIRST).capitalize()}s-iPhone-{i}"
    if k < 0.60:
        return f"android-{rng.getrandbits(64):016x}"
    if k < 0.70:
        return f"{rng.choice(FIRST).capitalize()}s MacBook Pro {i}"  # spaces: sanitised
    if k < 0.80:
        return f"LAPTOP-{i:06d}"
    if k < 0.90:
        return f"printer_{rng.choice(('hp', 'brother', 'canon'))}_{i}"  # underscores: sanitised
    return f"ws{i:06d}.{DOMAIN}"  # already qualified: the domain is stripped


def generate(journal_dir: Path, live: int, now: int, seed: int = 1) -> dict[str, int]:
    """Write both peers' journals; returns counts."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from leasedns.journal.lines import to_line
    from leasedns.model import Event, Kind

    rng = random.Random(seed)
    per_peer: dict[str, list[Event]] = {p: [] for p in PEERS}
    us = 1_000_000
    counts = {"live": live, "events": 0, "renewals": 0, "released_before": 0, "released_only": 0}

    def add(ev: Event) -> None:
        per_peer[ev.peer].append(ev)
        counts["events"] += 1

    base = 0x64400001  # 100.64.0.1 (100.64.0.0/10: room for 4M addresses)
    for i in range(live):
        n = base + i
        ip = f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
        mac = (
            f"02:{(i >> 24) & 255:02x}:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}:01"
        )
        peer = PEERS[i & 1]
        start = (now - rng.randint(60, 900)) * us + rng.randrange(us)
        if rng.random() < 0.15:  # an earlier holder of this address, released before
            old_mac = mac[:-2] + "02"
            t = start - rng.randint(600, 3000) * us
            add(Event(Kind.COMMIT, t, ip, old_mac, f"old-{i}", "", 3600, peer))
            add(Event(Kind.RELEASE, t + 300 * us, ip, old_mac, "", "", None, peer))
            counts["released_before"] += 1
        name = client_name(rng, i)
        add(Event(Kind.COMMIT, start, ip, mac, name, "", 3600, peer))
        if rng.random() < 0.70:  # renewed since (T1 shortened for the bench), now and then by
            # the failover partner
            rp = peer if rng.random() < 0.9 else PEERS[1 - (i & 1)]
            add(Event(Kind.COMMIT, start + rng.randint(30, 59) * us, ip, mac, name, "", 3600, rp))
            counts["renewals"] += 1
    # Addresses whose only lease was released: no binding.
    for j in range(live // 20):
        n = base + live + j
        ip = f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"
        mac = f"06:00:{(j >> 16) & 255:02x}:{(j >> 8) & 255:02x}:{j & 255:02x}:01"
        t = (now - rng.randint(300, 900)) * us
        peer = PEERS[j & 1]
        add(Event(Kind.COMMIT, t, ip, mac, f"guest-{j}", "", 3600, peer))
        add(Event(Kind.RELEASE, t + 120 * us, ip, mac, "", "", None, peer))
        counts["released_only"] += 1
    for peer, evs in per_peer.items():
        evs.sort(key=lambda e: e.time_us)
        d = journal_dir / peer
        d.mkdir(parents=True, exist_ok=True)
        (d / "events-00000001.jsonl").write_text("".join(to_line(e, JOURNAL_KEY) for e in evs))
    return counts


def write_config(tmp: Path, state: Path, root: Path, data_program: str) -> Path:
    static = tmp / "static.data"  # the zone itself: SOA and NS
    static.write_text(f".{DOMAIN}:192.0.2.53:a\n.64.100.in-addr.arpa:192.0.2.53:a\n")
    cfg = tmp / "leasedns.yaml"
    cfg.write_text(
        f"peer: peer-a\nstate_dir: {state}\ndomain: {DOMAIN}\n"
        f"tinydns:\n  root: {root}\n  data_program: {data_program}\n  static: [{static}]\n"
        "build:\n  coalesce_secs: 0\n"
    )
    return cfg


def vm_hwm_kib() -> int:
    """This process's peak resident set (VmHWM; unlike ru_maxrss it is not inherited over exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def worker(config: str, out: str) -> int:
    """Child process: read + merge + render once, timing each stage; prints JSON."""
    from leasedns import config as lconfig
    from leasedns import journal
    from leasedns.engine.resolve import merge
    from leasedns.model import Settings
    from leasedns.outputs.tinydns import render
    from leasedns.sources import statics

    rss0 = vm_hwm_kib()  # the interpreter with leasedns and its dependencies imported
    cfg = lconfig.load(config)
    now = int(time.time())
    t0 = time.perf_counter()
    journals = journal.read_all(cfg.journal_dir)
    events = [e for pj in journals.values() for e in pj.events]
    t1 = time.perf_counter()
    st = statics.load(cfg)
    result = merge(events, st, Settings.from_config(cfg), now)
    t2 = time.perf_counter()
    data = render(st, result.records, cfg.ttl)
    t3 = time.perf_counter()
    Path(out).write_bytes(data)
    print(
        json.dumps(
            {
                "read": t1 - t0,
                "merge": t2 - t1,
                "render": t3 - t2,
                "total": t3 - t0,
                "events": len(events),
                "records": len(result.records),
                "bindings": len(result.bindings),
                "refusals": len(result.refusals),
                "bytes": len(data),
                "rss0_kib": rss0,
                "rss_kib": vm_hwm_kib(),
            }
        )
    )
    return 0


def worker_incremental(config: str, out: str) -> int:
    """Child process: the build's merge as `leasedns apply` runs it: load the saved merge state,
    fold in the journal lines appended since (all of them when there is no state), resolve,
    render, save the state; prints JSON."""
    import gc

    from leasedns import config as lconfig
    from leasedns.commands.apply import changes_for
    from leasedns.engine.state import State
    from leasedns.outputs.tinydns import Tinydns
    from leasedns.sources import statics

    rss0 = vm_hwm_kib()
    cfg = lconfig.load(config)
    now = int(time.time())
    gc.disable()  # as apply.build does
    t0 = time.perf_counter()
    st = statics.load(cfg)
    # the output writes into a tinydns root beside `out`, and `out` gets a copy of its data
    root = Path(out).parent / "tinydns"
    root.mkdir(exist_ok=True)
    output = Tinydns(root, "true", cfg.ttl, st, cfg.state_dir, runner=_no_compile)
    t1 = time.perf_counter()
    state = State.open(cfg, now)
    rebuilt, new_events = state.health.rebuilt, state.health.read_events
    t2 = time.perf_counter()
    up = state.advance(st)  # resolve, and keep the state (saved)
    t3 = time.perf_counter()
    desired = state.desired(up, st)
    output.publish(desired, changes_for(output.serving(), up, desired, now))
    data = (root / "data").read_bytes()
    t4 = time.perf_counter()
    state.close()  # as apply does; the last close folds the WAL into the database file
    t5 = time.perf_counter()
    Path(out).write_bytes(data)
    print(
        json.dumps(
            {
                "load": t1 - t0,
                "read": t2 - t1,
                "merge": t3 - t2,
                "render": t4 - t3,
                "save": t5 - t4,
                "total": t5 - t0,
                "new_events": new_events,
                "rebuilt": rebuilt,
                "full": up.full,
                "dirty": len(up.dirty),
                "records": len(st.hosts) + up.dynamic,
                "bytes": len(data),
                "rss0_kib": rss0,
                "rss_kib": vm_hwm_kib(),
                "state_bytes": (cfg.state_dir / "merge-state.sqlite").stat().st_size,
            }
        )
    )
    return 0


def _no_compile(argv: list[str], **_kw: object) -> subprocess.CompletedProcess[bytes]:
    """The compile is timed apart (tinydns-data is the reference)."""
    return subprocess.CompletedProcess(argv, 0, b"", b"")


def append_events(journal_dir: Path, n: int, now: int, seed: int = 2) -> None:
    """n new events at the end of peer-a's journal: renewals, new leases, a few releases."""
    from leasedns import journal
    from leasedns.model import Event, Kind

    rng = random.Random(seed)
    us = 1_000_000
    evs = []
    base = 0x64400001
    for j in range(n):
        i = rng.randrange(200_000)
        k = base + i
        ip = f"{k >> 24}.{(k >> 16) & 255}.{(k >> 8) & 255}.{k & 255}"
        mac = f"0a:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}:00:01"
        t = now * us - rng.randrange(30 * us)
        kind = Kind.RELEASE if j % 10 == 9 else Kind.COMMIT
        evs.append(
            Event(
                kind,
                t,
                ip,
                mac,
                f"fresh-{j}" if kind is Kind.COMMIT else "",
                "",
                3600 if kind is Kind.COMMIT else None,
                "peer-a",
            )
        )
    journal.append(journal_dir / "peer-a", evs, key=JOURNAL_KEY)


def run_worker(config: Path, out: Path, mode: str = "--worker") -> tuple[dict[str, float], int]:
    """Run the worker in a fresh interpreter; returns its figures and its peak RSS in KiB."""
    proc = subprocess.run(
        [sys.executable, __file__, mode, str(config), str(out)],
        stdout=subprocess.PIPE,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"bench_build worker failed (exit {proc.returncode})")
    fig = json.loads(proc.stdout)
    return fig, fig["rss_kib"]


def time_tinydns_data(program: str, data: Path, tmp: Path, repeat: int) -> float:
    """Best wall time of tinydns-data compiling `data` in a fresh root."""
    root = tmp / "tdroot"
    best = float("inf")
    for _ in range(repeat):
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        shutil.copyfile(data, root / "data")
        cwd = os.getcwd()
        os.chdir(root)
        try:
            dt, rc = spawn_wait([program], {"PATH": "/usr/bin:/bin"})
        finally:
            os.chdir(cwd)
        if rc != 0:
            raise SystemExit(f"{program} failed (exit {rc}) on the rendered data")
        best = min(best, dt)
    return best


def collect(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--live", type=int, default=100_000, help="live bindings (default 100000)")
    ap.add_argument("--repeat", type=int, default=2, help="library runs; the best counts")
    ap.add_argument("--keep", help="generate into this directory and keep it")
    args = ap.parse_args(argv)

    tinydns_data = find_program("tinydns-data")
    if not tinydns_data:
        return [Row(NAME, "tinydns-data not installed (apt install tinydns)", 0, "n", ok=False)]
    leasedns = str(leasedns_path())

    tmpctx = tempfile.TemporaryDirectory(prefix="leasedns-bench-build-")
    tmp = Path(args.keep) if args.keep else Path(tmpctx.name)
    try:
        state, root = tmp / "state", tmp / "root"
        root.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        counts = generate(state / "journal", args.live, int(time.time()))
        gen_secs = time.perf_counter() - t
        journal_bytes = sum(f.stat().st_size for f in (state / "journal").rglob("*.jsonl"))
        cfg = write_config(tmp, state, root, tinydns_data)

        # (i) the library, best of `repeat` runs, each in a fresh child process
        runs = [run_worker(cfg, tmp / "data.rendered") for _ in range(args.repeat)]
        fig, _ = min(runs, key=lambda r: r[0]["total"])
        peak_rss = max(r[1] for r in runs)
        # (ii) tinydns-data on the very data we rendered
        td = time_tinydns_data(tinydns_data, tmp / "data.rendered", tmp, 3)

        # (iii) the incremental merge apply uses: cold (no saved state), then steady state
        # (1,000 events appended since the last build), each in a fresh child process.
        from leasedns.engine import cache as mergestate

        mergestate.discard(state)
        cold, cold_rss = run_worker(cfg, tmp / "data.cold", "--worker-incr")
        steady_runs = []
        for r in range(args.repeat):
            append_events(state / "journal", 1000, int(time.time()), seed=2 + r)
            steady_runs.append(run_worker(cfg, tmp / "data.steady", "--worker-incr"))
        steady, _ = min(steady_runs, key=lambda r: r[0]["total"])
        steady_rss = max(r[1] for r in steady_runs)
        # the steady-state output must equal a full merge of the same journals
        check_fig, _ = run_worker(cfg, tmp / "data.check")
        same = (tmp / "data.check").read_bytes() == (tmp / "data.steady").read_bytes()
        td2 = time_tinydns_data(tinydns_data, tmp / "data.steady", tmp, 3)
        td = min(td, td2)
        mergestate.discard(state)  # apply below starts cold, as before
        # ... on a fresh state directory: the workers' output notes go too (with a note and no
        # journals.json, apply would take the guard's floor for lost, and refuse).
        for note in state.glob("published-*.json"):
            note.unlink()

        # End to end: `leasedns apply` (first build compiles), then one new event arrives.
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LEASEDNS_CONFIG": str(cfg)}
        apply1, rc1 = spawn_wait([leasedns, "-q", "-c", str(cfg), "apply"], env)
        rep1 = json.loads((state / "last-build.json").read_text())["last"]
        (state / "spool").mkdir(exist_ok=True)
        hook_env = {**env, "LEASEDNS_SPOOL": str(state / "spool"), "LEASEDNS_NO_APPLY": "1"}
        spawn_wait(
            [str(hook_path()), "commit", "100.127.255.1", "2:0:0:0:1:a", "newcomer", "", "3600"],
            hook_env,
        )
        apply2, rc2 = spawn_wait([leasedns, "-q", "-c", str(cfg), "apply"], env)
        rep2 = json.loads((state / "last-build.json").read_text())["last"]
        data_bytes = (root / "data").stat().st_size
    finally:
        if not args.keep:
            tmpctx.cleanup()

    ours = fig["total"]
    ref = f"tinydns-data {fmt(td, 's')}"
    rows = [
        Row(
            NAME,
            f"generate {counts['events']:,} events ({journal_bytes / 2**20:.0f} MiB "
            "journals; not judged)",
            gen_secs,
            "s",
        ),
        Row(NAME, "tinydns-data on the rendered data (ref)", td, "s", ref, 1.0, summary=True),
        Row(
            NAME,
            f"read journals ({fig['events']:,} events)",
            fig["read"],
            "s",
            ref,
            fig["read"] / td,
            summary=True,
        ),
        Row(
            NAME,
            f"merge ({fig['bindings']:,} bindings, {fig['refusals']:,} refused)",
            fig["merge"],
            "s",
            ref,
            fig["merge"] / td,
            summary=True,
        ),
        Row(
            NAME,
            f"render ({fig['records']:,} records, {fig['bytes'] / 2**20:.1f} MiB)",
            fig["render"],
            "s",
            ref,
            fig["render"] / td,
            summary=True,
        ),
        Row(
            NAME,
            "read+merge+render (full merge, the pure API)",
            ours,
            "s",
            ref,
            ours / td,
            summary=True,
        ),
        Row(
            NAME,
            f"peak RSS of read+merge+render (VmHWM; {fig['rss0_kib'] / 1024:.0f} MiB "
            "before reading)",
            peak_rss / 1024,
            "MiB",
            summary=True,
        ),
        Row(
            NAME,
            f"incremental merge, cold (no saved state): open+read {cold['read']:.2f} s, "
            f"resolve+save {cold['merge']:.2f} s, render {cold['render']:.2f} s, close "
            f"{cold['save']:.2f} s ({cold['state_bytes'] / 2**20:.0f} MiB)",
            cold["total"],
            "s",
            ref,
            cold["total"] / td,
            summary=True,
        ),
        Row(
            NAME,
            f"peak RSS, incremental cold (VmHWM; {cold['rss0_kib'] / 1024:.0f} MiB before)",
            cold_rss / 1024,
            "MiB",
            summary=True,
        ),
        Row(
            NAME,
            f"incremental merge, 1,000 new events: statics {steady['load']:.2f} s, open+read "
            f"{steady['read']:.3f} s ({steady['new_events']} events), resolve+save "
            f"{steady['merge']:.3f} s ({steady['dirty']} addresses again"
            f"{', FULL: ' + steady['full'] if steady['full'] else ''}), patch data "
            f"{steady['render']:.3f} s, close {steady['save']:.2f} s "
            f"({steady['state_bytes'] / 2**20:.0f} MiB)",
            steady["total"],
            "s",
            ref,
            steady["total"] / td,
            f"<= {TARGET:g}x",
            steady["total"] / td <= TARGET,
        ),
        Row(
            NAME,
            "peak RSS, incremental steady state (VmHWM)",
            steady_rss / 1024,
            "MiB",
            summary=True,
        ),
        Row(
            NAME,
            f"steady-state data == full merge of the same journals "
            f"({check_fig['records']:,} records)",
            float(same),
            "n",
            target="1",
            ok=same,
        ),
        Row(
            NAME,
            f"leasedns apply, first build (exit {rc1}; build {rep1['build_secs']:.2f} s "
            f"incl. compile {rep1['compile_secs']:.2f} s)",
            apply1,
            "s",
            ref,
            apply1 / td,
        ),
        Row(
            NAME,
            f"leasedns apply, one new event (exit {rc2}; ingested {rep2['ingested']}, "
            f"records {rep2['records']:,}, compiled {rep2['compiled']})",
            apply2,
            "s",
            ref,
            apply2 / td,
            summary=True,
        ),
        Row(
            NAME,
            f"leasedns apply, one new event: build part (report build_secs; compile "
            f"{rep2['compile_secs']:.2f} s)",
            rep2["build_secs"],
            "s",
            ref,
            rep2["build_secs"] / td,
            summary=True,
        ),
    ]
    if rc1 or rc2 or not rep2["ok"] or rep2["records"] != check_fig["records"] + 1:
        rows.append(
            Row(
                NAME,
                f"apply failed or wrong record count: {rep2.get('error')!r} "
                f"(data {data_bytes} bytes)",
                rep2["records"],
                "n",
                target="ok",
                ok=False,
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return worker(argv[1], argv[2])
    if argv[:1] == ["--worker-incr"]:
        return worker_incremental(argv[1], argv[2])
    rows = collect(argv)
    print_table(f"build at scale vs tinydns-data ({machine_note()})", rows)
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
