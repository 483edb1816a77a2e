"""The merge aggregates kept between builds: a build parses only the journal lines appended since.

The aggregates (`merge.Aggregates`) are maxima over the set of events, so the
lines a segment gained since the last build can simply be folded in. What was
already folded in is remembered per segment file as a byte count plus a
fingerprint of the bytes before it; a segment that vanished, shrank or no
longer starts with those bytes (rewritten, compacted, replaced), a peer
directory that disappeared, or a state file that is missing, damaged or from
another version all mean: rebuild from every journal line, exactly as a cold
build does. That keeps the mass-delete guard honest when a journal is lost.

The state lives in an SQLite file (`store`), read and written per key, so a
build costs time in proportion to what changed, not to the bindings held.
It is a cache, never the truth: deleting it costs one cold build.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import sys
from collections.abc import MutableMapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from . import __version__, journal, store
from .events import Row
from .merge import Aggregates, Binding, Settings
from .resolved import Outcome, Resolved
from .store import Spec, Table, text_in, text_out

log = logging.getLogger("leasedns.mergestate")

STATE_FILE = store.DB_FILE
OLD_STATE_FILE = "merge-state.bin"  # before 0.2: one marshalled blob, removed when seen
VERSION = 5  # 2: rows carry `since`; 3: the last resolve's outcome; 4, 5: SQLite
WINDOW = 4096  # fingerprint: hashes of up to this many bytes at the start and before the mark
# Anything that can change how a line parses or a name is judged invalidates the file.
STAMP = f"{VERSION}/{__version__}/{sys.version_info[0]}.{sys.version_info[1]}"

Verdicts = MutableMapping[str, tuple[str | None, str]]  # raw client name -> (label or None, note)


@dataclass(slots=True)
class Mark:
    """How far one segment file was folded in."""

    consumed: int  # bytes: complete lines only, so always at a line boundary
    lines: int  # newlines in those bytes (for path:line in problems)
    events: int  # events parsed from them
    fingerprint: bytes


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
    changed: bool = False  # anything to save: lines folded in, segments new, verdicts dropped
    new_events: int = 0
    new_bytes: int = 0
    torn: int = 0
    problems: list[str] = field(default_factory=list)


class _Rebuild(Exception):
    """A saved mark no longer holds: fold every line in again."""


def fingerprint(f: BinaryIO, consumed: int) -> bytes:
    """Proof that a file still starts with the `consumed` bytes seen before (pure but for reads)."""
    if consumed == 0:
        return b""
    h = hashlib.blake2b(digest_size=16)
    f.seek(0)
    h.update(f.read(min(consumed, WINDOW)))
    if consumed > WINDOW:
        start = max(WINDOW, consumed - WINDOW)
        f.seek(start)
        h.update(f.read(consumed - start))
    h.update(consumed.to_bytes(8, "big"))
    return h.digest()


def refresh(
    journal_dir: Path, state: MergeState | None, settings: Settings | None = None
) -> tuple[MergeState, Progress]:
    """Bring `state` up to date with the journals (a cold read when it is None or stale).

    `state` is updated in place when it can be; the state to keep is returned.
    With `settings`, cached name verdicts made for another domain or policy go.
    """
    progress = Progress()
    old = state
    if state is not None:
        try:
            _fold(journal_dir, state, progress, incremental=True)
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
            progress = Progress(rebuilt=progress.rebuilt, changed=True)
            try:
                _fold(journal_dir, state, progress, incremental=False, strict=attempt < 2)
                break
            except _Rebuild:  # a segment vanished while read: compacted meanwhile; again
                continue
    assert state is not None
    if settings is not None:
        key = (settings.domain, settings.name_policy.value)
        if state.verdict_key != key:
            state.verdict_key, state.verdicts = key, {}
            progress.changed = True
    for p in progress.problems:
        log.warning("%s", p)
    return state, progress


def _fold(
    journal_dir: Path,
    state: MergeState,
    progress: Progress,
    *,
    incremental: bool,
    strict: bool = True,
) -> None:
    """Fold every journal line past the marks into the aggregates.

    Raises _Rebuild (before changing anything, when `incremental`) if a mark no
    longer holds; in a cold read (not `incremental`) if a listed segment
    vanished and `strict`.
    """
    peers = journal.peers(journal_dir)
    if incremental:
        gone = sorted(set(state.marks) - set(peers))
        if gone:
            raise _Rebuild(f"journal directory of {', '.join(gone)} is gone")
    todo: list[tuple[str, Path, Mark | None, BinaryIO]] = []
    try:
        # First check every mark, then read: a stale mark must leave the state untouched.
        for peer in peers:
            segs = journal.segments(journal_dir / peer)
            marks = state.marks.get(peer, {})
            if incremental:
                gone = sorted(set(marks) - {s.name for s in segs})
                if gone:
                    raise _Rebuild(
                        f"{journal_dir / peer}: segment {gone[0]} is gone (compacted or removed)"
                    )
            for seg in segs:
                try:
                    f: BinaryIO = open(seg, "rb")  # noqa: SIM115 (closed below, all together)
                except FileNotFoundError:
                    if not incremental and not strict:
                        continue  # as journal.read_peer does
                    raise _Rebuild(f"{seg}: vanished while read") from None
                todo.append((peer, seg, marks.get(seg.name), f))
                mark = marks.get(seg.name)
                if mark is not None:
                    size = os.fstat(f.fileno()).st_size
                    if size < mark.consumed:
                        raise _Rebuild(f"{seg}: shrank from {mark.consumed} to {size} bytes")
                    if fingerprint(f, mark.consumed) != mark.fingerprint:
                        raise _Rebuild(f"{seg}: no longer starts with the lines read before")
        for peer, seg, mark, fh in todo:
            _fold_segment(state, peer, seg, mark, fh, progress)
    finally:
        for _, _, _, fh in todo:
            fh.close()


def _fold_segment(
    state: MergeState, peer: str, seg: Path, mark: Mark | None, f: BinaryIO, progress: Progress
) -> None:
    """Parse a segment's complete lines past its mark; a torn last line waits for its end."""
    if mark is None:
        mark = Mark(0, 0, 0, b"")
    f.seek(mark.consumed)
    data = f.read()
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
        state.aggregates.add(rows)
        state.touched.update(r[2] for r in rows)
        consumed = mark.consumed + end
        mark = Mark(
            consumed,
            mark.lines + data.count(b"\n", 0, end),
            mark.events + len(rows),
            fingerprint(f, consumed),
        )
        progress.new_events += len(rows)
        progress.new_bytes += end
    marks = state.marks.setdefault(peer, {})
    if marks.get(seg.name) != mark:
        marks[seg.name] = mark
        progress.changed = True


# --- the tables ------------------------------------------------------------------------------


def _row(ip: str, r: tuple[Any, ...]) -> Row:
    t, kind, mac, client, host, secs, peer, source, infinite, since = r
    return (
        t,
        kind,
        ip,
        mac,
        text_out(client),
        text_out(host),
        secs,
        peer,
        source,
        bool(infinite),
        since,
    )


LATEST: Spec[str, Row] = Spec(
    "latest",
    ("ip",),
    ("t", "kind", "mac", "client", "host", "secs", "peer", "source", "infinite", "since"),
    lambda ip: (ip,),
    lambda ip, r: (ip, *r[:2], r[3], text_in(r[4]), text_in(r[5]), *r[6:]),
    _row,
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
LINES: Spec[str, str] = Spec(
    "lines",
    ("name",),
    ("line",),
    lambda n: (n,),
    lambda n, v: (n, v),
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
_SPECS: tuple[Spec[Any, Any], ...] = (LATEST, ENDS, VERDICTS, OUTCOME, WINNER, LINES, RIVALS)
_SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS marks (peer TEXT, segment TEXT, consumed INTEGER, "
    "lines INTEGER, events INTEGER, fingerprint BLOB, PRIMARY KEY (peer, segment)) WITHOUT ROWID",
    *(ddl for spec in _SPECS for ddl in spec.ddl()),
]


def load(state_dir: Path) -> MergeState | None:
    """The saved state, or None (logged) when there is none usable.

    The state's tables are read as they are used, in one read transaction
    begun here: what a build reads is one consistent snapshot.
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
        meta = dict(db.execute("SELECT key, value FROM meta"))
        if meta.get("stamp") != STAMP:
            raise ValueError(f"written by another version ({meta.get('stamp')})")
        marks: dict[str, dict[str, Mark]] = {}
        for peer, seg, consumed, lines, events, fp in db.execute("SELECT * FROM marks"):
            marks.setdefault(peer, {})[seg] = Mark(consumed, lines, events, bytes(fp))
        state = MergeState(
            Aggregates(Table(db, LATEST), Table(db, ENDS)),
            marks,
            (str(meta["domain"]), str(meta["name_policy"])),
            Table(db, VERDICTS),
            None,
            db=db,
            path=path,
        )
        if meta.get("resolved"):
            state.resolved = Resolved(
                bytes(meta["fingerprint"]),
                int(meta["now"]),
                Table(db, OUTCOME),
                Table(db, WINNER),
                Table(db, RIVALS),
                Table(db, LINES),
                bytes(meta["data_digest"]),
            )
        return state
    except FileNotFoundError:
        return None
    except sqlite3.OperationalError as e:  # disk full, I/O error: build without it this time
        log.warning("%s: cannot read the merge state (%s); building from the journals", path, e)
        if db is not None:
            db.close()
        return None
    except (sqlite3.Error, ValueError, KeyError, TypeError) as e:
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


def save(state_dir: Path, state: MergeState, bindings: Sequence[Binding] = ()) -> None:
    """Keep the state for the next build, in one transaction (a failure only costs a cold
    build later).

    Cached verdicts for names no live binding asks for go once they outnumber
    the live `bindings`.
    """
    path = state_dir / STATE_FILE
    try:
        _save(path, state, bindings)
    except sqlite3.Error as e:
        # Rolled back: the file still holds the last build's state, and the next build
        # catches up from there. The state in memory stays readable for this build.
        log.error("%s: cannot save the merge state (%s); the next build catches up", path, e)
        if store.damaged(e):
            drop(state)


def _save(path: Path, state: MergeState, bindings: Sequence[Binding]) -> None:
    if state.db is None:
        state.db, state.path = store.connect(path, create=True), path
    db = state.db
    if not db.in_transaction:
        db.execute("BEGIN IMMEDIATE")
    try:
        for ddl in _SCHEMA:
            db.execute(ddl)
        agg = state.aggregates
        _prune(db, agg)
        _put(db, LATEST, agg.latest)
        _put(db, ENDS, agg.ends)
        _gc_verdicts(state, bindings)
        _put(db, VERDICTS, state.verdicts)
        marks = [
            (p, s, m.consumed, m.lines, m.events, m.fingerprint)
            for p, segs in state.marks.items()
            for s, m in segs.items()
        ]
        db.execute("DELETE FROM marks")
        db.executemany("INSERT INTO marks VALUES (?, ?, ?, ?, ?, ?)", marks)
        res = None if state.touched else state.resolved
        meta: dict[str, object] = {
            "stamp": STAMP,
            "domain": state.verdict_key[0],
            "name_policy": state.verdict_key[1],
            "resolved": res is not None,
        }
        if res is not None:
            _put(db, OUTCOME, res.outcome)
            _put(db, WINNER, res.winner)
            _put(db, RIVALS, res.rivals)
            _put(db, LINES, res.lines)
            meta.update(fingerprint=res.fingerprint, now=res.now, data_digest=res.data_digest)
        db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
        db.execute("COMMIT")
        # Into the database file now, as far as no reader still needs the old pages.
        db.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    if isinstance(agg.ends, Table):
        agg.ends.forget()  # rows _prune deleted may still be cached


def _prune(db: sqlite3.Connection, agg: Aggregates) -> None:
    """Forget releases/expiries that can never end a binding again (see Aggregates.prune)."""
    latest = agg.latest
    if not isinstance(latest, Table) or latest.db is not db:
        agg.prune()
        return
    if isinstance(agg.ends, Table):
        agg.ends.flush()
    changed = [(ip, r[0]) for ip, r in latest.changes().items() if r is not store.ABSENT]
    db.executemany("DELETE FROM ends WHERE ip = ? AND t < ?", changed)


def _gc_verdicts(state: MergeState, bindings: Sequence[Binding]) -> None:
    res = state.resolved
    live = len(res.outcome) if res is not None and not state.touched else len(bindings)
    if len(state.verdicts) <= 2 * live + 1000:
        return
    if res is not None and not state.touched:
        latest = state.aggregates.latest
        keep = {(r := latest[ip])[5] or r[4] for ip in res.outcome}
    else:
        keep = {b.name for b in bindings}
    state.verdicts = {k: v for k, v in state.verdicts.items() if k in keep}
