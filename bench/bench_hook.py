"""How long dhcpd waits for the hook (dhcpd's execute() is synchronous).

Runs, interleaved in one loop and all started the same way (posix_spawn +
waitpid, a dhcpd-like minimal environment):

  /bin/true                       the floor: the cost of any fork+exec+wait
  python3 -I -S -c pass           the reference: the cheapest Python start
  hook (a) apply already due      the common path under load: .apply-due exists
  hook (b) LEASEDNS_NO_APPLY=1    spool only (a systemd path unit applies)
  hook (c) first event            creates .apply-due and forks the detached apply
                                  (LEASEDNS_BIN=/bin/true: the fork cost only)

Target: (a) and (b) median <= 2 x the /bin/true median, measured in the same loop: no
exec'd hook can cost less than spawning a program, so the hook is judged against that
floor. The Python start is the reference it is also shown against.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    Row,
    become_subreaper,
    exit_code,
    hook_path,
    machine_note,
    median,
    pct,
    print_table,
    reap,
    spawn_wait,
)

NAME = "hook"
TARGET = 2.0  # x the /bin/true floor


def _empty(spool: Path) -> None:
    for e in os.scandir(spool):
        if e.name.startswith("ev-"):
            os.unlink(e.path)


def collect(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300, help="runs of each variant (default 300)")
    ap.add_argument("--batch", type=int, default=50, help="empty the spools every N runs")
    args = ap.parse_args(argv)

    hook = str(hook_path())
    python = os.path.realpath(sys.executable)
    true = "/bin/true"
    subreaper = become_subreaper()

    with tempfile.TemporaryDirectory(prefix="leasedns-bench-hook-") as tmp:
        base_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}  # dhcpd passes little else
        spools = {}
        for v in ("a", "b", "c"):
            spools[v] = Path(tmp, f"spool-{v}")
            spools[v].mkdir()
        (spools["a"] / ".apply-due").touch()
        envs = {
            # /bin/false: if the hook ever started an apply on this path, nothing would happen,
            # but the flag exists so it must not even fork.
            "a": {**base_env, "LEASEDNS_SPOOL": str(spools["a"]), "LEASEDNS_BIN": "/bin/false"},
            "b": {**base_env, "LEASEDNS_SPOOL": str(spools["b"]), "LEASEDNS_NO_APPLY": "1"},
            "c": {**base_env, "LEASEDNS_SPOOL": str(spools["c"]), "LEASEDNS_BIN": "/bin/true"},
        }

        def hook_argv(i: int) -> list[str]:
            return [
                hook,
                "commit",
                f"192.0.2.{i % 254 + 1}",
                "2:0:0:0:1:a",
                f"client{i}",
                "",
                "600",
            ]

        variants = ["true", "python", "a", "b", "c"]
        times: dict[str, list[float]] = {v: [] for v in variants}
        failures: dict[str, int] = {v: 0 for v in variants}
        warmup = 10
        for i in range(-warmup, args.runs):
            if i > 0 and i % args.batch == 0:
                for s in spools.values():
                    _empty(s)
                reap()
            # Rotate the order so no variant always runs right after another.
            k = i % len(variants)
            for v in variants[k:] + variants[:k]:
                if v == "true":
                    argv, env = [true], base_env
                elif v == "python":
                    argv, env = [python, "-I", "-S", "-c", "pass"], base_env
                else:
                    argv, env = hook_argv(i), envs[v]
                    if v == "c":
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(spools["c"] / ".apply-due")
                dt, rc = spawn_wait(argv, env)
                if rc != 0:
                    failures[v] += 1
                if i >= 0:
                    times[v].append(dt)
        # Sanity: the hook really wrote its events and (a) never dropped its flag.
        assert (spools["a"] / ".apply-due").exists()
        spooled = sum(1 for e in os.scandir(spools["b"]) if e.name.startswith("ev-"))
        reap()

    med = {v: median(t) for v, t in times.items()}
    py, floor = med["python"], med["true"]
    ref = f"python -I -S {py * 1000:.2f} ms"
    rows = [
        Row(NAME, "/bin/true (floor)", floor, "s", ref, floor / py, summary=True),
        Row(NAME, "python3 -I -S -c pass (ref)", py, "s", ref, 1.0, summary=True),
    ]
    labels = {
        "a": "hook (a) apply already due",
        "b": "hook (b) LEASEDNS_NO_APPLY",
        "c": "hook (c) first event, forks apply",
    }
    for v in ("a", "b", "c"):
        rows.append(Row(NAME, labels[v], med[v], "s", ref, med[v] / py, summary=True))
    true_ref = f"/bin/true {floor * 1000:.2f} ms"
    for v in ("a", "b"):
        ratio = med[v] / floor
        rows.append(
            Row(
                NAME,
                f"{labels[v]}, against the floor",
                med[v],
                "s",
                true_ref,
                ratio,
                f"<= {TARGET:g}x",
                ratio <= TARGET,
                summary=True,
            )
        )
    for v in ("a", "b", "c"):
        rows.append(Row(NAME, f"hook ({v}) p90", pct(times[v], 0.9), "s"))
        rows.append(
            Row(
                NAME,
                f"hook ({v}) above floor / python above floor",
                med[v] - floor,
                "s",
                f"python-floor {(py - floor) * 1000:.2f} ms",
                (med[v] - floor) / (py - floor),
            )
        )
    bad = {v: n for v, n in failures.items() if n}
    if bad:
        rows.append(
            Row(
                NAME,
                f"runs that exited non-zero {bad}",
                sum(bad.values()),
                "n",
                target="0",
                ok=False,
            )
        )
    rows.append(
        Row(
            NAME,
            f"runs per variant (batch {args.batch}, subreaper {subreaper}, "
            f"last batch spooled {spooled})",
            args.runs,
            "n",
        )
    )
    return rows


def main(argv: list[str] | None = None) -> int:
    rows = collect(argv)
    print_table(f"dhcpd-event hook wall time, medians ({machine_note()})", rows)
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
