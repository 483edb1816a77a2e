"""Compaction keeps a journal bounded: 10,000 clients renewing every 30 minutes for a week.

Simulates 336 half-hour steps. In each step every client renews (a commit with
a 3,600 s lease, at a random moment of the half hour; a small share of clients
leave with a release and a new client takes the address), appended with the real
leasedns.journal.append in batches as apply journals them; after the step the
same decision apply.maybe_compact makes is taken on the journal as read back by
leasedns.journal.read_peer (compact when it holds >= COMPACT_MIN_EVENTS events
and survivors * 2 <= events; keep = max_lease_secs 3,600 + grace 3,600), and
leasedns.journal.compact runs when it says so. The decision runs once per step,
after the whole round: the worst case for the peak (apply checks after every
batch, which can only compact earlier).

Reported: the most events and bytes the journal ever held, the final size, the
number of compactions, the total time. Judged: max events <= 2 x clients + one
round (the reference, clients, is the run's own parameter).

Then the build right after a compaction, at scale: bench_build's journals of
100,000 live bindings (two peers), a build that keeps the merge state, peer-a's
journal compacted as apply does it (journal.compact with the merge cache's
note), and the next build (load state, fold, resolve, render, save, in a fresh
process as bench_build measures it). Judged: that build <= 5 x tinydns-data on
the same data, measured in the same run, without a cold rebuild; and its data
byte-identical to a cold build's of the compacted journals.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import JOURNAL_KEY, Row, exit_code, find_program, fmt, machine_note, print_table

NAME = "compaction"
STEP = 1800  # seconds between renewals
TIME_BUDGET = 90.0  # seconds; slower runs print a profile
AFTER_TARGET = 5.0  # the build right after a compaction, x tinydns-data


def simulate(
    peer_dir: Path,
    clients: int,
    steps: int,
    batch: int,
    churn: float,
    max_lease: int,
    grace: int,
    seed: int = 5,
) -> dict[str, float]:
    from leasedns import journal
    from leasedns.commands import apply
    from leasedns.model import Event, Kind

    min_events = getattr(apply, "COMPACT_MIN_EVENTS", 1000)
    keep_us = (max_lease + grace) * 1_000_000
    rng = random.Random(seed)
    us = 1_000_000
    t0_us = (int(time.time()) - steps * STEP) * us
    macs = [
        f"02:00:00:{(c >> 16) & 255:02x}:{(c >> 8) & 255:02x}:{c & 255:02x}" for c in range(clients)
    ]
    ips = [f"10.{(c >> 16) & 255}.{(c >> 8) & 255}.{c & 255}" for c in range(clients)]
    names = [f"client-{c:05d}" for c in range(clients)]
    generation = [0] * clients
    held: list[Event] = []
    fig = {
        "max_events": 0,
        "max_bytes": 0,
        "compactions": 0,
        "appended": 0,
        "append_secs": 0.0,
        "read_secs": 0.0,
        "decide_secs": 0.0,
        "compact_secs": 0.0,
    }
    for step in range(steps):
        start = t0_us + step * STEP * us
        round_events = []
        for c in range(clients):
            t = start + rng.randrange(STEP * us)
            if rng.random() < churn:  # the client leaves; a new one gets the address
                round_events.append(
                    Event(Kind.RELEASE, t, ips[c], macs[c], names[c], "", None, "peer-a")
                )
                generation[c] += 1
                macs[c] = f"06:{generation[c] & 255:02x}" + macs[c][5:]
                names[c] = f"client-{c:05d}-{generation[c]}"
                t += rng.randrange(1, 60 * us)
            round_events.append(
                Event(Kind.COMMIT, t, ips[c], macs[c], names[c], "", 3600, "peer-a")
            )
        round_events.sort(key=lambda e: e.time_us)
        t = time.perf_counter()
        for i in range(0, len(round_events), batch):
            journal.append(peer_dir, round_events[i : i + batch], key=JOURNAL_KEY)
        fig["append_secs"] += time.perf_counter() - t
        fig["appended"] += len(round_events)
        now_us = start + STEP * us

        # What apply would have read: the journal's events (kept in step with the file here
        # instead of re-reading it every step; re-read after each compaction).
        held.extend(round_events)
        size = sum(p.stat().st_size for p in journal.segments(peer_dir))
        fig["max_events"] = max(fig["max_events"], len(held))
        fig["max_bytes"] = max(fig["max_bytes"], size)
        # apply.maybe_compact's decision
        t = time.perf_counter()
        compact = len(held) >= min_events and len(
            journal.survivors(held, now_us, keep_us)
        ) * 2 <= len(held)
        fig["decide_secs"] += time.perf_counter() - t
        if compact:
            t = time.perf_counter()
            journal.compact(peer_dir, now_us, keep_us, key=JOURNAL_KEY)
            fig["compact_secs"] += time.perf_counter() - t
            fig["compactions"] += 1
            t = time.perf_counter()
            held = journal.read_peer(peer_dir).events
            fig["read_secs"] += time.perf_counter() - t
    final = journal.read_peer(peer_dir)
    if sorted(final.events, key=Event.key) != sorted(held, key=Event.key):
        raise SystemExit("bench_compaction: the journal on disk differs from the events tracked")
    fig["final_events"] = len(final.events)
    fig["final_bytes"] = final.bytes
    fig["segments"] = final.segments
    fig["round"] = fig["appended"] / steps
    return fig


def after_compaction(live: int) -> list[Row]:
    """The build right after peer-a compacts its journal, against tinydns-data."""
    import functools

    import bench_build
    from leasedns import config, journal
    from leasedns.engine import cache

    tinydns_data = find_program("tinydns-data")
    if not tinydns_data:
        return [Row(NAME, "tinydns-data not installed (apt install tinydns)", 0, "n", ok=False)]
    us = 1_000_000
    with tempfile.TemporaryDirectory(prefix="leasedns-bench-compaction-") as name:
        tmp = Path(name)
        state, root = tmp / "state", tmp / "root"
        root.mkdir(parents=True)
        bench_build.generate(state / "journal", live, int(time.time()))
        path = bench_build.write_config(tmp, state, root, tinydns_data)
        cold, _ = bench_build.run_worker(path, tmp / "data.cold", "--worker-incr")
        cfg = config.load(str(path))
        t = time.perf_counter()
        done = journal.compact(
            cfg.journal_dir / cfg.peer,
            time.time_ns() // 1000,
            (cfg.max_lease_secs + cfg.compact_grace_secs) * us,
            cfg.clock_skew_secs * us,
            functools.partial(cache.note_compaction, cfg.state_dir),
            JOURNAL_KEY,
        )
        compact_secs = time.perf_counter() - t
        runs = []
        for r in range(2):
            if r:  # the same again: put the state back as it was before the first
                shutil.copyfile(tmp / "kept.db", state / cache.STATE_FILE)
            else:
                cache.load(state).close()  # type: ignore[union-attr]  # WAL folded in
                shutil.copyfile(state / cache.STATE_FILE, tmp / "kept.db")
            runs.append(bench_build.run_worker(path, tmp / "data.after", "--worker-incr")[0])
        after = min(runs, key=lambda f: f["total"])
        rebuilt = [f["rebuilt"] for f in runs if f["rebuilt"]]
        cache.discard(state)
        (state / cache.NOTES_FILE).unlink(missing_ok=True)
        check, _ = bench_build.run_worker(path, tmp / "data.check", "--worker-incr")
        same = (tmp / "data.after").read_bytes() == (tmp / "data.check").read_bytes()
        td = bench_build.time_tinydns_data(tinydns_data, tmp / "data.after", tmp, 3)
    ref = f"tinydns-data {fmt(td, 's')}"
    return [
        Row(
            NAME,
            f"peer-a's journal compacted ({done.before:,} -> {done.after:,} events, "
            f"{live:,} bindings; not judged)",
            compact_secs,
            "s",
        ),
        Row(
            NAME,
            f"cold build of the same journals (what every compaction cost before: "
            f"{check['new_events']:,} events read)",
            check["total"],
            "s",
            ref,
            check["total"] / td,
            summary=True,
        ),
        Row(
            NAME,
            f"build right after the compaction, {live:,} bindings: open and follow "
            f"{after['read']:.3f} s ({after['new_events']} events read), resolve+save "
            f"{after['merge']:.3f} s, publish {after['render']:.3f} s"
            + (f"; REBUILT: {rebuilt[0]}" if rebuilt else ""),
            after["total"],
            "s",
            ref,
            after["total"] / td,
            f"<= {AFTER_TARGET:g}x, not cold",
            after["total"] / td <= AFTER_TARGET and not rebuilt,
            summary=True,
        ),
        Row(
            NAME,
            f"data after the compaction == a cold build's ({cold['records']:,} records)",
            float(same),
            "n",
            target="1",
            ok=same,
        ),
    ]


def collect(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=336, help="half-hour steps (336 = a week)")
    ap.add_argument("--batch", type=int, default=1_000, help="events per journal.append")
    ap.add_argument(
        "--churn",
        type=float,
        default=0.0,
        help="share of clients replaced per step (a release, then a new MAC)",
    )
    ap.add_argument("--max-lease", type=int, default=3600, help="journal.max_lease_secs")
    ap.add_argument("--grace", type=int, default=3600, help="journal.compact_grace_secs")
    ap.add_argument("--profile", action="store_true", help="always print the profile")
    ap.add_argument(
        "--live",
        type=int,
        default=100_000,
        help="bindings for the build right after a compaction (0: skip it)",
    )
    ap.add_argument("--skip-week", action="store_true", help="only the build after a compaction")
    args = ap.parse_args(argv)
    after = after_compaction(args.live) if args.live else []
    if args.skip_week:
        return after

    def run(steps: int) -> tuple[dict[str, float], float]:
        with tempfile.TemporaryDirectory(prefix="leasedns-bench-compaction-") as tmp:
            t0 = time.perf_counter()
            fig = simulate(
                Path(tmp) / "journal" / "peer-a",
                args.clients,
                steps,
                args.batch,
                args.churn,
                args.max_lease,
                args.grace,
            )
            return fig, time.perf_counter() - t0

    fig, total = run(args.steps)
    if args.profile or total > TIME_BUDGET:
        # Profile a shorter run (profiling slows everything down): where the time goes.
        prof = cProfile.Profile()
        prof.enable()
        run(min(args.steps, 24))
        prof.disable()
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(25)
        print(
            f"total {total:.1f} s > {TIME_BUDGET:g} s budget; " if total > TIME_BUDGET else "",
            f"profile of {min(args.steps, 24)} steps (cumulative):",
            sep="",
        )
        print(out.getvalue())

    bound = 2 * args.clients + fig["round"]
    ref = f"2 x {args.clients:,} clients + a round of {fig['round']:,.0f}"
    mib = 2**20
    return [
        Row(
            NAME,
            f"events appended over {args.steps} steps ({args.clients:,} clients, churn "
            f"{args.churn:g} per step)",
            fig["appended"],
            "n",
        ),
        Row(
            NAME,
            "max events the journal ever held",
            fig["max_events"],
            "n",
            ref,
            fig["max_events"] / bound,
            f"<= {bound:,.0f}",
            fig["max_events"] <= bound,
        ),
        Row(NAME, "max bytes the journal ever held", fig["max_bytes"] / mib, "MiB", summary=True),
        Row(
            NAME,
            f"final journal: {fig['final_events']:,.0f} events, {fig['segments']:.0f} segment(s)",
            fig["final_bytes"] / mib,
            "MiB",
            summary=True,
        ),
        Row(NAME, "compactions", fig["compactions"], "n", summary=True),
        Row(
            NAME,
            f"total time (append {fig['append_secs']:.1f} s, re-read after compaction "
            f"{fig['read_secs']:.1f} s, decide {fig['decide_secs']:.1f} s, "
            f"compact {fig['compact_secs']:.1f} s; not judged)",
            total,
            "s",
            f"budget {TIME_BUDGET:g} s",
            total / TIME_BUDGET,
            summary=True,
        ),
        *after,
    ]


def main(argv: list[str] | None = None) -> int:
    rows = collect(sys.argv[1:] if argv is None else argv)
    print_table(f"journal compaction over a simulated week ({machine_note()})", rows)
    return exit_code(rows)


if __name__ == "__main__":
    sys.exit(main())
