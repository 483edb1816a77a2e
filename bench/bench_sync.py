"""`leasedns sync` moves O(new events): a 100,000-event journal grows by 1,000, then syncs.

Builds peer-a's journal of 100,000 events with leasedns.journal.append (commits,
renewals, releases of realistic clients), syncs it with the real
`leasedns sync --json` to a local rsync target (sync.partners[0].rsync_target =
a directory: the same rsync command as over ssh, `--no-whole-file` keeps the
delta algorithm on), appends 1,000 more events, and syncs again.

Reported: the journal size, the new events' bytes, rsync's "Total bytes sent"
(`bytes_sent` of the sync result) of both syncs, and that the partner's copy is
byte-identical afterwards. Judged (issue 4): bytes sent by the second sync /
bytes of the new events <= 3 (the reference, the new bytes, is measured in the
same run); bytes sent / journal size is reported beside it.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_build import client_name  # realistic client names
from common import Row, exit_code, find_program, leasedns_path, machine_note, print_table

NAME = "sync"
TARGET = 3.0  # bytes sent / new bytes
DOMAIN = "lab.example"


def events(n: int, start_us: int, rng: random.Random, first_client: int = 0) -> list:  # type: ignore[type-arg]
    """n events of peer-a as its hook would journal them: commits, renewals, some releases."""
    from leasedns.model import Event, Kind

    out = []
    t = start_us
    clients = max(1, n // 3)
    for k in range(n):
        t += rng.randint(1, 2_000_000)
        c = first_client + rng.randrange(clients)
        ip = f"10.{(c >> 16) & 255}.{(c >> 8) & 255}.{c & 255}"
        mac = "02:00:" + ":".join(f"{x:02x}" for x in c.to_bytes(4, "big"))
        if rng.random() < 0.08:
            out.append(
                Event(
                    Kind.RELEASE, t, ip, mac, client_name(random.Random(c), c), "", None, "peer-a"
                )
            )
        else:
            out.append(
                Event(
                    Kind.COMMIT,
                    t,
                    ip,
                    mac,
                    client_name(random.Random(c), c),
                    "",
                    rng.choice((3600, 7200, 43200)),
                    "peer-a",
                )
            )
        del k
    return out


def journal_bytes(d: Path) -> int:
    return sum(p.stat().st_size for p in d.glob("*.jsonl"))


def sync(leasedns: str, cfg: Path) -> tuple[float, dict]:  # type: ignore[type-arg]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [leasedns, "-q", "-c", str(cfg), "sync", "--json"],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin"},
    )
    secs = time.perf_counter() - t0
    try:
        res = json.loads(proc.stdout)[0]
    except (ValueError, IndexError):
        res = {"ok": False, "error": (proc.stderr or proc.stdout).strip()[-300:], "bytes_sent": 0}
    res["exit"] = proc.returncode
    return secs, res


def collect(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000, help="events in the journal")
    ap.add_argument("--new", type=int, default=1_000, help="events appended before the 2nd sync")
    ap.add_argument("--keep", help="work in this directory and keep it")
    args = ap.parse_args(argv)

    rsync = find_program("rsync")
    if not rsync:
        return [Row(NAME, "rsync not installed (apt install rsync)", 0, "n", ok=False)]
    from leasedns import journal

    tmpctx = tempfile.TemporaryDirectory(prefix="leasedns-bench-sync-")
    tmp = Path(args.keep) if args.keep else Path(tmpctx.name)
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        state, target = tmp / "state", tmp / "partner-journal"
        target.mkdir(parents=True, exist_ok=True)
        (tmp / "root").mkdir(exist_ok=True)
        cfg = tmp / "leasedns.yaml"
        cfg.write_text(
            f"peer: peer-a\nstate_dir: {state}\ndomain: {DOMAIN}\n"
            f"tinydns:\n  root: {tmp / 'root'}\n"
            f"sync:\n  rsync: {rsync}\n  partners:\n    - name: peer-b\n"
            f"      rsync_target: {target}/\n"
        )
        rng = random.Random(3)
        own = state / "journal" / "peer-a"
        now_us = time.time_ns() // 1000
        base = events(args.events, now_us - args.events * 1_000_000, rng)
        t0 = time.perf_counter()
        for i in range(0, len(base), 10_000):  # as apply journals them: batch by batch
            journal.append(own, base[i : i + 10_000])
        append_secs = time.perf_counter() - t0
        size1 = journal_bytes(own)
        first_secs, first = sync(str(leasedns_path()), cfg)

        more = events(args.new, now_us, rng)
        journal.append(own, more)
        size2 = journal_bytes(own)
        new_bytes = size2 - size1
        second_secs, second = sync(str(leasedns_path()), cfg)
        same = all(
            # the partner's inbox: its apply takes the copy from there
            filecmp.cmp(p, target / ".incoming-peer-a" / "peer-a" / p.name, shallow=False)
            for p in own.glob("*.jsonl")
        )
        segs = len(list(own.glob("*.jsonl")))
    finally:
        if not args.keep:
            tmpctx.cleanup()

    def kib(n: float) -> float:
        return round(n / 1024, 1)

    sent = second["bytes_sent"]
    ref = f"new bytes {new_bytes:,} B"
    ok2 = bool(second.get("ok")) and second["exit"] == 0
    return [
        Row(NAME, f"journal.append of {args.events:,} events (not judged)", append_secs, "s"),
        Row(
            NAME,
            f"journal after {args.events:,} events ({segs} segment(s))",
            kib(size1),
            "KiB",
            summary=True,
        ),
        Row(
            NAME,
            f"first sync: bytes sent (exit {first['exit']}, {first_secs:.2f} s)",
            kib(first["bytes_sent"]),
            "KiB",
            f"journal {size1:,} B",
            first["bytes_sent"] / size1,
        ),
        Row(NAME, f"{args.new:,} new events appended", kib(new_bytes), "KiB", summary=True),
        Row(
            NAME,
            f"second sync: bytes sent / new bytes (exit {second['exit']}, "
            f"{second_secs:.2f} s{'' if ok2 else '; ' + str(second.get('error'))})",
            kib(sent),
            "KiB",
            ref,
            sent / new_bytes if new_bytes else float("inf"),
            f"<= {TARGET:g}x",
            ok2 and new_bytes > 0 and sent / new_bytes <= TARGET,
        ),
        Row(
            NAME,
            "second sync: bytes sent / journal size",
            kib(sent),
            "KiB",
            f"journal {size2:,} B",
            sent / size2,
            summary=True,
        ),
        Row(
            NAME,
            "partner's copy byte-identical after the second sync",
            int(same),
            "n",
            target="1",
            ok=same,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    rows = collect(sys.argv[1:] if argv is None else argv)
    print_table(f"sync of a grown journal ({machine_note()})", rows)
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
