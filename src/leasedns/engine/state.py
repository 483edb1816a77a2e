"""The engine's state: one object owns the merge cache of a state directory.

`State.open` reads the cache kept by the last build (`cache`) and catches up
with the journals once; `stamp` dates new commits' runs from it, `journaled`
folds in what this peer just appended, `advance` brings the outcome to `now`
and returns what changed, `snapshot` gives show, check and reconcile the same
outcome without keeping it. A damaged cache is thrown away and the state is
built again from the journals inside these methods: no sqlite3 error leaves
this module.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from leasedns import journal
from leasedns.config import Config
from leasedns.engine import cache, resolve, store
from leasedns.engine.rules import Aggregates, Result, stamp_runs, static_records
from leasedns.errors import LeasednsError
from leasedns.model import Desired, Event, Refusal, Settings, Statics

log = logging.getLogger("leasedns.engine")

T = TypeVar("T")


@dataclass(slots=True)
class Health:
    """What the state has to say about itself after a build (for the report and `status`)."""

    rebuilt: str = ""  # why the cache was rebuilt from every journal line ("" = incremental)
    read_events: int = 0  # journal events read (folded in or held back)
    saved: str = ""  # "" or why the cache could not be saved (the next build catches up)
    held_back: int = 0  # events dated past now + clock skew, not in effect yet
    held_until: int | None = None  # microseconds: the earliest of them
    problems: list[str] = field(default_factory=list)  # journal lines that did not parse


class State:
    """The merge cache of `cfg.state_dir`, caught up with `cfg.journal_dir` at `now`.

    Use as a context manager (or call `close`). With `keep=False` nothing is
    written back: show, check and reconcile read the state beside apply, as
    any user who can read it.
    """

    def __init__(
        self,
        journal_dir: Path,
        state_dir: Path,
        settings: Settings,
        now: int,
        *,
        peer: str = "",
        owner: str = "",
        keep: bool = True,
        limits: journal.Limits = journal.LIMITS,
    ) -> None:
        self.journal_dir, self.state_dir, self.settings = journal_dir, state_dir, settings
        self.now, self.peer, self.owner, self.keep = now, peer, owner, keep
        self.limits = limits
        self.health = Health()
        self._c: cache.MergeState = cache.MergeState()
        self._guarded(self._catch_up)

    @classmethod
    def open(cls, cfg: Config, now: int, keep: bool = True) -> State:
        """The state of this peer's state directory (`cfg.state_dir`)."""
        return cls(
            cfg.journal_dir,
            cfg.state_dir,
            Settings.from_config(cfg),
            now,
            peer=cfg.peer,
            owner=cache.owner_of(cfg),
            keep=keep,
            limits=journal.Limits.of(cfg),
        )

    def __enter__(self) -> State:
        return self

    def __exit__(
        self,
        _t: type[BaseException] | None,
        _e: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._c.close()

    # --- the steps of a build -------------------------------------------------------------

    def stamp(self, events: Iterable[Event]) -> list[Event]:
        """New events with the start of the run of leases each commit renews (`Event.since`)."""
        return self._guarded(
            lambda: stamp_runs(events, self._c.aggregates, self.settings.default_lease_secs)
        )

    def journaled(self) -> None:
        """Fold in the lines this peer just appended to its own journal (only that journal
        is looked at again: the others were caught up with when the state was opened)."""
        self._guarded(lambda: self._refresh(only=self.peer))

    def advance(self, statics: Statics) -> resolve.Update:
        """The outcome at `now`, brought up to date from the last one kept, and the changes
        since; kept again (unless opened with keep=False) before anything is published: it
        describes the journals, whatever is done with the result."""
        return self._guarded(lambda: self._advance(statics))

    def snapshot(self, statics: Statics) -> Result:
        """What the merge rules decide at `now`: records, live bindings, refusals (kept only
        when this state keeps what it computes)."""
        up = self._guarded(lambda: self._advance(statics))
        return self._guarded(
            lambda: resolve.result_of(up.resolved, self._c.aggregates, statics, self.settings)
        )

    def outcome(self, statics: Statics) -> tuple[resolve.Update, Aggregates]:
        """The outcome at `now` and the aggregates it was computed from (reconcile)."""
        up = self._guarded(lambda: self._advance(statics))
        return up, self._c.aggregates

    def fresh_refusals(self, up: resolve.Update, new: Iterable[Event]) -> list[Refusal]:
        """The refusals of the bindings `new` commits start (logged once, when they arrive)."""
        return self._guarded(
            lambda: resolve.fresh_refusals(up.resolved, self._c.aggregates, self.settings, new)
        )

    @property
    def known_ips(self) -> Collection[str]:
        """The addresses some commit speaks of (their records' removal is explained)."""
        return self._c.aggregates.latest.keys()

    def desired(self, up: resolve.Update, statics: Statics) -> Desired:
        """The whole outcome of `up`, for an output that serves it from scratch."""
        res, s = up.resolved, self.settings
        return Desired(
            static_records(statics, s),
            lambda: self._guarded(lambda: resolve.dynamic_records(res, statics, s)),
            self.now,
            self.seen,
        )

    def seen(self, ip: str) -> int:
        """The newest event time (microseconds) the journals hold for `ip`: its greatest
        commit, or the release or expiry that ended it (0: none)."""

        def step() -> int:
            agg = self._c.aggregates
            r = agg.latest.get(ip)
            return 0 if r is None else max(r.t, agg.ends.get((ip, r.mac), 0))

        return self._guarded(step)

    @property
    def cache(self) -> cache.MergeState:
        """The cache itself (compaction moves its marks along)."""
        return self._c

    @property
    def own_events(self) -> int:
        """Events of this peer's journal folded in (compaction looks at twice as many)."""
        return sum(m.events for m in self._c.marks.get(self.peer, {}).values())

    @property
    def events(self) -> int:
        """Journal events folded in (duplicates included), as a cold read would count them."""
        return self._c.events

    # --- inside ---------------------------------------------------------------------------

    def _catch_up(self) -> None:
        loaded = cache.load(self.state_dir, self.owner or None)
        self._c = loaded if loaded is not None else cache.MergeState()
        self._refresh(cold=loaded is None)

    def _refresh(self, cold: bool = False, only: str | None = None) -> None:
        state, progress = cache.refresh(
            self.journal_dir, None if cold else self._c, self.settings, self.now, only, self.limits
        )
        self._c = state
        if progress.rebuilt and not cold:
            log.info(
                "merge state rebuilt from every journal line (%d events): %s",
                state.events,
                progress.rebuilt,
            )
        if progress.rebuilt:
            self.health.rebuilt = progress.rebuilt
        self.health.problems.extend(progress.problems)
        self.health.read_events += progress.new_events

    def _advance(self, statics: Statics) -> resolve.Update:
        c = self._c
        up = resolve.update(
            c.resolved,
            c.touched,
            c.aggregates,
            statics,
            self.settings,
            self.settings.ttl,
            self.now,
            c.verdicts,
        )
        if up.full and c.resolved is not None:
            log.info("resolving every binding again: %s", up.full)
        if self.keep:
            c.resolved, c.touched = up.resolved, set()
            self.health.saved = cache.save(self.state_dir, c, owner=self.owner)
            n, first = cache.held_back(c)
            self.health.held_back, self.health.held_until = n, first
        return up

    def _guarded(self, step: Callable[[], T]) -> T:
        """Run one step; a cache SQLite finds damaged is thrown away, the state built again
        from the journals, and the step run once more. Any other SQLite error (a full disk,
        an I/O error) is a LeasednsError naming the file."""
        for attempt in (1, 2):
            try:
                return step()
            except sqlite3.Error as e:
                if attempt == 2 or not store.damaged(e):
                    raise LeasednsError(
                        f"{self.state_dir / cache.STATE_FILE}: merge state: {e}"
                    ) from None
                log.warning("merge state unreadable (%s); rebuilding it", e)
                cache.drop(self._c)
                cache.discard(self.state_dir)
                self._c = cache.MergeState()
                self._refresh(cold=True)
                self.health.rebuilt = f"merge state damaged ({e})"
        raise AssertionError("unreachable")
