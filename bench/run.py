"""Run every leasedns benchmark, then print a markdown summary for the README.

Each bench runs in its own interpreter (`python bench/X.py`), so memory
figures and imports do not leak from one into the next. Exit status: 0 when
every judged figure met its target and every bench exited 0, else 1.

    python bench/run.py [--only hook,build,...] [--skip parse] [--md FILE]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import ROWS_ENV, Row, load_rows, machine_note, markdown  # noqa: E402

# bench/bench_<name>.py, in this order
BENCHES = (
    "hook",
    "build",
    "burst",
    "parse",
    "leases",
    "load",
    "reconcile",
    "sync",
    "compaction",
    "rfc2136",
    "unbound",
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated benches to run (default: all)")
    ap.add_argument("--skip", default="", help="comma-separated benches to leave out")
    ap.add_argument("--md", help="also write the markdown summary to this file")
    args = ap.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(BENCHES)
    skipped = set(filter(None, args.skip.split(",")))

    rows: list[Row] = []
    failed: list[str] = []
    started = time.perf_counter()
    for name in chosen:
        script = HERE / f"bench_{name}.py"
        if name in skipped or not script.exists():
            continue
        with tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".jsonl") as f:
            t0 = time.perf_counter()
            print(f"\n### bench_{name}.py", flush=True)
            rc = subprocess.run(
                [sys.executable, str(script)], check=False, env={**os.environ, ROWS_ENV: f.name}
            ).returncode
            secs = time.perf_counter() - t0
            got = load_rows(f.name)
        if rc != 0:
            failed.append(f"bench_{name}.py (exit {rc})")
        judged = [r for r in got if r.ok is not None]
        if not got or (rc != 0 and not any(r.ok is False for r in judged)):
            # A bench that reports no rows or failed without saying why: its
            # exit status is its verdict.
            rows.append(
                Row(
                    name,
                    f"bench_{name}.py exit status (see its table above)",
                    rc,
                    "n",
                    target="0",
                    ok=rc == 0,
                )
            )
        rows.extend(r for r in got if r.summary or r.ok is not None)
        print(f"(bench_{name}.py: {secs:.1f} s, exit {rc})", flush=True)

    md = markdown(rows)
    total = time.perf_counter() - started
    print(f"\n## Summary ({machine_note()}; {total:.0f} s)\n")
    print(md)
    missed = [r for r in rows if r.ok is False]
    if args.md:
        Path(args.md).write_text(md + "\n")
    if missed or failed:
        print(
            f"\n{len(missed)} target(s) missed"
            + (f"; failed: {', '.join(failed)}" if failed else "")
        )
        return 1
    print("\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
