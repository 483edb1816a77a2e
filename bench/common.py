"""Helpers shared by the leasedns benchmarks: spawning, statistics, result rows, tables.

Every benchmark measures its reference (a Python start, tinydns-data, ...) in
the same run as the thing it judges, and judges the *ratio*, because the
machines this runs on are shared and noisy.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ROWS_ENV = "LEASEDNS_BENCH_ROWS"  # run.py sets it: benches append their rows there as JSON
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# A journal key: the benches write journal lines signed, as apply writes them.
JOURNAL_KEY = bytes(range(32))


def venv_bin() -> Path:
    """The directory holding the installed `leasedns` and `dhcpd-event` (this interpreter's)."""
    here = Path(sys.executable).parent
    if (here / "leasedns").exists():
        return here
    return REPO / ".venv" / "bin"


def hook_path() -> Path:
    """The installed hook if there is one, else the one in the source tree."""
    p = venv_bin() / "dhcpd-event"
    return p if p.exists() else REPO / "hooks" / "dhcpd-event"


def leasedns_path() -> Path:
    return venv_bin() / "leasedns"


def find_program(name: str) -> str | None:
    """A program on PATH or in the sbin directories (tinydns-data lives in /usr/sbin)."""
    return shutil.which(name) or shutil.which(name, path=SBIN_PATH)


def spawn(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Start a program with posix_spawn (stdio inherited); returns its pid."""
    return os.posix_spawn(argv[0], list(argv), dict(env))


def spawn_wait(argv: Sequence[str], env: Mapping[str, str]) -> tuple[float, int]:
    """Run a program to completion; returns (wall seconds, exit status)."""
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], list(argv), dict(env))
    _, status = os.waitpid(pid, 0)
    return time.perf_counter() - t0, os.waitstatus_to_exitcode(status)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def pct(xs: Sequence[float], q: float) -> float:
    """The q-quantile (0..1), nearest rank."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


@dataclass
class Row:
    """One judged (or merely reported) figure."""

    bench: str
    measure: str
    value: float
    unit: str
    reference: str = ""  # what the ratio is against, with its value
    ratio: float | None = None
    target: str = ""  # human-readable target, e.g. "<= 0.1x"
    ok: bool | None = None  # None: informative only
    summary: bool = False  # show in run.py's README table even when not judged

    def value_text(self) -> str:
        return fmt(self.value, self.unit)

    def ratio_text(self) -> str:
        if self.ratio is None:
            return ""
        return f"{self.ratio:.3f}x" if self.ratio < 1 else f"{self.ratio:.2f}x"

    def ok_text(self) -> str:
        return "" if self.ok is None else ("PASS" if self.ok else "MISS")


def fmt(v: float, unit: str) -> str:
    if unit == "s":
        if v < 0.01:
            return f"{v * 1000:.2f} ms"
        if v < 1:
            return f"{v * 1000:.0f} ms"
        return f"{v:.2f} s"
    if unit == "MiB":
        return f"{v:.0f} MiB"
    if unit in ("", "n"):
        return f"{v:.0f}"
    if unit == "/s":
        return f"{v:,.0f} /s"
    return f"{v:g} {unit}"


def print_table(title: str, rows: Sequence[Row], out=None) -> None:  # type: ignore[no-untyped-def]
    """A plain aligned table for the terminal."""
    out = out or sys.stdout
    head = ("measure", "value", "reference", "ratio", "target", "")
    body = [
        (r.measure, r.value_text(), r.reference, r.ratio_text(), r.target, r.ok_text())
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    print(f"\n== {title}", file=out)
    for line in (head, *body):
        print(
            "  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True)).rstrip(), file=out
        )
    out.flush()


def markdown(rows: Sequence[Row]) -> str:
    """The summary as a markdown table (for the README)."""
    lines = [
        "| bench | measure | result | reference | ratio | target | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.bench} | {r.measure} | {r.value_text()} | {r.reference} | "
            f"{r.ratio_text()} | {r.target} | {r.ok_text()} |"
        )
    return "\n".join(lines)


def exit_code(rows: Sequence[Row]) -> int:
    """1 when a judged figure missed its target; also hands the rows to run.py if it asked."""
    dest = os.environ.get(ROWS_ENV)
    if dest:
        with open(dest, "a", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(asdict(r)) + "\n")
    return 1 if any(r.ok is False for r in rows) else 0


def load_rows(path: str) -> list[Row]:
    """Rows a bench wrote for run.py."""
    try:
        with open(path, encoding="utf-8") as f:
            return [Row(**json.loads(line)) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def machine_note() -> str:
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return f"{os.cpu_count()} CPUs, load {load}, Python {sys.version.split()[0]}"


def become_subreaper() -> bool:
    """Adopt orphaned descendants (the hook's detached children), so they can be reaped here.

    Linux only; returns False where it is not available.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_CHILD_SUBREAPER = 36
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap(block: bool = False) -> int:
    """Collect exited children (adopted orphans included); returns how many were reaped.

    With block=True, waits until no child is left.
    """
    n = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return n
        if pid == 0:
            return n
        n += 1
