"""Benchmark: a whole `leasedns leases --json` process against a whole isc_dhcp_leases process.

Both read the same 100,000-lease dhcpd.leases in which every lease is live now. The figure
is what a user waits for: interpreter start, imports, parse, selection, sorting, JSON and
writing (to /dev/null), against `IscDhcpLeases(path).get()`, which only parses.
"""

from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_parse import make_leases
from common import REPO, Row, exit_code, fmt, leasedns_path, machine_note, print_table

_ISC = "import sys\nfrom isc_dhcp_leases import IscDhcpLeases\nIscDhcpLeases(sys.argv[1]).get()\n"
# The floor under any `leases` output: a process that only parses the file (and frees it with
# the collector off, as `leases` does, rather than have the collector walk it at exit).
_PARSE = (
    "import gc, sys\nfrom leasedns.sources.dhcpd.leases import read_leases\n"
    "gc.disable()\nleases = read_leases(sys.argv[1])\ndel leases\n"
)


def make_live_leases(n: int, now: int, seed: int = 1, shuffled: bool = False) -> str:
    """bench_parse's dhcpd.leases, but every lease active, started in the last day and
    ending two days after it started, so that `leasedns leases` shows every one of them."""
    return make_leases(
        n, seed, base=now - 86400, secs=2 * 86400, states=("active",), shuffled=shuffled
    )[0]


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
