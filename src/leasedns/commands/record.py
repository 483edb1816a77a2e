"""`leasedns record`: journal one event given as arguments (the hook's six), then apply."""

from __future__ import annotations

import time

from leasedns import journal
from leasedns.commands.apply import ensure_dirs
from leasedns.config import Config
from leasedns.engine import cache as mergestate
from leasedns.engine.rules import Settings, stamp_runs
from leasedns.errors import EventError
from leasedns.journal import identity
from leasedns.model import MAX_TIME_US, MIN_TIME_US, Event, format_time, make_event


def record(
    cfg: Config, args: list[str], time_us: int | None = None, source: str = "record"
) -> Event:
    """Validate one event given as the hook's six arguments and journal it durably."""
    peer_dir = ensure_dirs(cfg)
    if time_us is not None:
        check_record_time(cfg, time_us, time.time_ns() // 1000)
    ev = make_event(args, time.time_ns() // 1000 if time_us is None else time_us, cfg.peer, source)
    state, _ = mergestate.refresh(
        cfg.journal_dir,
        mergestate.load(cfg.state_dir, mergestate.owner_of(cfg)),
        Settings.from_config(cfg),
    )
    (ev,) = stamp_runs([ev], state.aggregates, cfg.default_lease_secs)
    journal.append(peer_dir, [ev], owner=identity.installation_id(cfg.state_dir))
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
