"""`leasedns apply`: take the inbox, journal the spool, advance the engine, guard, publish."""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from leasedns import journal, outputs
from leasedns.config import Config
from leasedns.engine import cache as mergestate
from leasedns.engine import guard
from leasedns.engine import resolve as resolved
from leasedns.engine.state import State
from leasedns.errors import EventError, GuardError, LeasednsError, PublishError
from leasedns.fsutil import Runner, flocked, gc_paused, write_atomic
from leasedns.journal import holdings, identity, inbox, signing
from leasedns.journal import sync as syncing
from leasedns.model import Changes, Desired, Event, Serving, Statics, format_time
from leasedns.sources import spool
from leasedns.sources.hook import make_event
from leasedns.sources.statics import load as load_statics

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
    # Each output's name -> "ok", or why it failed (its last publish; for `status`).
    outputs: dict[str, str] = field(default_factory=dict)
    # Each output's name -> what its publish reported (names it left alone and why, what it
    # found its server had lost and restored); also in `problems`. `status` shows them.
    output_notes: dict[str, list[str]] = field(default_factory=dict)


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


def ingest(cfg: Config, report: Report, now_ns: int, state: State) -> list[Event]:
    """Move valid spool events into this peer's journal; reject the invalid ones, keeping them.

    Each commit is journaled with the start of the run of leases it renews
    (`Event.since`, from the engine's state), which the `first` policy ranks by.
    """
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
    if good:  # durable before the spool files go; refused in another installation's directory
        good = state.stamp(good)
        owner = identity.installation_id(cfg.state_dir, cfg.journal_dir / cfg.peer)
        key = signing.journal_key(cfg.state_dir)
        journal.append(cfg.journal_dir / cfg.peer, good, owner=owner, key=key)
        state.journaled()
        spool.remove(done)
    report.ingested = len(good)
    return good


def build(
    cfg: Config,
    state: State,
    statics: Statics,
    report: Report,
    force: bool = False,
    runner: Runner | None = None,
) -> resolved.Update:
    """Advance the state to its `now`, guard the changes, publish them: each stage once.

    The engine's state has caught up with the journals (once, when opened) and
    folded in what this apply journaled; `advance` resolves again only what
    that and the time passed changed, and returns the changes since the outcome
    it started from.
    """
    t0 = time.monotonic()
    held, floor = check_journals(cfg, force)
    # A fresh state directory: an empty floor is in place before the first publish, so that
    # a crash between that publish and saving its floor is not taken for a lost floor.
    fresh = floor.held is None and not floor.lost
    if fresh and (why := holdings.save(cfg.state_dir, {})):
        raise LeasednsError(f"{why}; nothing published (the guard needs its floor)")
    for p in statics.problems:
        log.warning("%s", p)
    report.problems.extend(statics.problems)
    outs = outputs.configured(cfg, statics, runner)
    with gc_paused():  # 100,000s of long-lived objects, no cycles: collections only cost time
        up = state.advance(statics)
        _health(report, state, cfg.clock_skew_secs)
        report.events = state.events
        report.dynamic = up.dynamic
        report.records = len(statics.hosts) + up.dynamic
        report.refused = up.bindings - up.dynamic
        desired = state.desired(up, statics)
        if force:  # the loss was accepted: this outcome is the whole truth, no news awaited
            desired = replace(desired, final=True)
        todo: list[tuple[outputs.Output, Changes]] = []
        failed: list[tuple[str, PublishError | OSError]] = []
        for out in outs:  # an output that cannot say what it serves fails alone
            try:
                todo.append((out, changes_for(out.serving(), up, desired, state.now)))
            except (PublishError, OSError) as e:
                failed.append((out.name, e))
            except LeasednsError:
                raise  # the engine's (the merge state), not the output's
            except Exception as e:  # a bug in one output: the others still publish
                log.exception("%s: cannot tell what it serves", out.name)
                failed.append((out.name, PublishError(f"{out.name}: {outputs.a_bug(e)}")))
        if not force:  # every output's changes, before any output publishes
            for _out, changes in todo:
                guard.check(changes, state.known_ips, state.now, cfg.guard_fraction, cfg.guard_min)
        done, failed_now = publish_all(todo, desired)
        failed += failed_now
    report.changed = any(p.changed for _name, p in done)
    report.compiled = any(p.compiled for _name, p in done)
    # Published: what the journals hold is the new floor.
    if done and held != floor.held and (why := holdings.save(cfg.state_dir, held)):
        report.problems.append(f"{why}; the guard's floor stays at the last build saved")
    report.compile_secs = round(sum(p.compile_secs for _name, p in done), 4)
    report.build_secs = round(time.monotonic() - t0, 4)
    for name, pub in done:
        notes = list(getattr(pub, "problems", ()))
        if notes:
            report.output_notes[name] = notes
            report.problems.extend(notes)
    errors = {name: _named(name, e) for name, e in failed}
    report.outputs = {out.name: errors.get(out.name, "ok") for out in outs}
    if failed:
        if len(outs) == 1:
            raise failed[0][1]  # as it was said
        bad = {name for name, _e in failed}
        ok = ", ".join(out.name for out in outs if out.name not in bad) or "none"
        raise PublishError(
            f"{len(failed)} of {len(outs)} outputs failed to publish (published: {ok}): "
            + "; ".join(_named(name, e) for name, e in failed)
        )
    return up


def check_journals(cfg: Config, force: bool) -> tuple[holdings.Holdings, holdings.Floor]:
    """The journals' guard (call under the build lock): GuardError, unless `force`, when a
    journal lost what the last published build read, or when the floor that says so
    (journals.json) is lost. Returns what the journals hold now, and the floor."""
    held = holdings.survey(cfg.journal_dir, journal.Limits.of(cfg))
    floor = holdings.floor(cfg.state_dir, published_before(cfg))
    if floor.lost:
        if not force:
            raise GuardError(holdings.lost_floor(floor.lost, cfg.journal_dir))
        log.warning("--force: publishing although %s", floor.lost)
    lost = holdings.regressions(floor.bar, held)
    if lost:
        if not force:
            raise GuardError(holdings.refusal(lost, cfg.journal_dir))
        log.warning("--force: publishing although %s", "; ".join(lost.values()))
    return held, floor


def published_before(cfg: Config) -> str:
    """What shows that a build was published from this state directory: a good build in
    last-build.json, else an output's note (`published-*.json`); "" on a fresh one."""
    last_ok = load_report(cfg).get("last_ok")
    if isinstance(last_ok, dict):
        return f"{cfg.state_dir / LAST_BUILD} records a good build at {last_ok.get('time')}"
    notes = sorted(cfg.state_dir.glob("published-*.json"))
    if notes:
        return f"{notes[0]} says an output was published"
    return ""


def _named(name: str, e: Exception) -> str:
    """An output's error, said once with the output's name in front."""
    text = str(e)
    return text if text.startswith(f"{name}: ") else f"{name}: {text}"


def publish_all(
    todo: list[tuple[outputs.Output, Changes]], desired: Desired
) -> tuple[list[tuple[str, outputs.Published]], list[tuple[str, PublishError | OSError]]]:
    """Publish to every output in turn; one that fails does not stop the others (each
    serves what it served, and catches up at the next apply from what it then serves).
    Returns (name, what its publish did) of those that published, and the failures."""
    done: list[tuple[str, outputs.Published]] = []
    failed: list[tuple[str, PublishError | OSError]] = []
    for out, changes in todo:
        try:
            done.append((out.name, out.publish(desired, changes)))
        except (PublishError, OSError) as e:  # OSError: the note of what it serves
            failed.append((out.name, e))
        except LeasednsError:
            raise  # the engine's (the merge state), not the output's
        except Exception as e:  # a bug in one output: the others still publish
            log.exception("%s: publish failed", out.name)
            failed.append((out.name, PublishError(f"{out.name}: {outputs.a_bug(e)}")))
    return done, failed


def changes_for(serving: Serving, up: resolved.Update, desired: Desired, now: int) -> Changes:
    """The changes since what the output serves: the engine's, when it serves the outcome
    they start from (the last publish went through); else from its records to the outcome."""
    if up.changes.base and serving.token == up.changes.base:
        return up.changes
    return guard.changes_between(serving.records(), desired.dynamic(), up.changes.token, now)


def _health(report: Report, state: State, skew: int) -> None:
    """Tell (report, so status warns) a merge state not saved and events held back."""
    h = state.health
    if h.saved:
        report.state_saved = False
        report.problems.append(
            f"merge state not saved ({h.saved}); the next build catches up from the last "
            "one saved, or from every journal line (check the state directory's disk)"
        )
        return
    if h.held_back and h.held_until is not None:
        report.held_back, report.held_until = h.held_back, format_time(h.held_until)
        report.problems.append(
            f"{h.held_back} journal event(s) dated more than {skew} s ahead are held back until "
            f"their time, the first {report.held_until} (a peer's clock ahead, or record --time?)"
        )
        log.warning("%s", report.problems[-1])


def log_refusals(state: State, up: resolved.Update, new: list[Event]) -> None:
    """Log, once (when their event arrives), the bindings whose name is not published."""
    for r in state.fresh_refusals(up, new):
        b = r.binding
        log.warning("lease %s %s (peer %s): name not published: %s", b.ip, b.mac, b.peer, r.reason)


def run(
    cfg: Config,
    *,
    force: bool = False,
    coalesce: bool = False,
    runner: Runner | None = None,
    statics: Statics | None = None,
) -> Report:
    """`leasedns apply`: wait for the build lock, coalesce, take the partners' pushed copies,
    ingest the spool, build, compact, record the outcome; then sync, outside the lock.

    `statics`: the static input, when the caller has just read it (reconcile)."""
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
        try:
            receive(cfg, report, now_ns // 1000)
            if statics is None:
                statics = load_statics(cfg)
            with State.open(cfg, now_ns // 1_000_000_000) as state:
                new = ingest(cfg, report, now_ns, state)
                up = build(cfg, state, statics, report, force, runner)
                log_refusals(state, up, new)
                report.ok = True
                maybe_compact(cfg, report, state.cache, now_ns // 1000)
        except (LeasednsError, OSError) as e:
            report.error = str(e) or f"{e.__class__.__name__} (no message)"
            log.error("%s", report.error)
        except Exception as e:  # a bug: leave a trace in the report (status) and the log
            report.error = f"{e.__class__.__name__}: {e} (a bug; please report it with the log)"
            log.exception("apply failed: %s", report.error)
        finally:
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
        save_report(cfg, report)
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
        own = cfg.journal_dir / cfg.peer
        journal.claim(own, identity.installation_id(cfg.state_dir, own))
    except OSError as e:  # a full disk: the build can still read; appending claims again
        report.problems.append(f"{cfg.journal_dir / cfg.peer}: cannot record its owner: {e}")
        log.warning("%s", report.problems[-1])
    got = inbox.receive(cfg, now_us, functools.partial(mergestate.note, cfg.state_dir))
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
    limits = journal.Limits.of(cfg)
    own = journal.read_peer(cfg.journal_dir / cfg.peer, limits)
    keep_us = (cfg.max_lease_secs + cfg.compact_grace_secs) * 1_000_000
    skew_us = cfg.clock_skew_secs * 1_000_000
    survivors = len(journal.survivors(own.events, now_us, keep_us, skew_us))
    if survivors * 2 <= len(own.events):
        # The merge cache keeps a note of it, and the next build follows it instead of
        # reading every journal line again (see engine.cache.note_compaction).
        try:
            done = journal.compact(
                cfg.journal_dir / cfg.peer,
                now_us,
                keep_us,
                skew_us,
                functools.partial(mergestate.note_compaction, cfg.state_dir),
                signing.journal_key(cfg.state_dir),
                limits,
            )
        except journal.Refused as e:  # a segment no reader takes: never compacted over
            report.problems.append(f"journal not compacted: {e}")
            log.error("%s", report.problems[-1])
            return
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
