"""`leasedns record`: journal one event given as arguments (the hook's six), then apply."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from leasedns import journal
from leasedns.commands import apply
from leasedns.commands.apply import ensure_dirs
from leasedns.config import Config
from leasedns.engine.state import State
from leasedns.errors import ConfigError, EventError
from leasedns.journal import identity, signing
from leasedns.model import MAX_TIME_US, MIN_TIME_US, Event, format_time, parse_time
from leasedns.sources.hook import make_event


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "record", help="journal one event given as arguments, then apply"
    )
    p.add_argument("event", help="commit, release or expiry")
    p.add_argument("ip")
    p.add_argument("mac")
    p.add_argument("client_name", nargs="?", default="")
    p.add_argument("host_decl", nargs="?", default="")
    p.add_argument("lease_secs", nargs="?", default="")
    p.add_argument(
        "--time",
        help="event time, ISO 8601 with zone (default: now); at most build.clock_skew_secs "
        "ahead, journal.max_lease_secs + journal.compact_grace_secs back",
    )
    p.add_argument("--no-apply", action="store_true", help="journal only, do not build")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace, cfg: Config, out: TextIO) -> int:
    """Exit 0: journaled (and built); 1: the build failed; 2: the event or its time refused."""
    try:
        t = parse_time(args.time) if args.time else None
    except ValueError as e:
        raise ConfigError(f"--time: {e}") from None
    ev_args = [args.event, args.ip, args.mac, args.client_name, args.host_decl, args.lease_secs]
    try:
        record(cfg, ev_args, t)
    except EventError as e:
        print(f"leasedns: record: {e}", file=sys.stderr)
        return 2
    if args.no_apply:
        return 0
    return 0 if apply.run(cfg).ok else 1


def record(
    cfg: Config, args: list[str], time_us: int | None = None, source: str = "record"
) -> Event:
    """Validate one event given as the hook's six arguments and journal it durably."""
    peer_dir = ensure_dirs(cfg)
    if time_us is not None:
        check_record_time(cfg, time_us, time.time_ns() // 1000)
    now_us = time.time_ns() // 1000
    ev = make_event(args, now_us if time_us is None else time_us, cfg.peer, source)
    # Read only: the apply that follows (or the next one) keeps what it folds in.
    with State.open(cfg, now_us // 1_000_000, keep=False) as state:
        (ev,) = state.stamp([ev])
    owner = identity.installation_id(cfg.state_dir, peer_dir)
    journal.append(peer_dir, [ev], owner=owner, key=signing.journal_key(cfg.state_dir))
    return ev


def check_record_time(cfg: Config, time_us: int, now_us: int) -> None:
    """Refuse an event time given by hand that no lease event can have (EventError).

    Ahead of now by more than the clock skew allowed, it would hold its name
    until that time; older than the longest lease plus the compaction grace, it
    could only ever be compacted away; outside 1970..2100 it cannot be kept.
    """
    lo = max(MIN_TIME_US, now_us - (cfg.max_lease_secs + cfg.compact_grace_secs) * 1_000_000)
    hi = min(MAX_TIME_US - 1, now_us + cfg.clock_skew_secs * 1_000_000)
    if not lo <= time_us <= hi:
        raise EventError(
            f"time {format_time(time_us)} is outside {format_time(lo)} .. {format_time(hi)}: "
            f"at most build.clock_skew_secs ({cfg.clock_skew_secs} s) ahead of now and "
            f"journal.max_lease_secs + journal.compact_grace_secs "
            f"({cfg.max_lease_secs + cfg.compact_grace_secs} s) before it"
        )
