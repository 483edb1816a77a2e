"""Benchmark: leasedns.leases against isc_dhcp_leases and dhcpd-pools on a 100,000-lease file."""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Each tool runs in a fresh interpreter so peak memory figures do not mix. Peak memory is
# VmHWM from /proc (reset by exec) minus VmRSS after the imports: what the parse itself adds.
# ru_maxrss would not do: Linux carries it over exec from the parent process.
_CHILD = r"""
import json, sys, time
def kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])
tool, path = sys.argv[1], sys.argv[2]
from leasedns.leases import read_leases
from isc_dhcp_leases import IscDhcpLeases
before = kib("VmRSS:")
t0 = time.perf_counter()
if tool == "ours":
    n = len(read_leases(path).leases)
else:
    n = len(IscDhcpLeases(path).get())
secs = time.perf_counter() - t0
print(json.dumps({"secs": secs, "peak_kib": kib("VmHWM:") - before, "n": n}))
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


def make_leases(n: int, seed: int = 1) -> tuple[str, str]:
    """A dhcpd.leases with n leases as dhcpd 4.4 writes them, and a dhcpd.conf covering them.

    Addresses are 10.0.0.0/8 from .1 up; 60 % active (uid, set vars, 70 % with a client-hostname),
    30 % free, 10 % backup, as on a failover peer. Returns (leases text, dhcpd.conf text).
    """
    rnd = random.Random(seed)
    base = 1714550000
    out = [
        "# The format of this file is documented in the dhcpd.leases(5) manual page.\n"
        "# This lease file was written by isc-dhcp-4.4.3-P1\n\n"
        "# authoring-byte-order entry is generated, DO NOT DELETE\n"
        "authoring-byte-order little-endian;\n\n"
    ]
    for i in range(1, n + 1):
        ip = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        starts = base + rnd.randrange(86400)
        ends = starts + 43200
        state = rnd.choice(("active",) * 6 + ("free",) * 3 + ("backup",))
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
    conf = (
        "authoritative;\ndefault-lease-time 43200;\nmax-lease-time 86400;\n"
        "subnet 10.0.0.0 netmask 255.0.0.0 {\n"
        f"  range 10.0.0.1 10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255};\n}}\n"
    )
    return "".join(out), conf


def _child(tool: str, path: Path, conf: Path) -> dict[str, float]:
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
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, tool, str(path)], check=True, capture_output=True, text=True
    )
    out: dict[str, float] = json.loads(res.stdout)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--leases", type=int, default=100_000, help="leases in the file")
    ap.add_argument("--runs", type=int, default=3, help="runs per tool; the median counts")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="leasedns-bench-") as tmp:
        path, conf = Path(tmp, "dhcpd.leases"), Path(tmp, "dhcpd.conf")
        text, conf_text = make_leases(args.leases)
        path.write_text(text, encoding="ascii")
        conf.write_text(conf_text, encoding="ascii")
        size_mb = path.stat().st_size / 1e6
        tools = ["ours", "isc_dhcp_leases"]
        have_pools = shutil.which("dhcpd-pools") is not None
        if have_pools:
            tools.append("dhcpd-pools")
        secs: dict[str, float] = {}
        peak: dict[str, float] = {}
        for tool in tools:
            runs = [_child(tool, path, conf) for _ in range(args.runs)]
            secs[tool] = statistics.median(r["secs"] for r in runs)
            peak[tool] = statistics.median(r["peak_kib"] for r in runs) / 1024

    print(
        f"{args.leases} leases, {size_mb:.1f} MB; median of {args.runs} runs; peak MB is "
        "what the parse adds to the process (dhcpd-pools: whole process)"
    )
    print(f"{'tool':<18}{'seconds':>10}{'x ours':>10}{'peak MB':>10}")
    for tool in tools:
        print(f"{tool:<18}{secs[tool]:>10.3f}{secs[tool] / secs['ours']:>10.1f}{peak[tool]:>10.1f}")
    speedup = secs["isc_dhcp_leases"] / secs["ours"]
    mem_ratio = peak["ours"] / peak["isc_dhcp_leases"]
    ok = speedup >= 10 and mem_ratio <= 0.25
    print(
        f"isc_dhcp_leases / ours: {speedup:.1f}x time (need >= 10), "
        f"ours / isc_dhcp_leases: {mem_ratio:.2f} peak memory (need <= 0.25): "
        f"{'ok' if ok else 'FAIL'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
