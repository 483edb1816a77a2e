"""`leasedns status`: spool backlog, journals per peer, last build; monitoring exit codes."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from leasedns import journal
from leasedns.commands.apply import load_report, published_before
from leasedns.config import Config
from leasedns.journal import holdings, inbox
from leasedns.journal import sync as syncing
from leasedns.model import format_time, parse_time
from leasedns.sources import spool

BACKLOG_WARN_SECS = 300
TORN_WARN_SECS = 60


@dataclass(slots=True)
class Status:
    """A snapshot of this peer's state, and how worried to be (0 ok, 1 warning, 2 critical)."""

    spool_files: int = 0
    spool_oldest_secs: float | None = None
    rejected: int = 0
    apply_due_secs: float | None = None
    peers: dict[str, dict[str, object]] = field(default_factory=dict)
    last_build: dict[str, object] = field(default_factory=dict)
    last_ok: dict[str, object] = field(default_factory=dict)
    partners: dict[str, dict[str, object]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    critical: list[str] = field(default_factory=list)  # problems that make the level 2
    level: int = 0


def gather(cfg: Config, now: float | None = None) -> Status:
    """Read the state directories (never writes)."""
    now = time.time() if now is None else now
    st = Status()
    items = spool.scan(cfg.spool_dir)
    st.spool_files = len(items)
    if items:
        st.spool_oldest_secs = round(now - items[0].mtime_ns / 1e9, 1)
    st.rejected = spool.rejected_count(cfg.spool_dir)
    with contextlib.suppress(FileNotFoundError):
        st.apply_due_secs = round(now - os.stat(cfg.spool_dir / spool.DUE_FLAG).st_mtime, 1)
    own_last = None
    limits = journal.Limits.of(cfg)
    for name, pj in journal.read_all(cfg.journal_dir, limits).items():
        last = pj.last_time_us
        listed: list[tuple[int, int, int]] = []
        with contextlib.suppress(journal.Refused):  # read_all said why
            listed = journal.sizes(cfg.journal_dir / name, limits)
        updated = max((mtime / 1e9 for _n, _size, mtime in listed), default=None)
        st.peers[name] = {
            "events": len(pj.events),
            "bytes": pj.bytes,
            "segments": pj.segments,
            "last_event": format_time(last) if last is not None else "",
            "updated": format_time(int(updated * 1e6)) if updated else "",
            "problems": len(pj.problems),
            "torn": pj.torn,
        }
        st.problems.extend(pj.problems)
        if pj.bytes > limits.journal_bytes // 2:
            # Partners refuse a copy over the bound, and readers a segment over it.
            st.problems.append(
                f"journal {name}: {pj.bytes} bytes, over half of journal.max_bytes "
                f"({limits.journal_bytes}); raise it on every peer before it is reached"
            )
        if pj.torn and updated is not None and now - updated > TORN_WARN_SECS:
            # A write in progress ends within milliseconds; this one was cut short.
            st.problems.append(
                f"journal {name}: {pj.torn} segment(s) end in a torn line, unchanged for "
                f"{now - updated:.0f} s (a write cut short); the next append ends it as a bad line"
            )
        if name == cfg.peer:
            own_last = last
        if last is not None and last / 1e6 > now + cfg.clock_skew_secs:
            st.problems.append(
                f"peer {name}: newest event is {last / 1e6 - now:.0f} s in the "
                f"future (clock skew over {cfg.clock_skew_secs} s?)"
            )
    # A journal that lost what the last published build read, or the floor that says what it
    # read: apply refuses to build.
    floor = holdings.floor(cfg.state_dir, published_before(cfg))
    if floor.lost:
        st.critical.append(
            f"{floor.lost}: apply refuses to publish until it is back, or `leasedns apply "
            "--force` makes what the journals hold now the guard's floor"
        )
    gone = holdings.regressions(floor.bar, holdings.survey(cfg.journal_dir, limits))
    for name, why in gone.items():
        empty = {"events": 0, "bytes": 0, "segments": 0, "last_event": "", "problems": 0}
        st.peers.setdefault(name, {**empty, "updated": "", "torn": 0})
        st.peers[name]["went_back"] = why
        st.critical.append(f"journal {name}: {why}; apply refuses to publish until it is back")
    saved_sync = syncing.load(cfg)
    for p in cfg.partners:
        res = dict(saved_sync.get(p.name, {}))
        last_ok = str(res.get("last_ok") or "")
        lag = 0.0
        if own_last is not None:
            try:
                synced_us = parse_time(last_ok) if last_ok else 0
            except ValueError:  # a damaged sync state: as if never synced
                synced_us, last_ok = 0, ""
            lag = max(0.0, (own_last - synced_us) / 1e6) if synced_us < own_last else 0.0
        never = not res.get("time")
        res["lag_secs"] = round(lag, 1) if last_ok else None
        st.partners[p.name] = res
        if never:
            st.problems.append(
                f"sync to {p.name}: never synced yet (apply syncs when it is due; "
                "or run `leasedns sync`)"
            )
        elif not res.get("ok"):
            st.problems.append(
                f"sync to {p.name} failing: {res.get('error') or 'no reason recorded'}"
            )
    # Copies a partner pushed that would have lost events here, and own events recovered.
    refused, recovered = inbox.status_problems(cfg.state_dir, int(now * 1e6))
    st.critical.extend(refused)
    st.problems.extend(recovered)
    saved = load_report(cfg)
    lb, lb_ok = saved.get("last"), saved.get("last_ok")  # a damaged file: neither
    st.last_build = dict(lb) if isinstance(lb, dict) else {}
    st.last_ok = dict(lb_ok) if isinstance(lb_ok, dict) else {}
    if st.last_build.get("state_saved") is False:
        st.problems.append(
            "the last build could not save the merge state; the next one catches up or builds "
            "cold (see the state directory's disk)"
        )
    if st.last_build.get("held_back"):
        st.problems.append(
            f"{st.last_build['held_back']} journal event(s) dated ahead of the clock are held "
            f"back until their time, the first {st.last_build.get('held_until')}"
        )
    st.level = assess(st)
    return st


def assess(st: Status) -> int:
    """0 ok, 1 warning (backlog, rejected events, journal damage), 2 critical (build failing)."""
    if (st.last_build and not st.last_build.get("ok")) or st.critical:
        return 2
    if any(p.get("ok") is False or p.get("lag_secs") is None for p in st.partners.values()):
        return 1
    if (st.spool_oldest_secs or 0) > BACKLOG_WARN_SECS or st.rejected or st.problems:
        return 1
    if (st.apply_due_secs or 0) > BACKLOG_WARN_SECS:
        return 1
    return 0


def as_text(cfg: Config, st: Status) -> str:
    """A short report for people."""
    word = ("OK", "WARNING", "CRITICAL")[st.level]
    out = [f"leasedns {word}: peer {cfg.peer}, spool {cfg.spool_dir}"]
    oldest = f", oldest {st.spool_oldest_secs}s" if st.spool_oldest_secs is not None else ""
    out.append(f"spool: {st.spool_files} waiting{oldest}, {st.rejected} rejected")
    if st.apply_due_secs is not None:
        out.append(f"apply due since {st.apply_due_secs}s")
    for name, p in sorted(st.peers.items()):
        out.append(
            f"journal {name}: {p['events']} events, {p['bytes']} bytes in {p['segments']} "
            f"segments, last event {p['last_event'] or 'never'}"
            + (f", {p['problems']} bad lines" if p["problems"] else "")
            + (", LOST what the last build read (see CRITICAL)" if p.get("went_back") else "")
        )
    for name, p in sorted(st.partners.items()):
        if not p.get("time"):
            out.append(f"sync {name}: never synced")
            continue
        state = "ok" if p.get("ok") else f"FAILED: {p.get('error') or 'no reason recorded'}"
        lag = p.get("lag_secs")
        out.append(
            f"sync {name}: {state} at {p.get('time')}, last ok {p.get('last_ok') or 'never'}"
            + (f", lag {lag}s" if lag is not None else "")
        )
    for problem in st.critical:
        out.append(f"CRITICAL: {problem}")
    for problem in st.problems[:10]:
        out.append(f"problem: {problem}")
    lb = st.last_build
    if lb:
        reason = lb.get("error") or "no reason recorded (see the log)"
        state = "ok" if lb.get("ok") else f"FAILED: {reason}"
        out.append(
            f"last build {lb.get('time')}: {state}; {lb.get('records')} records "
            f"({lb.get('dynamic')} dynamic), {lb.get('refused')} names refused, "
            f"{'compiled' if lb.get('compiled') else 'no compile needed'}"
            + (f"; then synced: {lb.get('synced')}" if lb.get("synced") else "")
        )
        out += output_lines(lb.get("outputs"), lb.get("output_notes"))
        if not lb.get("ok") and st.last_ok:
            out.append(f"last good build {st.last_ok.get('time')}")
    else:
        out.append("no build yet")
    return "\n".join(out) + "\n"


NOTES_SHOWN = 5  # per output; the build report and the log hold them all


def output_lines(outputs: object, notes: object = None) -> list[str]:
    """One line per output of the last build: `ok`, or `FAILED:` and why (its last publish;
    none when the build failed before publishing, or a report from before outputs), then what
    its publish reported (names it left alone and why, data its server had lost)."""
    if not isinstance(outputs, dict):
        return []
    noted = notes if isinstance(notes, dict) else {}
    lines = []
    for name, outcome in outputs.items():
        why = str(outcome).removeprefix(f"{name}: ")
        lines.append(f"output {name}: {'ok' if outcome == 'ok' else 'FAILED: ' + why}")
        said = noted.get(name)
        said = [str(n) for n in said] if isinstance(said, list) else []
        lines += [f"  note: {str(n).removeprefix(f'{name}: ')}" for n in said[:NOTES_SHOWN]]
        if len(said) > NOTES_SHOWN:
            lines.append(f"  note: and {len(said) - NOTES_SHOWN} more (see the log)")
    return lines


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "status", help="spool, journals per peer, last build (exit 0/1/2)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace, cfg: Config, out: TextIO) -> int:
    """Exit 0 ok, 1 warning, 2 critical (for monitoring)."""
    st = gather(cfg)
    out.write(json.dumps(asdict(st), indent=1) + "\n" if args.json else as_text(cfg, st))
    return st.level
