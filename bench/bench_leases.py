"""Benchmark: a whole `leasedns leases --json` process against a whole isc_dhcp_leases process.

Both read the same 100,000-lease dhcpd.leases in which every lease is live now. The figure
is what a user waits for: interpreter start, imports, parse, selection, sorting, JSON and
writing (to /dev/null), against `IscDhcpLeases(path).get()`, which only parses.
"""

from __future__ import annotations

import argparse
import compileall
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_parse import _when  # dhcpd's print_time() format
from common import REPO, Row, exit_code, fmt, leasedns_path, machine_note, print_table

_ISC = "import sys\nfrom isc_dhcp_leases import IscDhcpLeases\nIscDhcpLeases(sys.argv[1]).get()\n"
# The floor under any `leases` output: a process that only parses the file (and frees it with
# the collector off, as `leases` does, rather than have the collector walk it at exit).
_PARSE = (
    "import gc, sys\nfrom leasedns.leases import read_leases\n"
    "gc.disable()\nleases = read_leases(sys.argv[1])\ndel leases\n"
)


def make_live_leases(n: int, now: int, seed: int = 1, shuffled: bool = False) -> str:
    """A dhcpd.leases with n active leases as dhcpd 4.4 writes them, all live at `now`.

    Like bench_parse.make_leases (10.0.0.0/8 from .1 up, in address order as there; uid, set
    vars, 70 % with a client-hostname), but every lease started in the last day and ends
    two days after it started, so that `leasedns leases` shows every one of them. With
    shuffled, the blocks are in random order, as in a file dhcpd has rewritten (it writes
    by pool and state, not by address): `leases` then sorts them itself."""
    rnd = random.Random(seed)
    out = [
        "# The format of this file is documented in the dhcpd.leases(5) manual page.\n"
        "# This lease file was written by isc-dhcp-4.4.3-P1\n\n"
        "# authoring-byte-order entry is generated, DO NOT DELETE\n"
        "authoring-byte-order little-endian;\n\n"
    ]
    for i in range(1, n + 1):
        ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        starts = now - 86400 + rnd.randrange(86400)
        ends = starts + 2 * 86400
        mac = ":".join(f"{rnd.randrange(256):02x}" for _ in range(6))
        uid = "".join(f"\\{rnd.randrange(256):03o}" for _ in range(6))
        lines = [
            f"lease {ip} {{",
            f"  starts {_when(starts)};",
            f"  ends {_when(ends)};",
            f"  tstp {_when(ends)};",
            f"  cltt {_when(starts)};",
            "  binding state active;",
            "  next binding state free;",
            "  rewind binding state free;",
            f"  hardware ethernet {mac};",
            f'  uid "\\001{uid}";',
            f'  set leasedns-mac = "{mac}";',
        ]
        if rnd.random() < 0.7:
            lines.append(f'  set leasedns-name = "host-{i}";')
            lines.append(f'  client-hostname "host-{i}";')
        lines.append("}\n")
        out.append("\n".join(lines))
    if shuffled:
        blocks = out[1:]
        rnd.shuffle(blocks)
        out[1:] = blocks
    return "".join(out)


def _timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def collect(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leases", type=int, default=100_000, help="live leases in the file")
    ap.add_argument("--runs", type=int, default=5, help="runs per tool; the median counts")
    args = ap.parse_args(argv)

    env = dict(os.environ)
    env.pop("LEASEDNS_PURE_PYTHON", None)
    # Byte-compiled, as an install leaves it: with PYTHONDONTWRITEBYTECODE set (or a
    # read-only tree) every run would otherwise compile the modules it imports again.
    compileall.compile_dir(str(REPO / "src" / "leasedns"), quiet=1)
    ours = [str(leasedns_path()), "leases", "--json"]
    now = int(time.time())
    with tempfile.TemporaryDirectory(prefix="leasedns-bench-") as tmp:
        path, mixed = Path(tmp, "dhcpd.leases"), Path(tmp, "shuffled.leases")
        path.write_text(make_live_leases(args.leases, now), encoding="ascii")
        mixed.write_text(make_live_leases(args.leases, now, shuffled=True), encoding="ascii")
        size_mb = path.stat().st_size / 1e6
        commands = {
            "ours": [*ours, str(path)],
            "isc": [sys.executable, "-c", _ISC, str(path)],
            "parse": [sys.executable, "-c", _PARSE, str(path)],
            "ours-shuffled": [*ours, str(mixed)],
            "isc-shuffled": [sys.executable, "-c", _ISC, str(mixed)],
        }
        shown = subprocess.run(
            commands["ours"], check=True, capture_output=True, text=True, env=env
        ).stdout.count("\n")
        # Interleaved, tool after tool, so that a noisy stretch of a shared machine weighs
        # on all alike.
        runs: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(args.runs):
            for k, cmd in commands.items():
                runs[k].append(_timed(cmd, env))
        start = statistics.median(_timed([sys.executable, "-c", "pass"], env) for _ in range(5))
    secs = {k: statistics.median(v) for k, v in runs.items()}
    print(
        f"{args.leases:,} live leases, {size_mb:.1f} MB; median of {args.runs} interleaved runs; "
        f"`leasedns leases --json` wrote {shown:,} lines"
    )
    for k in commands:
        print(f"{k:<14} {secs[k]:.3f} s  (runs: " + ", ".join(f"{x:.3f}" for x in runs[k]) + ")")
    print(f"python -c pass {start:.3f} s")
    ratio = secs["isc"] / secs["ours"]
    return [
        Row(
            "leases",
            f"`leasedns leases --json`, whole process, {shown:,} live leases ({size_mb:.1f} MB); "
            "ratio: a whole process of isc_dhcp_leases `.get()` / ours",
            secs["ours"],
            "s",
            reference=f"isc_dhcp_leases {fmt(secs['isc'], 's')}",
            ratio=ratio,
            target=">= 10x",
            ok=ratio >= 10 and shown == args.leases,
        ),
        Row(
            "leases",
            "the same leases in random order, as a rewritten file has them (leases sorts them)",
            secs["ours-shuffled"],
            "s",
            reference=f"isc_dhcp_leases {fmt(secs['isc-shuffled'], 's')}",
            ratio=secs["isc-shuffled"] / secs["ours-shuffled"],
            summary=True,
        ),
        Row(
            "leases",
            "the floor under both: a whole process that only parses the file (read_leases)",
            secs["parse"],
            "s",
            reference=f"isc_dhcp_leases {fmt(secs['isc'], 's')}",
            ratio=secs["isc"] / secs["parse"],
            summary=True,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    rows = collect(sys.argv[1:] if argv is None else argv)
    print_table(f"leasedns leases --json, whole process ({machine_note()})", rows)
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
