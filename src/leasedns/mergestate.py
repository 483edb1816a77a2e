"""The merge aggregates kept between builds: a build parses only the journal lines appended since.

The aggregates (`merge.Aggregates`) are maxima over the set of events, so the
lines a segment gained since the last build can simply be folded in. What was
already folded in is remembered per segment file as a byte count plus a
fingerprint of the bytes before it; a segment that vanished, shrank or no
longer starts with those bytes (rewritten, compacted, replaced), a peer
directory that disappeared, or a state file that is missing, damaged or from
another version all mean: rebuild from every journal line, exactly as a cold
build does. That keeps the mass-delete guard honest when a journal is lost.

The file is a cache, never the truth: deleting it costs one cold build.
"""

from __future__ import annotations

import hashlib
import logging
import marshal
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from . import __version__, journal
from .merge import Aggregates, Binding, Settings
from .publish import write_atomic
from .resolved import Resolved

log = logging.getLogger("leasedns.mergestate")

STATE_FILE = "merge-state.bin"
VERSION = 3  # 2: rows carry `since`; 3: the last resolve's outcome
MAGIC = b"leasedns merge state\n"
WINDOW = 4096  # fingerprint: hashes of up to this many bytes at the start and before the mark
# Anything that can change how a line parses or a name is judged invalidates the file.
STAMP = f"{VERSION}/{__version__}/{sys.version_info[0]}.{sys.version_info[1]}/{marshal.version}"

Verdicts = dict[str, tuple[str | None, str]]  # raw client name -> (label or None, note)


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
    if state is not None:
        try:
            _fold(journal_dir, state, progress, incremental=True)
        except _Rebuild as e:
            progress.rebuilt = str(e)
            state = None
    else:
        progress.rebuilt = "no saved merge state"
    if state is None:
        for attempt in range(3):
            state = MergeState()
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


def dumps(state: MergeState) -> bytes:
    """The state file's bytes: magic, stamp, checksum, then the marshalled state."""
    agg = state.aggregates
    agg.prune()
    body = marshal.dumps(
        (  # type: ignore[arg-type]  # nested dicts/tuples of plain values
            agg.latest,
            agg.ends,
            {
                p: {s: (m.consumed, m.lines, m.events, m.fingerprint) for s, m in segs.items()}
                for p, segs in state.marks.items()
            },
            state.verdict_key,
            state.verdicts,
            None if state.resolved is None or state.touched else state.resolved.as_tuple(),
        )
    )
    digest = hashlib.blake2b(body, digest_size=16).digest()
    return MAGIC + STAMP.encode() + b"\n" + digest + body


def loads(data: bytes) -> MergeState:
    """Inverse of `dumps`; ValueError when the bytes are not a state this code wrote."""
    head = MAGIC + STAMP.encode() + b"\n"
    if not data.startswith(head):
        raise ValueError("written by another version")
    digest, body = data[len(head) : len(head) + 16], data[len(head) + 16 :]
    if hashlib.blake2b(body, digest_size=16).digest() != digest:
        raise ValueError("checksum mismatch (damaged)")
    try:
        latest, ends, marks, verdict_key, verdicts, resolved = marshal.loads(body)
        state = MergeState(
            Aggregates(latest, ends),
            {p: {s: Mark(*m) for s, m in segs.items()} for p, segs in marks.items()},
            tuple(verdict_key),
            verdicts,
            None if resolved is None else Resolved.from_tuple(resolved),
        )
    except (EOFError, TypeError, ValueError) as e:
        raise ValueError(f"unreadable ({e})") from None
    return state


def load(state_dir: Path) -> MergeState | None:
    """The saved state, or None (logged) when there is none usable."""
    path = state_dir / STATE_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("%s: cannot read the merge state (%s); rebuilding it", path, e.strerror)
        return None
    try:
        return loads(data)
    except ValueError as e:
        log.warning("%s: merge state %s; rebuilding it from the journals", path, e)
        return None


def save(state_dir: Path, state: MergeState, bindings: Sequence[Binding] = ()) -> None:
    """Keep the state for the next build (atomically; a failure only costs a cold build later).

    Cached verdicts for names no live binding asks for go once they outnumber
    the live `bindings`.
    """
    live = len(state.resolved.outcome) if state.resolved is not None else len(bindings)
    if len(state.verdicts) > 2 * live + 1000:
        if state.resolved is not None:
            latest = state.aggregates.latest
            keep = {(r := latest[ip])[5] or r[4] for ip in state.resolved.outcome}
        else:
            keep = {b.name for b in bindings}
        state.verdicts = {k: v for k, v in state.verdicts.items() if k in keep}
    path = state_dir / STATE_FILE
    try:
        # A cache: a crash may leave it torn, which its checksum detects (a cold build follows).
        write_atomic(path, dumps(state), 0o640, durable=False)
    except OSError as e:
        log.error("%s: cannot save the merge state: %s", path, e.strerror)
