"""`leasedns apply`: spool -> journal, then merge, render, guard, publish (one build at a time)."""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

from leasedns import journal
from leasedns.config import Config
from leasedns.engine import cache as mergestate
from leasedns.engine import guard, store
from leasedns.engine import resolve as resolved
from leasedns.engine.rules import Record, Settings, stamp_runs
from leasedns.errors import EventError, GuardError, LeasednsError
from leasedns.fsutil import Runner, flocked, gc_paused, write_atomic
from leasedns.journal import holdings, identity, inbox
from leasedns.journal import sync as syncing
from leasedns.model import Event, format_time, make_event
from leasedns.outputs.tinydns import publish, published_dynamic, static_origin
from leasedns.sources import spool, statics

log = logging.getLogger("leasedns.apply")

BUILD_LOCK = "build.lock"
LAST_BUILD = "last-build.json"
REPORT_BLOCK = 16384


@dataclass(slots=True)
class Report:
    """What one apply did; saved as state_dir/last-build.json for `status`."""

    time: str = ""
    ok: bool = False
    error: str = ""
    ingested: int = 0
    rejected: int = 0
    waiting: int = 0  # incomplete spool files left for the next run
    events: int = 0
    records: int = 0
    dynamic: int = 0
    refused: int = 0
    changed: bool = False
    compiled: bool = False
    compile_secs: float = 0.0
    build_secs: float = 0.0
    compacted: str = ""
    synced: str = ""
    problems: list[str] = field(default_factory=list)
    state_saved: bool = True  # the merge state was kept (else the next build catches up)
    held_back: int = 0  # events dated past now + clock_skew_secs, not in effect yet
    held_until: str = ""  # the earliest of them
    adopted: str = ""  # partners whose pushed copy was taken from the inbox
    inbox_refused: list[str] = field(default_factory=list)  # copies refused (would lose events)
    recovered: int = 0  # own events appended again from a partner's copy (restored backup)


def ensure_dirs(cfg: Config) -> Path:
    """Create the state layout if missing; returns this peer's journal directory."""
    cfg.state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    cfg.spool_dir.mkdir(mode=0o770, parents=True, exist_ok=True)
    cfg.journal_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    peer_dir = cfg.journal_dir / cfg.peer
    peer_dir.mkdir(mode=0o750, exist_ok=True)
    return peer_dir


@contextmanager
def build_lock(cfg: Config) -> Iterator[None]:
    """One build at a time on this host; others wait their turn (and then coalesce)."""
    with flocked(cfg.state_dir / BUILD_LOCK):
        yield


def ingest(
    cfg: Config, report: Report, now_ns: int, state: mergestate.MergeState | None = None
) -> list[Event]:
    """Move valid spool events into this peer's journal; reject the invalid ones, keeping them.

    With the merge `state`, each commit is journaled with the start of the run
    of leases it renews (`Event.since`), which the `first` policy ranks by.
    """
    peer_dir = cfg.journal_dir / cfg.peer
    good: list[Event] = []
    done: list[Path] = []
    for item in spool.scan(cfg.spool_dir):
        if item.error:
            spool.reject(cfg.spool_dir, item, item.error)
            report.rejected += 1
            continue
        if item.size > spool.MAX_EVENT_BYTES:
            spool.reject(
                cfg.spool_dir,
                item,
                f"event file is {item.size} bytes; no hook writes "
                f"more than {spool.MAX_EVENT_BYTES}",
            )
            report.rejected += 1
            continue
        try:
            ev = make_event(spool.decode(item.data), item.mtime_ns // 1000, cfg.peer, "hook")
        except spool.Incomplete as e:
            if now_ns - item.mtime_ns < spool.INCOMPLETE_GRACE_NS:
                report.waiting += 1
                continue
            spool.reject(cfg.spool_dir, item, f"incomplete event ({e}): the hook was interrupted")
            report.rejected += 1
            continue
        except EventError as e:
            spool.reject(cfg.spool_dir, item, str(e))
            report.rejected += 1
            continue
        good.append(ev)
        done.append(item.path)
    if good and state is not None:
        good = stamp_runs(good, state.aggregates, cfg.default_lease_secs)
    if good:  # durable before the spool files go; refused in another installation's directory
        journal.append(peer_dir, good, owner=identity.installation_id(cfg.state_dir))
        spool.remove(done)
    report.ingested = len(good)
    return good


def build(
    cfg: Config,
    now: int,
    report: Report,
    force: bool = False,
    runner: Runner | None = None,
    state: mergestate.MergeState | None = None,
    st: statics.Statics | None = None,
) -> resolved.Built:
    """Merge every peer's journal with the static input and publish the result.

    The merge starts from the aggregates the last build kept
    (the merge state in state_dir, or `state` already refreshed), reads only the
    journal lines appended since, and resolves again only what they (and the
    time passed) changed.
    """
    t0 = time.monotonic()
    held, was = holdings.survey(cfg.journal_dir), holdings.load(cfg.state_dir)
    lost = holdings.regressions(was or {}, held)
    if lost:
        if not force:
            raise GuardError(holdings.refusal(lost, cfg.journal_dir))
        log.warning("--force: publishing although %s", "; ".join(lost.values()))
    if st is None:
        st = statics.load(cfg)
    for p in st.problems:
        log.warning("%s", p)
    report.problems.extend(st.problems)
    settings = Settings.from_config(cfg)
    try:
        previous_data: bytes | None = (cfg.tinydns_root / "data").read_bytes()
    except FileNotFoundError:
        previous_data = None
    with gc_paused():  # 100,000s of long-lived objects, no cycles: collections only cost time
        result, report.events, saved_digest = _merge_incremental(
            cfg, settings, st, now, state, report
        )
    up = result.update
    data = up.data
    report.dynamic = up.dynamic
    report.records = len(st.hosts) + up.dynamic
    report.refused = up.bindings - up.dynamic
    if not force:
        check_guard(result, previous_data, saved_digest, st, now, cfg.guard_fraction, cfg.guard_min)
    outcome = publish(
        cfg.tinydns_root,
        data,
        cfg.tinydns_data,
        **({"runner": runner} if runner else {}),
        origin=functools.partial(static_origin, st),
    )
    report.changed, report.compiled = outcome.changed, outcome.compiled
    if held != was:
        holdings.save(cfg.state_dir, held)  # published: what the journals hold is the new floor
    report.compile_secs = round(outcome.compile_secs, 4)
    report.build_secs = round(time.monotonic() - t0, 4)
    return result


def check_guard(
    result: resolved.Built,
    previous_data: bytes | None,
    saved_digest: bytes,
    st: statics.Statics,
    now: int,
    fraction: float,
    minimum: int,
) -> None:
    """The mass-delete guard on a build's result against the data file it replaces."""
    if (
        result.update.before is not None
        and previous_data is not None
        and saved_digest
        and resolved.digest(previous_data) == saved_digest
        and not resolved.static_mark_clash(st)
    ):
        # The data file is what the saved outcome rendered: the losses follow from what
        # changed since (see `resolved.update`), without reading it back.
        guard.decide(
            [name for name, _ip, _ttd in result.update.lost],
            result.update.before,
            fraction,
            minimum,
        )
        return
    previous = published_dynamic(previous_data) if previous_data is not None else []
    kept = [Record(n, ip, None, False, False) for n, ip in result.update.resolved.winner.items()]
    guard.check(previous, kept, result.agg.latest, now, fraction, minimum)


def _merge_incremental(
    cfg: Config,
    settings: Settings,
    st: statics.Statics,
    now: int,
    state: mergestate.MergeState | None = None,
    report: Report | None = None,
) -> tuple[resolved.Built, int, bytes]:
    """Merge from the saved aggregates plus the new journal lines and the saved resolve's
    outcome; keep both again. Also returns the digest of the data the saved outcome rendered.

    `report` learns whether the state was saved and which events wait for their time."""
    owner = mergestate.owner_of(cfg)
    if state is None:
        state = mergestate.load(cfg.state_dir, owner)
    state, progress = mergestate.refresh(cfg.journal_dir, state, settings, now)
    if progress.rebuilt:
        log.info(
            "merge state rebuilt from every journal line (%d events): %s",
            state.events,
            progress.rebuilt,
        )
    saved = state.resolved
    saved_digest = saved.data_digest if saved is not None else b""
    up = resolved.update(
        saved, state.touched, state.aggregates, st, settings, cfg.ttl, now, state.verdicts
    )
    if up.full and saved is not None:
        log.info("resolving every binding again: %s", up.full)
    state.resolved, state.touched = up.resolved, set()
    # Saved before the guard and publishing: it describes the journals, whatever is done
    # with the result.
    failed = mergestate.save(cfg.state_dir, state, owner=owner)
    if report is not None:
        _state_report(report, state, failed, cfg.clock_skew_secs)
    return (
        resolved.Built(up, state.aggregates, st, settings, now, state.verdicts),
        state.events,
        saved_digest,
    )


def _state_report(report: Report, state: mergestate.MergeState, failed: str, skew: int) -> None:
    """Tell (report, so status warns) a merge state not saved and events held back."""
    if failed:
        report.state_saved = False
        report.problems.append(
            f"merge state not saved ({failed}); the next build catches up from the last "
            "one saved, or from every journal line (check the state directory's disk)"
        )
        return
    n, first = mergestate.held_back(state)
    if n and first is not None:
        report.held_back, report.held_until = n, format_time(first)
        report.problems.append(
            f"{n} journal event(s) dated more than {skew} s ahead are held back until their "
            f"time, the first {report.held_until} (a peer's clock ahead, or record --time?)"
        )
        log.warning("%s", report.problems[-1])


def log_refusals(result: resolved.Built, new: list[Event]) -> None:
    """Log, once (when their event arrives), the bindings whose name is not published."""
    for r in result.fresh_refusals(set(new)):
        b = r.binding
        log.warning("lease %s %s (peer %s): name not published: %s", b.ip, b.mac, b.peer, r.reason)


def run(
    cfg: Config,
    *,
    force: bool = False,
    coalesce: bool = False,
    runner: Runner | None = None,
    st: statics.Statics | None = None,
) -> Report:
    """One apply: wait for the build lock, coalesce, ingest the spool, build, record the outcome.

    `st`: the static input, when the caller has just read it (reconcile)."""
    ensure_dirs(cfg)
    report = Report()
    with build_lock(cfg):
        if coalesce and cfg.coalesce_secs:
            time.sleep(cfg.coalesce_secs)  # let a burst of events gather into this build
        # Drop the flag before reading the spool: a hook that writes after this
        # point creates it again and so starts the follow-up build.
        with suppress(FileNotFoundError):
            (cfg.spool_dir / spool.DUE_FLAG).unlink()
        now_ns = time.time_ns()
        report.time = format_time(now_ns // 1000)
        new: list[Event] = []
        state = None
        try:
            receive(cfg, report, now_ns // 1000)
            for attempt in (1, 2):
                try:
                    # The merge state (aggregates of every journal line so far) serves both
                    # the run stamps of new commits and the incremental build.
                    state, _ = mergestate.refresh(
                        cfg.journal_dir,
                        mergestate.load(cfg.state_dir, mergestate.owner_of(cfg)),
                        Settings.from_config(cfg),
                        now_ns // 1_000_000_000,
                    )
                    new += ingest(cfg, report, now_ns, state)
                    result = build(cfg, now_ns // 1_000_000_000, report, force, runner, state, st)
                    log_refusals(result, new)
                    break
                except sqlite3.Error as e:
                    # A damaged cache: drop it and build again from the journals alone.
                    if attempt == 2 or not store.damaged(e):
                        raise LeasednsError(f"{cfg.state_dir}: merge state: {e}") from None
                    log.warning("merge state unreadable (%s); rebuilding it", e)
                    mergestate.drop(state)
                    mergestate.discard(cfg.state_dir)
                    state = None
            report.ingested = len(new)
            report.ok = True
            assert state is not None
            maybe_compact(cfg, report, state, now_ns // 1000)
        except (LeasednsError, OSError) as e:
            report.error = str(e) or f"{e.__class__.__name__} (no message)"
            log.error("%s", report.error)
        except Exception as e:  # a bug: leave a trace in the report (status) and the log
            report.error = f"{e.__class__.__name__}: {e} (a bug; please report it with the log)"
            log.exception("apply failed: %s", report.error)
        finally:
            if state is not None:
                state.close()
            save_report(cfg, report)
    if cfg.partners and (
        report.ingested or report.recovered or report.inbox_refused or syncing.needs_retry(cfg)
    ):
        # After the build, outside its lock: a slow or failing partner never
        # delays or breaks publishing here.
        results = syncing.run(cfg, wait=False)
        report.synced = (
            ", ".join(f"{r.partner}: {'ok' if r.ok else r.error}" for r in results)
            or "deferred to the sync already running"
        )
    log.info(
        "apply: %d new events, %d rejected, %d records (%d dynamic), %s",
        report.ingested,
        report.rejected,
        report.records,
        report.dynamic,
        "compiled" if report.compiled else "unchanged" if report.ok else "FAILED",
    )
    return report


def receive(cfg: Config, report: Report, now_us: int) -> None:
    """Take what partners pushed into the inbox (see inbox.py), before the build reads it.

    A refused copy, or own events recovered from a partner's copy, also make this
    apply sync: the partner gets this peer's copy to recover from, or the events."""
    try:
        journal.claim(cfg.journal_dir / cfg.peer, identity.installation_id(cfg.state_dir))
    except OSError as e:  # a full disk: the build can still read; appending claims again
        report.problems.append(f"{cfg.journal_dir / cfg.peer}: cannot record its owner: {e}")
        log.warning("%s", report.problems[-1])
    got = inbox.receive(cfg, now_us)
    report.adopted = ", ".join(got.adopted)
    report.inbox_refused = got.refused
    report.recovered = got.recovered
    report.problems.extend(got.refused + got.problems)


COMPACT_MIN_EVENTS = 1000
COMPACT_STATE = "compact.json"


def maybe_compact(cfg: Config, report: Report, state: mergestate.MergeState, now_us: int) -> None:
    """Compact this peer's journal once most of it is superseded or expired.

    Reading the own journal to find out costs a full parse, so it is done only
    when the journal holds twice the events it held at the last look.
    """
    held = sum(m.events for m in state.marks.get(cfg.peer, {}).values())
    path = cfg.state_dir / COMPACT_STATE
    try:
        looked_at = int(json.loads(path.read_text())["looked_at"])
    except (OSError, ValueError, KeyError, TypeError):
        looked_at = 0
    if held < max(COMPACT_MIN_EVENTS, 2 * looked_at):
        return
    own = journal.read_peer(cfg.journal_dir / cfg.peer)
    keep_us = (cfg.max_lease_secs + cfg.compact_grace_secs) * 1_000_000
    skew_us = cfg.clock_skew_secs * 1_000_000
    survivors = len(journal.survivors(own.events, now_us, keep_us, skew_us))
    if survivors * 2 <= len(own.events):
        # The merge cache keeps a note of it, and the next build follows it instead of
        # reading every journal line again (see engine.cache.note_compaction).
        done = journal.compact(
            cfg.journal_dir / cfg.peer,
            now_us,
            keep_us,
            skew_us,
            functools.partial(mergestate.note_compaction, cfg.state_dir),
        )
        report.compacted = f"{done.before} -> {done.after} events"
        looked_at = done.after
    else:
        looked_at = len(own.events)
    write_atomic(path, json.dumps({"looked_at": looked_at}).encode(), 0o640)


def save_report(cfg: Config, report: Report) -> None:
    """Keep the last build's outcome (and the last good one) for `status`."""
    path = cfg.state_dir / LAST_BUILD
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        previous = {}
    data = {
        "last": asdict(report),
        "last_ok": asdict(report) if report.ok else previous.get("last_ok"),
    }
    text = json.dumps(data, indent=1)
    # Padded to a fixed size, so that on a full disk the report can still be
    # overwritten in place (its blocks are already there) and `status` tells.
    blob = (text + " " * (-(len(text) + 1) % REPORT_BLOCK) + "\n").encode()
    try:
        write_atomic(path, blob, 0o640)
    except OSError as e:
        try:
            fd = os.open(path, os.O_WRONLY)
            try:
                if os.fstat(fd).st_size != len(blob):
                    raise
                os.pwrite(fd, blob, 0)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            log.error("%s: cannot save the build report: %s", path, e.strerror)


def load_report(cfg: Config) -> dict[str, object]:
    """The saved outcome of the last builds ({} when none ran yet)."""
    try:
        data = json.loads((cfg.state_dir / LAST_BUILD).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


# The command line's part (cli.py parses, then calls main). Imported here, not at the top, to keep
# the command line apart from the build above.
import argparse  # noqa: E402
from typing import Any, TextIO  # noqa: E402


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "apply", help="journal spooled events, merge all peers, publish data.cdb"
    )
    p.add_argument(
        "--force", action="store_true", help="publish even if the mass-delete guard objects"
    )
    p.add_argument("--from-hook", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(run=main)
    return p


def main(args: argparse.Namespace, cfg: Config, out: TextIO) -> int:
    """`leasedns apply`: one build and a line saying what it did (none from the hook, with -q
    or when it failed: the log says why). Exit 0 built, 1 failed."""
    report = run(cfg, force=args.force, coalesce=args.from_hook)
    if report.ok and not args.from_hook and not args.quiet:
        out.write(
            f"{report.ingested} new events, {report.rejected} rejected, "
            f"{report.records} records ({report.dynamic} dynamic), "
            f"{report.refused} names refused, "
            f"{'compiled' if report.compiled else 'data unchanged'}\n"
        )
    return 0 if report.ok else 1
