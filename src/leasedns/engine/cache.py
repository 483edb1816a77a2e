"""The merge aggregates kept between builds: a build parses only the journal lines appended since.

The aggregates (`merge.Aggregates`) are maxima over the set of events, so the
lines a segment gained since the last build can simply be folded in. What was
already folded in is remembered per segment file as a byte count, a digest
of every byte before it and the file's identity as last seen (inode, size,
modification and change times). A file whose identity is unchanged is
unchanged (a write moves its change time, which no one can set back); any
other is read up to the mark again and must match the digest. A segment that
vanished, shrank or no longer starts with those bytes (rewritten, compacted,
replaced, changed anywhere), a peer directory that disappeared, the clock
gone back, or a state file that is missing, damaged, from another version or
made for another peer or journal directory all mean: rebuild from every
journal line, exactly as a cold build does. That keeps the mass-delete guard
honest when a journal is lost. Journal segments roll over at a size
(`journal.ROLL_BYTES`), so reading a changed one again stays cheap.

Except a compaction this host made or checked: its survivors are a subset of
the events of the segments it replaced, so a state that had folded those
segments completely already holds every survivor, and only its marks move to
the new segment. The party that knows (`journal.compact` on this peer's own
journal, under the journal lock; `inbox` adopting a partner's compacted copy
after checking it event by event) leaves a note in the state directory
(`note`, `NOTES_FILE`; never in the journal directory, which partners write):
the replaced segments with the size and digest they were compacted with, the
new one with the size, line and event counts and digest of the survivors'
lines. A gone segment is followed only when a note replaced it with the exact
bytes this state folded, and the new segment still starts with the noted
bytes (read up to there again, like any changed segment); anything else
rebuilds. The compaction dropped only events superseded by one dated up to its
time (`journal.survivors`), in effect here too as long as the clocks agree
within the skew: a note from a time past this build's horizon is not followed.

Events dated more than the clock skew after "now" are not folded in: they
wait in `pending` until their time comes (`merge.Settings.clock_skew_secs`;
a full merge leaves them out alike).

The state lives in an SQLite file (`store`), read and written per key, so a
build costs time in proportion to what changed, not to the bindings held.
It is a cache, never the truth: every row read is checked (see `store`), and
deleting the file costs one cold build.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
import time
from collections.abc import MutableMapping
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from leasedns import __version__, journal
from leasedns.config import Config
from leasedns.engine import store
from leasedns.engine.resolve import Resolved
from leasedns.engine.rules import Aggregates, Outcome
from leasedns.engine.store import Spec, Table, text_in, text_out
from leasedns.fsutil import write_atomic
from leasedns.journal.files import Refused, opened
from leasedns.model import Row, Settings, new_row

log = logging.getLogger("leasedns.mergestate")

STATE_FILE = store.DB_FILE
OLD_STATE_FILE = "merge-state.bin"  # before 0.2: one marshalled blob, removed when seen
# 2: rows carry `since`; 3: the last resolve's outcome; 4, 5: SQLite; 6: checked rows,
# whole-prefix fingerprints, events held back; 7: no rendered lines, outcomes named by a token
VERSION = 7
CHUNK = 1 << 20
# Anything that can change how a line parses or a name is judged invalidates the file.
STAMP = f"{VERSION}/{__version__}/{sys.version_info[0]}.{sys.version_info[1]}"

Verdicts = MutableMapping[str, tuple[str | None, str]]  # raw client name -> (label or None, note)
Stat = tuple[int, int, int, int]  # inode, size, mtime and ctime in ns


@dataclass(slots=True)
class Mark:
    """How far one segment file was folded in."""

    consumed: int  # bytes: complete lines only, so always at a line boundary
    lines: int  # newlines in those bytes (for path:line in problems)
    events: int  # events parsed from them (held back or not)
    fingerprint: bytes  # digest of those bytes
    stat: Stat = (0, 0, 0, 0)  # the file as last seen


@dataclass(slots=True)
class MergeState:
    """The aggregates of every journal line up to the marks, and cached name verdicts."""

    aggregates: Aggregates = field(default_factory=Aggregates)
    marks: dict[str, dict[str, Mark]] = field(default_factory=dict)  # peer -> segment -> mark
    verdict_key: tuple[str, str] = ("", "")  # (domain, name policy) the verdicts were made for
    verdicts: Verdicts = field(default_factory=dict)
    # The last resolve's outcome for these aggregates (None: none, or it no longer matches).
    resolved: Resolved | None = None
    # Addresses whose aggregate entries lines folded in since `resolved` may have changed
    # (not saved: a state is saved with its outcome up to date, or without one).
    touched: set[str] = field(default_factory=set)
    # Events dated past the horizon when read, waiting for their time (row -> True).
    pending: MutableMapping[Row, bool] = field(default_factory=dict)
    newest: int = 0  # microseconds: the latest event folded in
    # The database this state was read from (its tables back the mappings above that are
    # `store.Table`s; plain dicts are a cold build's and replace their table on save).
    db: sqlite3.Connection | None = None
    path: Path | None = None  # the database file

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None

    @property
    def events(self) -> int:
        """Journal events folded in (duplicates included), as a cold read would count them."""
        return sum(m.events for seg in self.marks.values() for m in seg.values())


@dataclass(slots=True)
class Progress:
    """What one `refresh` did."""

    rebuilt: str = ""  # why the aggregates were rebuilt from scratch ("" = incremental)
    new_events: int = 0
    new_bytes: int = 0
    torn: int = 0
    problems: list[str] = field(default_factory=list)
    due: int = 0  # held-back events folded in now that their time came
    followed: list[str] = field(default_factory=list)  # compactions followed, not read again


class _Rebuild(Exception):
    """A saved mark no longer holds: fold every line in again."""


def owner_of(cfg: Config) -> str:
    """Whose state a file holds: a copy from a partner or another setup is not this one's."""
    return f"peer {cfg.peer}, journals {cfg.journal_dir}, clock skew {cfg.clock_skew_secs} s"


def stat_of(f: BinaryIO) -> Stat:
    st = os.fstat(f.fileno())
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def prefix_hash(f: BinaryIO, consumed: int) -> Any:
    """A digest object fed with the first `consumed` bytes of a file (pure but for reads)."""
    h = journal.new_digest()
    f.seek(0)
    left = consumed
    while left > 0:
        chunk = f.read(min(left, CHUNK))
        if not chunk:
            break
        h.update(chunk)
        left -= len(chunk)
    return h


def fingerprint(f: BinaryIO, consumed: int) -> bytes:
    """Proof that a file still starts with the `consumed` bytes seen before."""
    return bytes(prefix_hash(f, consumed).digest())


def refresh(
    journal_dir: Path,
    state: MergeState | None,
    settings: Settings | None = None,
    now: int | None = None,
    only: str | None = None,
    limits: journal.Limits = journal.LIMITS,
) -> tuple[MergeState, Progress]:
    """Bring `state` up to date with the journals at `now` (a cold read when it is None or
    stale); events dated past `settings.horizon(now)` wait in `state.pending`.

    With `only` (a peer), only that peer's journal is read again: the lines it
    just appended, when the others were caught up with a moment before.
    Segments are opened through `journal.files` within `limits` (a link, a FIFO
    or a segment over the bound is not read: a problem).

    `state` is updated in place when it can be; the state to keep is returned.
    With `settings`, cached name verdicts made for another domain or policy go.
    """
    progress = Progress()
    horizon = (settings or Settings("")).horizon(int(time.time()) if now is None else now)
    old = state
    if state is not None and state.newest > horizon:
        progress.rebuilt = "the clock went back (an event in effect then is not yet now)"
        state = None
    elif state is not None:
        try:
            _fold(journal_dir, state, progress, horizon, limits, incremental=True, only=only)
        except _Rebuild as e:
            progress.rebuilt = str(e)
            state = None
        except sqlite3.DatabaseError as e:
            if not store.damaged(e):
                raise
            progress.rebuilt = f"merge state damaged ({e})"
            drop(state)
            old = state = None
    else:
        progress.rebuilt = "no saved merge state"
    if state is None:
        for attempt in range(3):
            # Name verdicts depend on nothing the journals say: they carry over.
            state = (
                MergeState(
                    db=old.db, path=old.path, verdict_key=old.verdict_key, verdicts=old.verdicts
                )
                if old is not None
                else MergeState()
            )
            progress = Progress(rebuilt=progress.rebuilt)
            try:
                _fold(
                    journal_dir,
                    state,
                    progress,
                    horizon,
                    limits,
                    incremental=False,
                    strict=attempt < 2,
                )
                break
            except _Rebuild:  # a segment vanished while read: compacted meanwhile; again
                continue
    assert state is not None
    if settings is not None:
        key = (settings.domain, settings.name_policy.value)
        if state.verdict_key != key:
            state.verdict_key, state.verdicts = key, {}
    for p in progress.problems:
        log.warning("%s", p)
    for f in progress.followed:
        log.info("followed a compaction, its survivors not read again: %s", f)
    return state, progress


def _fold(
    journal_dir: Path,
    state: MergeState,
    progress: Progress,
    horizon: int,
    limits: journal.Limits,
    *,
    incremental: bool,
    strict: bool = True,
    only: str | None = None,
) -> None:
    """Fold every journal line past the marks into the aggregates (or into `pending`, when
    dated past `horizon`), and the pending events up to `horizon`.

    Raises _Rebuild (before changing anything, when `incremental`) if a mark no
    longer holds; in a cold read (not `incremental`) if a listed segment
    vanished and `strict`. Every mark is checked first, then the segments are
    read, one file open at a time: a journal may hold thousands of segments. A
    segment that changed between the two (a partner appending to shared
    storage) is checked again before it is read; a mark found stale then raises
    _Rebuild too, and `refresh` throws the half-folded state away.
    """
    peers = journal.peers(journal_dir)
    if only is not None:
        peers = [p for p in peers if p == only]
    elif incremental:
        gone = sorted(set(state.marks) - set(peers))
        if gone:
            raise _Rebuild(f"journal directory of {', '.join(gone)} is gone")
    todo: list[tuple[str, Path, Mark | None, Stat, Any]] = []
    moved: dict[str, dict[str, Mark]] = {}  # peer -> its marks, following a compaction
    followed: list[str] = []
    # First check every mark, then read: a stale mark must leave the state untouched.
    for peer in peers:
        try:
            segs = journal.segments(journal_dir / peer, limits)
        except Refused as e:
            if incremental and state.marks.get(peer):
                raise _Rebuild(str(e)) from None
            progress.problems.append(str(e))
            continue
        marks = state.marks.get(peer, {})
        if incremental:
            present = {s.name for s in segs}
            if set(marks) - present:
                marks = moved[peer] = _follow(
                    journal_dir / peer, marks, present, state.path, horizon, followed
                )
        for seg in segs:
            mark = marks.get(seg.name)
            try:
                with opened(seg, limits.segment_bytes) as f:
                    stat, hasher = stat_of(f), None
                    if mark is not None and stat != mark.stat:  # changed since: read it again
                        hasher = _check(seg, f, mark, stat)
            except FileNotFoundError:
                if not incremental and not strict:
                    continue  # as journal.read_peer does
                raise _Rebuild(f"{seg}: vanished while read") from None
            except Refused as e:
                if mark is not None:
                    raise _Rebuild(str(e)) from None
                progress.problems.append(f"{e}; segment skipped")
                continue
            todo.append((peer, seg, mark, stat, hasher))
    for peer, marks in moved.items():
        state.marks[peer] = marks
    progress.followed += followed
    for peer, seg, mark, stat, hasher in todo:
        try:
            with opened(seg, limits.segment_bytes) as f:
                now = stat_of(f)
                if now != stat:  # changed since it was checked a moment ago
                    stat, hasher = now, None if mark is None else _check(seg, f, mark, now)
                _fold_segment(state, peer, seg, mark, f, stat, hasher, horizon, progress)
        except (FileNotFoundError, Refused) as e:
            if not incremental and not strict and isinstance(e, FileNotFoundError):
                continue
            raise _Rebuild(f"{seg}: vanished or changed while read ({e})") from None
    _fold_due(state, horizon, progress)


def _check(seg: Path, f: BinaryIO, mark: Mark, stat: Stat) -> Any:
    """The digest of the bytes `mark` says were read, checked (_Rebuild when they changed);
    fed on by the caller with the lines after them."""
    if stat[1] < mark.consumed:
        raise _Rebuild(f"{seg}: shrank from {mark.consumed} to {stat[1]} bytes")
    hasher = prefix_hash(f, mark.consumed)
    if hasher.digest() != mark.fingerprint:
        raise _Rebuild(f"{seg}: no longer holds the lines read before")
    return hasher


def _follow(
    peer_dir: Path,
    marks: dict[str, Mark],
    present: set[str],
    db_path: Path | None,
    horizon: int,
    followed: list[str],
) -> dict[str, Mark]:
    """The marks of a peer some of whose marked segments are gone, moved to the segments
    noted compactions replaced them with (pure but for reading the notes).

    Raises _Rebuild unless every gone segment was replaced, by a note, with the
    very bytes its mark says were folded. A replaced segment still there (a
    compaction cut short) keeps its mark; one never folded must still be there,
    or its survivors are not in the state. The new segment's mark is that of
    the noted survivors; `_fold` reads it up to there again and checks the
    digest, as for any segment whose file changed.
    """
    gone = sorted(set(marks) - present)
    why = f"{peer_dir}: segment {gone[0]} is gone (compacted or removed)"
    notes = _notes(db_path.parent, peer_dir) if db_path is not None else []
    if not notes:
        raise _Rebuild(why)
    marks = dict(marks)
    used: set[int] = set()
    while gone:
        for i, n in enumerate(notes):
            if i in used or not set(gone) & n.replaced.keys():
                continue
            if n.settled > horizon:
                raise _Rebuild(
                    f"{why}; its compaction (superseding events up to {n.settled} us) is ahead "
                    "of this build's clock"
                )
            if all(
                name in present
                or (
                    (m := marks.get(name)) is not None
                    and (m.consumed, m.fingerprint) == (p.size, p.digest)
                )
                for name, p in n.replaced.items()
            ):
                break
        else:
            raise _Rebuild(f"{why}; no compaction noted replaced the lines this state read")
        used.add(i)
        for name in n.replaced:
            if name not in present:
                marks.pop(name, None)
        for name, p in n.written.items():
            if name not in marks:
                # stat unknown: the file is read up to the mark and checked against the digest
                marks[name] = Mark(p.size, p.lines, p.events, p.digest)
        followed.append(f"{peer_dir}: {', '.join(sorted(n.replaced))} -> {', '.join(n.written)}")
        gone = sorted(set(marks) - present)
    return marks


def _fold_segment(
    state: MergeState,
    peer: str,
    seg: Path,
    mark: Mark | None,
    f: BinaryIO,
    stat: Stat,
    hasher: Any,
    horizon: int,
    progress: Progress,
) -> None:
    """Parse a segment's complete lines past its mark; a torn last line waits for its end."""
    if mark is None:
        mark, hasher = Mark(0, 0, 0, fingerprint(f, 0)), prefix_hash(f, 0)
    f.seek(mark.consumed)
    data = f.read(max(0, stat[1] - mark.consumed))  # up to its size when opened: bounded
    end = data.rfind(b"\n") + 1
    if end < len(data):
        progress.torn += 1
        log.info(
            "%s: leaving a torn last line for later (%d bytes; a write in progress or cut short)",
            seg,
            len(data) - end,
        )
    if end:
        rows = journal.parse_rows(
            data[:end].decode("utf-8", "surrogateescape"),
            str(seg),
            peer,
            progress.problems,
            mark.lines + 1,
        )
        later = [r for r in rows if r.t > horizon]
        if later:
            rows = [r for r in rows if r.t <= horizon]
            for r in later:
                state.pending[r] = True
        _add(state, rows)
        if hasher is None:  # grew after it was looked at
            hasher = prefix_hash(f, mark.consumed)
        hasher.update(memoryview(data)[:end])
        mark = Mark(
            mark.consumed + end,
            mark.lines + data.count(b"\n", 0, end),
            mark.events + len(rows) + len(later),
            hasher.digest(),
            stat,
        )
        progress.new_events += len(rows) + len(later)
        progress.new_bytes += end
    elif mark.stat != stat:
        mark = replace(mark, stat=stat)  # read again and still the same: no need next time
    state.marks.setdefault(peer, {})[seg.name] = mark


def _fold_due(state: MergeState, horizon: int, progress: Progress) -> None:
    """Fold in the held-back events whose time has come."""
    pending = state.pending
    if isinstance(pending, store.Table):
        due = pending.keys_upto(horizon)
    else:
        due = sorted(r for r in pending if r.t <= horizon)
    if not due:
        return
    for r in due:
        del pending[r]
    _add(state, due)
    progress.due += len(due)


def _add(state: MergeState, rows: list[Row]) -> None:
    if rows:
        state.aggregates.add(rows)
        state.touched.update(r.ip for r in rows)
        state.newest = max(state.newest, max(r.t for r in rows))


def held_back(state: MergeState) -> tuple[int, int | None]:
    """How many events wait for their time, and the earliest time (microseconds)."""
    pending = state.pending
    if isinstance(pending, store.Table):
        n = len(pending)
        first = pending.first() if n else None
        return n, None if first is None else first.t
    return len(pending), min((r.t for r in pending), default=None)


# --- compaction notes --------------------------------------------------------------------------

NOTES_FILE = "compacted.json"
NOTES_KEPT = 4  # per peer directory: a note is only of use to the next build or two


@dataclass(frozen=True, slots=True)
class Note:
    """One compaction this host made or checked (see `note`)."""

    replaced: dict[str, journal.Piece]  # segment -> the complete lines it was compacted with
    written: dict[str, journal.Piece]  # segment -> the lines of it that are survivors
    settled: int  # microseconds: no event dated later superseded one the compaction dropped


def note_compaction(state_dir: Path, done: journal.Compaction) -> None:
    """Keep a note of a compaction of this peer's own journal (`journal.compact` calls it)."""
    if done.written is not None:
        note(
            state_dir,
            done.peer_dir,
            done.replaced,
            {done.segment: done.written},
            done.now_us,
        )


def note(
    state_dir: Path,
    peer_dir: Path,
    replaced: dict[str, journal.Piece],
    written: dict[str, journal.Piece],
    settled: int,
) -> None:
    """Note that the segments `replaced` of `peer_dir` (with the lines given) are now in
    `written`, which start with lines holding only events of the replaced ones that
    `journal.survivors` keeps with superseding events dated up to `settled`.

    Only the party that checked this may write it (the file is trusted, so it is
    kept in the state directory). A note that cannot be written costs one cold
    build: logged, never raised.
    """
    path = state_dir / NOTES_FILE
    key = os.path.abspath(peer_dir)
    doc = _read_notes(path)
    entry = {
        "replaced": {n: _piece_out(p) for n, p in replaced.items()},
        "written": {n: _piece_out(p) for n, p in written.items()},
        "settled": settled,
    }
    doc[key] = [*doc.get(key, []), entry][-NOTES_KEPT:]
    try:
        write_atomic(path, json.dumps({"notes": doc}, sort_keys=True).encode(), 0o640)
    except OSError as e:
        log.warning("%s: cannot keep the compaction note (%s); the next build is cold", path, e)


def _piece_out(p: journal.Piece) -> list[object]:
    return [p.size, p.lines, p.events, p.digest.hex()]


def _piece_in(v: Any) -> journal.Piece:
    size, lines, events, hexdigest = v
    if not all(type(x) is int and x >= 0 for x in (size, lines, events)):
        raise ValueError("not a count")
    d = bytes.fromhex(hexdigest)
    if len(d) != 16:
        raise ValueError("not a digest")
    return journal.Piece(size, lines, events, d)


def _read_notes(path: Path) -> dict[str, list[Any]]:
    try:
        notes = json.loads(path.read_bytes())["notes"]
        if not isinstance(notes, dict) or not all(isinstance(v, list) for v in notes.values()):
            raise ValueError("not a mapping of lists")
        return notes
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("%s: compaction notes unusable (%s); ignored", path, e)
        return {}


def _notes(state_dir: Path, peer_dir: Path) -> list[Note]:
    """The notes kept for `peer_dir`, newest first (none when unreadable)."""
    out = []
    for entry in reversed(_read_notes(state_dir / NOTES_FILE).get(os.path.abspath(peer_dir), [])):
        try:
            settled = entry["settled"]
            if type(settled) is not int:
                raise ValueError("not a time")
            out.append(
                Note(
                    {str(n): _piece_in(v) for n, v in entry["replaced"].items()},
                    {str(n): _piece_in(v) for n, v in entry["written"].items()},
                    settled,
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("%s: a compaction note is unusable (%s); ignored", state_dir, e)
    return out


# --- the tables ------------------------------------------------------------------------------


# The tables hold a row's fields as SQLite gives them back (a client or host name that is
# no UTF-8 as a BLOB, see `text_in`; a bool as an int), so that the check values hold. What
# is stored and checked is a plain tuple of those values, whatever the row's type.


def _stored(r: Row) -> tuple[Any, ...]:
    """A row's fields as the tables store them, in field order."""
    return (
        r.t,
        r.kind,
        r.ip,
        r.mac,
        text_in(r.client),
        text_in(r.host),
        r.secs,
        r.peer,
        r.source,
        int(r.no_secs),
        r.since,
    )


def _unstored(v: tuple[Any, ...]) -> Row:
    """The row whose fields the tables stored (`_stored`)."""
    t, kind, ip, mac, client, host, secs, peer, source, no_secs, since = v
    return new_row(
        Row,
        (
            t,
            kind,
            ip,
            mac,
            text_out(client),
            text_out(host),
            secs,
            peer,
            source,
            bool(no_secs),
            since,
        ),
    )


def _latest_params(ip: str, r: Row) -> tuple[Any, ...]:
    s = _stored(r)
    return (ip, s[0], s[1], *s[3:])  # keyed by the address, which the row holds too


def _latest_row(ip: str, v: tuple[Any, ...]) -> Row:
    return _unstored((v[0], v[1], ip, *v[2:]))


LATEST: Spec[str, Row] = Spec(
    "latest",
    ("ip",),
    ("t", "kind", "mac", "client", "host", "secs", "peer", "source", "no_secs", "since"),
    lambda ip: (ip,),
    _latest_params,
    _latest_row,
    lambda k: k[0],
)
ENDS: Spec[tuple[str, str], int] = Spec(
    "ends",
    ("ip", "mac"),
    ("t",),
    lambda k: k,
    lambda k, t: (*k, t),
    lambda _k, r: r[0],
    lambda k: (k[0], k[1]),
)
VERDICTS: Spec[str, tuple[str | None, str]] = Spec(
    "verdicts",
    ("raw",),
    ("label", "note"),
    lambda raw: (text_in(raw),),
    lambda raw, v: (text_in(raw), v[0], text_in(v[1])),
    lambda _raw, r: (r[0], text_out(r[1])),
    lambda k: text_out(k[0]),
)
OUTCOME: Spec[str, Outcome] = Spec(
    "outcome",
    ("ip",),
    ("end", "name", "reason"),
    lambda ip: (ip,),
    lambda ip, o: (ip, o[0], o[1], text_in(o[2])),
    lambda _ip, r: (r[0], r[1], text_out(r[2])),
    lambda k: k[0],
    index="end",
)
WINNER: Spec[str, str] = Spec(
    "winner",
    ("name",),
    ("ip",),
    lambda n: (n,),
    lambda n, ip: (n, ip),
    lambda _n, r: r[0],
    lambda k: k[0],
)
RIVALS: Spec[str, list[str]] = Spec(
    "rivals",
    ("name",),
    ("ips",),
    lambda n: (n,),
    lambda n, ips: (n, " ".join(ips)),
    lambda _n, r: r[0].split(" "),
    lambda k: k[0],
)


PENDING: Spec[Row, bool] = Spec(
    "pending",
    ("t", "kind", "ip", "mac", "client", "host", "secs", "peer", "source", "no_secs", "since"),
    (),
    _stored,
    lambda r, _v: _stored(r),
    lambda _r, _v: True,
    _unstored,
)
_SPECS: tuple[Spec[Any, Any], ...] = (
    LATEST,
    ENDS,
    VERDICTS,
    OUTCOME,
    WINNER,
    RIVALS,
    PENDING,
)
_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value, chk) WITHOUT ROWID"
_META_SEED = store.seed_of("meta")
_META_KEYS = ("stamp", "owner", "domain", "name_policy", "newest", "marks", "resolved")
_RESOLVED_KEYS = ("fingerprint", "now", "token")


def _read_meta(db: sqlite3.Connection) -> dict[str, Any]:
    """The meta rows, each checked; every key a state needs must be there."""
    meta = {}
    for key, value, chk in db.execute("SELECT key, value, chk FROM meta"):
        if store.check(_META_SEED, (key, value)) != chk:
            raise store.Damaged(f"table meta: row {str(key)[:40]!r} fails its check value")
        meta[key] = value
    if meta.get("stamp") != STAMP:
        raise ValueError(f"written by another version ({str(meta.get('stamp'))[:40]})")
    wanted = _META_KEYS + (_RESOLVED_KEYS if meta.get("resolved") else ())
    missing = [k for k in wanted if k not in meta]
    if missing:
        raise store.Damaged(f"table meta: {', '.join(missing)} missing")
    return meta


def _write_meta(db: sqlite3.Connection, meta: dict[str, Any]) -> None:
    db.executemany(
        "INSERT OR REPLACE INTO meta VALUES (?, ?, ?)",
        [(k, v, store.check(_META_SEED, (k, v))) for k, v in meta.items()],
    )


def _marks_out(marks: dict[str, dict[str, Mark]]) -> str:
    return json.dumps(
        {
            peer: {
                seg: [m.consumed, m.lines, m.events, m.fingerprint.hex(), *m.stat]
                for seg, m in segs.items()
            }
            for peer, segs in marks.items()
        },
        sort_keys=True,
    )


def _marks_in(text: str) -> dict[str, dict[str, Mark]]:
    out: dict[str, dict[str, Mark]] = {}
    for peer, segs in json.loads(text).items():
        for seg, (consumed, lines, events, fp, *stat) in segs.items():
            nums = [consumed, lines, events, *stat]
            if len(stat) != 4 or not all(type(x) is int for x in nums):
                raise ValueError(f"a mark of {peer}/{seg} is not what a mark holds")
            out.setdefault(peer, {})[seg] = Mark(
                consumed,
                lines,
                events,
                bytes.fromhex(fp),
                tuple(stat),
            )
    return out


def load(state_dir: Path, owner: str | None = None) -> MergeState | None:
    """The saved state, or None (logged) when there is none usable.

    With `owner` (see `owner_of`), a state made for another peer, journal
    directory or clock skew (a file copied from a partner) is thrown away.
    The state's tables are read as they are used, in one read transaction
    begun here: what a build reads is one consistent snapshot, and every row
    of it is checked as it is read (`store.Damaged` then).
    """
    path = state_dir / STATE_FILE
    old = state_dir / OLD_STATE_FILE
    if old.exists():
        with suppress(OSError):
            old.unlink()
    db = None
    try:
        db = store.connect(path, create=False)
        (page,) = db.execute("PRAGMA page_size").fetchone()
        if path.stat().st_size % page:
            raise ValueError("its size is not a whole number of pages (cut short or extended)")
        db.execute("BEGIN")
        meta = _read_meta(db)
        if owner is not None and meta["owner"] != owner:
            raise ValueError(f"it was made for {str(meta['owner'])[:200]}, not {owner}")
        state = MergeState(
            Aggregates(Table(db, LATEST), Table(db, ENDS)),
            _marks_in(meta["marks"]),
            (str(meta["domain"]), str(meta["name_policy"])),
            Table(db, VERDICTS),
            None,
            pending=Table(db, PENDING),
            newest=int(meta["newest"]),
            db=db,
            path=path,
        )
        if meta["resolved"]:
            state.resolved = Resolved(
                bytes(meta["fingerprint"]),
                int(meta["now"]),
                Table(db, OUTCOME),
                Table(db, WINNER),
                Table(db, RIVALS),
                str(meta["token"]),
            )
        return state
    except FileNotFoundError:
        return None
    except sqlite3.Error as e:
        if db is not None:
            db.close()
        if not store.damaged(e):  # disk full, I/O error: build without it this time
            log.warning("%s: cannot read the merge state (%s); building from the journals", path, e)
            return None
        log.warning("%s: merge state damaged (%s); rebuilding it from the journals", path, e)
        discard(state_dir)
        return None
    except (ValueError, KeyError, TypeError) as e:
        log.warning("%s: merge state unusable (%s); rebuilding it from the journals", path, e)
        if db is not None:
            db.close()
        discard(state_dir)
        return None


def discard(state_dir: Path) -> None:
    """Throw the saved state away (damaged, or from another version): the next build is cold."""
    store.discard(state_dir / STATE_FILE)


def drop(state: MergeState | None) -> None:
    """Close `state` and throw its database away (SQLite found it damaged)."""
    if state is not None:
        path = state.path
        state.close()
        if path is not None:
            log.warning("%s: merge state damaged; rebuilding it from the journals", path)
            store.discard(path)


def _put(db: sqlite3.Connection, spec: Spec[Any, Any], m: MutableMapping[Any, Any]) -> None:
    """Write one mapping of the state into its table (its changes, or all of it)."""
    if isinstance(m, Table) and m.db is db:
        m.flush()
    else:
        Table(db, spec).replace(dict(m.items()))


def save(state_dir: Path, state: MergeState, owner: str = "") -> str:
    """Keep the state for the next build, in one transaction; returns "" or why it could not
    (then the next build catches up from the last state saved, or builds cold).

    Cached verdicts for names no live binding asks for go once they outnumber
    the live bindings of the saved outcome (all of them, when there is none).
    """
    path = state_dir / STATE_FILE
    try:
        _save(path, state, owner)
    except (sqlite3.Error, OSError) as e:
        # Rolled back: the file still holds the last build's state, and the next build
        # catches up from there. The state in memory stays readable for this build.
        log.error("%s: cannot save the merge state (%s); the next build catches up", path, e)
        if store.damaged(e):
            drop(state)
        return str(e) or type(e).__name__
    return ""


def _save(path: Path, state: MergeState, owner: str) -> None:
    if state.db is None:
        state.db, state.path = store.connect(path, create=True), path
    db = state.db
    if not db.in_transaction:
        db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(_META)
        for spec in _SPECS:
            store.create(db, spec)
        agg = state.aggregates
        _prune(db, agg)
        _put(db, LATEST, agg.latest)
        _put(db, ENDS, agg.ends)
        _gc_verdicts(state)
        _put(db, VERDICTS, state.verdicts)
        _put(db, PENDING, state.pending)
        res = None if state.touched else state.resolved
        meta: dict[str, object] = {
            "stamp": STAMP,
            "owner": owner,
            "domain": state.verdict_key[0],
            "name_policy": state.verdict_key[1],
            "newest": state.newest,
            "marks": _marks_out(state.marks),
            "resolved": int(res is not None),
        }
        if res is not None:
            _put(db, OUTCOME, res.outcome)
            _put(db, WINNER, res.winner)
            _put(db, RIVALS, res.rivals)
            meta.update(fingerprint=res.fingerprint, now=res.now, token=res.token)
        _write_meta(db, meta)
        db.execute("COMMIT")
        # Into the database file now, as far as no reader still needs the old pages.
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def _prune(db: sqlite3.Connection, agg: Aggregates) -> None:
    """Forget releases/expiries that can never end a binding again (see Aggregates.prune)."""
    latest, ends = agg.latest, agg.ends
    if not isinstance(latest, Table) or latest.db is not db or not isinstance(ends, Table):
        agg.prune()
        return
    changed = {ip: r.t for ip, r in latest.changes().items() if r is not store.ABSENT}
    ends.flush()
    ips = sorted(changed)
    for i in range(0, len(ips), 500):
        chunk = ips[i : i + 500]
        rows = db.execute(
            f"SELECT ip, mac FROM ends WHERE ip IN ({', '.join('?' * len(chunk))})", chunk
        ).fetchall()
        for ip, mac in rows:
            # candidates only: each is checked as the table reads it before it goes
            k, t = (ip, mac), changed.get(ip)
            if t is not None and type(mac) is str and ends.get(k, t) < t:
                del ends[k]


def _gc_verdicts(state: MergeState) -> None:
    res = None if state.touched else state.resolved
    live = len(res.outcome) if res is not None else 0
    if len(state.verdicts) <= 2 * live + 1000:
        return
    keep: set[str] = set()
    if res is not None:
        latest = state.aggregates.latest
        keep = {(r := latest[ip]).host or r.client for ip in res.outcome}
    state.verdicts = {k: v for k, v in state.verdicts.items() if k in keep}
