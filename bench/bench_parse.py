"""Benchmark: the lease parser (sources/dhcpd/leases.py) against isc_dhcp_leases and dhcpd-pools."""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import Row, exit_code, fmt, machine_note, print_table

# Each tool runs in a fresh interpreter so peak memory figures do not mix. Peak memory is
# VmHWM from /proc (reset by exec) minus VmRSS after the imports: what the parse itself adds.
# ru_maxrss would not do: Linux carries it over exec from the parent process. "ours" parses with
# whatever leases.PARSER says (the C accelerator when it is built); "ours-pure" forces
# the pure-Python fallback. Both materialise every Lease, as IscDhcpLeases.get() does.
_CHILD = r"""
import json, sys, time
def kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
tool, path = sys.argv[1], sys.argv[2]
from leasedns.sources.dhcpd.leases import PARSER, read_leases
from isc_dhcp_leases import IscDhcpLeases
before = kib("VmRSS:")
t0 = time.perf_counter()
if tool.startswith("ours"):
    n = len(read_leases(path).leases)
else:
    n = len(IscDhcpLeases(path).get())
secs = time.perf_counter() - t0
print(json.dumps({"secs": secs, "peak_kib": kib("VmHWM:") - before, "n": n, "parser": PARSER}))
"""

# The C tool: GNU time's %M, or nothing when /usr/bin/time is missing.
_TIME = "/usr/bin/time"


def _when(ts: int) -> str:
    t = time.gmtime(ts)
    # dhcpd's print_time(): weekday (0 = Sunday), then UTC date and time
    return (
        f"{(t.tm_wday + 1) % 7} {t.tm_year:04d}/{t.tm_mon:02d}/{t.tm_mday:02d} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
    )


FAILOVER_STATES = ("active",) * 6 + ("free",) * 3 + ("backup",)


def make_leases(
    n: int,
    seed: int = 1,
    *,
    base: int = 1714550000,
    secs: int = 43200,
    states: tuple[str, ...] = FAILOVER_STATES,
    shuffled: bool = False,
) -> tuple[str, str]:
    """A dhcpd.leases with n leases as dhcpd 4.4 writes them, and a dhcpd.conf covering them.

    Addresses are 10.0.0.0/8 from .1 up, each lease starting within a day after `base` and
    lasting `secs`; by default 60 % active (uid, set vars, 70 % with a client-hostname),
    30 % free, 10 % backup, as on a failover peer. The blocks are in address order, or with
    `shuffled` in random order, as in a file dhcpd has rewritten (it writes by pool and
    state). Returns (leases text, dhcpd.conf text).
    """
    rnd = random.Random(seed)
    out = [
        "# The format of this file is documented in the dhcpd.leases(5) manual page.\n"
        "# This lease file was written by isc-dhcp-4.4.3-P1\n\n"
        "# authoring-byte-order entry is generated, DO NOT DELETE\n"
        "authoring-byte-order little-endian;\n\n"
    ]
    for i in range(1, n + 1):
        ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        starts = base + rnd.randrange(86400)
        ends = starts + secs
        state = rnd.choice(states)
        mac = ":".join(f"{rnd.randrange(256):02x}" for _ in range(6))
        lines = [
            f"lease {ip} {{",
            f"  starts {_when(starts)};",
            f"  ends {_when(ends)};",
            f"  tstp {_when(ends)};",
            f"  cltt {_when(starts)};",
            f"  binding state {state};",
        ]
        if state == "active":
            lines += ["  next binding state free;", "  rewind binding state free;"]
        lines.append(f"  hardware ethernet {mac};")
        if state == "active":
            uid = "".join(f"\\{rnd.randrange(256):03o}" for _ in range(6))
            lines.append(f'  uid "\\001{uid}";')
            lines.append(f'  set leasedns-mac = "{mac}";')
            if rnd.random() < 0.7:
                lines.append(f'  set leasedns-name = "host-{i}";')
                lines.append(f'  client-hostname "host-{i}";')
        lines.append("}\n")
        out.append("\n".join(lines))
    if shuffled:
        blocks = out[1:]
        rnd.shuffle(blocks)
        out[1:] = blocks
    conf = (
        "authoritative;\ndefault-lease-time 43200;\nmax-lease-time 86400;\n"
        "subnet 10.0.0.0 netmask 255.0.0.0 {\n"
        f"  range 10.0.0.1 10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255};\n}}\n"
    )
    return "".join(out), conf


def _child(tool: str, path: Path, conf: Path) -> dict[str, Any]:
    if tool == "dhcpd-pools":
        cmd = ["dhcpd-pools", "-c", str(conf), "-l", str(path)]
        timed = Path(_TIME).exists()
        t0 = time.perf_counter()
        res = subprocess.run(
            ([_TIME, "-f", "%M"] if timed else []) + cmd,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        secs = time.perf_counter() - t0
        peak = float(res.stderr.strip().splitlines()[-1]) if timed else float("nan")
        return {"secs": secs, "peak_kib": peak}
    env = dict(os.environ)
    env.pop("LEASEDNS_PURE_PYTHON", None)
    if tool == "ours-pure":
        env["LEASEDNS_PURE_PYTHON"] = "1"
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, tool, str(path)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    out: dict[str, Any] = json.loads(res.stdout)
    return out


def collect(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--leases", type=int, default=100_000, help="leases in the file")
    ap.add_argument("--runs", type=int, default=3, help="runs per tool; the median counts")
    ap.add_argument(
        "--no-pure", action="store_true", help="do not also measure the pure-Python fallback"
    )
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="leasedns-bench-") as tmp:
        path, conf = Path(tmp, "dhcpd.leases"), Path(tmp, "dhcpd.conf")
        text, conf_text = make_leases(args.leases)
        path.write_text(text, encoding="ascii")
        conf.write_text(conf_text, encoding="ascii")
        del text
        size_mb = path.stat().st_size / 1e6
        parser = _child("ours", path, conf)["parser"]
        tools = ["ours", "isc_dhcp_leases"]
        if not args.no_pure and not parser.startswith("pure Python"):
            tools.insert(1, "ours-pure")
        if shutil.which("dhcpd-pools") is not None:
            tools.append("dhcpd-pools")
        # Runs interleaved, tool after tool, so that a noisy stretch of a shared machine
        # weighs on every tool alike: the ratios are of figures measured side by side.
        runs: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
        for _ in range(args.runs):
            for tool in tools:
                runs[tool].append(_child(tool, path, conf))
        secs = {t: statistics.median(r["secs"] for r in runs[t]) for t in tools}
        peak = {t: statistics.median(r["peak_kib"] for r in runs[t]) / 1024 for t in tools}

    print(
        f"{args.leases} leases, {size_mb:.1f} MB; median of {args.runs} interleaved runs; peak "
        "MiB is what the parse adds to the process (dhcpd-pools: whole process)\n"
        f"ours: leasedns.sources.dhcpd.leases, lease parser: {parser}"
    )
    print(f"{'tool':<18}{'seconds':>10}{'x ours':>10}{'peak MiB':>10}")
    for tool in tools:
        print(f"{tool:<18}{secs[tool]:>10.3f}{secs[tool] / secs['ours']:>10.1f}{peak[tool]:>10.1f}")
    isc, ours = secs["isc_dhcp_leases"], secs["ours"]
    what = f"a {args.leases:,}-lease dhcpd.leases ({size_mb:.1f} MB)"
    short = parser.split(",")[0]  # "C" or "pure Python"
    rows = [
        Row(
            "parse",
            f"`read_leases` of {what}, {short}; ratio: isc_dhcp_leases time / ours",
            ours,
            "s",
            reference=f"isc_dhcp_leases {fmt(isc, 's')}",
            ratio=isc / ours,
            target=">= 10x",
            ok=isc / ours >= 10,
        ),
        Row(
            "parse",
            "the same, peak memory the parse adds",
            peak["ours"],
            "MiB",
            reference=f"isc_dhcp_leases {fmt(peak['isc_dhcp_leases'], 'MiB')}",
            ratio=peak["ours"] / peak["isc_dhcp_leases"],
            target="<= 0.25x",
            ok=peak["ours"] / peak["isc_dhcp_leases"] <= 0.25,
        ),
    ]
    if "ours-pure" in tools:
        rows.append(
            Row(
                "parse",
                f"the pure-Python fallback (LEASEDNS_PURE_PYTHON=1); peak "
                f"{fmt(peak['ours-pure'], 'MiB')}",
                secs["ours-pure"],
                "s",
                reference=f"isc_dhcp_leases {fmt(isc, 's')}",
                ratio=isc / secs["ours-pure"],
                summary=True,
            )
        )
    if "dhcpd-pools" in tools:
        rows.append(
            Row(
                "parse",
                f"dhcpd-pools (C) on the same file; peak {fmt(peak['dhcpd-pools'], 'MiB')} "
                "(whole process)",
                secs["dhcpd-pools"],
                "s",
                reference=f"ours {fmt(ours, 's')}",
                ratio=secs["dhcpd-pools"] / ours,
                summary=True,
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    rows = collect(sys.argv[1:] if argv is None else argv)
    print_table(f"dhcpd.leases parse ({machine_note()})", rows)
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
