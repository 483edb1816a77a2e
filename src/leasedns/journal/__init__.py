"""Per-peer journals of lease events: segments, line format, append, compaction; their
replication (sync, inbox) and what this host holds of them."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import json.scanner
import logging
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leasedns.config import JOURNAL_MAX_BYTES, Config
from leasedns.errors import EventError, LeasednsError
from leasedns.fsutil import flocked, fsync_dir, write_all
from leasedns.journal import files
from leasedns.journal.files import Refused as Refused  # the journal's own error too
from leasedns.journal.lines import MAX_LINE_CHARS, row_from_json, row_from_line, to_line
from leasedns.model import INFINITE_LEASE, Event, Row, event_of, valid_peer

log = logging.getLogger("leasedns.journal")

# The whole name, ASCII digits only (`fullmatch`): `\d` takes any Unicode digit and `$` a
# trailing newline, and a partner could name a file so.
SEGMENT_RE = re.compile(r"events-([0-9]{8})\.jsonl")
LOCK = ".lock"
# An append starts a new segment once the last one holds this much: a build reads a
# changed segment again up to what it had read (see `mergestate`), so this bounds that.
ROLL_BYTES = 1 << 20
# A peer name is a plain label: it names a directory in every peer's journal root and in
# the partners' inboxes, so it may not be `.`, `..`, hidden, or hold a path separator.
OWNER = ".owner"  # the installation id of the leasedns that writes this journal directory
OWNER_BYTES = 256  # an id is 33 bytes; a longer `.owner` is not read


@dataclass(frozen=True, slots=True)
class Limits:
    """How much of one peer's journal directory leasedns reads, copies or keeps (README,
    "What a partner can and cannot do"), all from `journal.max_bytes`."""

    journal_bytes: int = JOURNAL_MAX_BYTES  # every segment of one journal together

    @property
    def segment_bytes(self) -> int:
        """One segment: a compaction writes every survivor into one."""
        return self.journal_bytes

    @property
    def segments(self) -> int:
        """Segments of one journal: every one but the last holds ROLL_BYTES when the next
        starts, and a compaction adds one before the old ones go."""
        return self.journal_bytes // ROLL_BYTES + 2

    @property
    def entries(self) -> int:
        """Entries of a journal directory: its segments, `.owner`, `.lock`, temporary files."""
        return self.segments + 64

    @classmethod
    def of(cls, cfg: Config) -> Limits:
        return cls(cfg.journal_max_bytes)


LIMITS = Limits()
# An append looks only for the last segment: it never fails on a bound (a bigger
# `journal.max_bytes` than the default must not stop this peer journaling).
_APPEND = Limits(1 << 62)


def segment_name(n: int) -> str:
    """File name of segment number n."""
    return f"events-{n:08d}.jsonl"


def segment_number(name: str) -> int | None:
    """The number of a segment's file name (None: not a segment's name)."""
    m = SEGMENT_RE.fullmatch(name)
    return int(m.group(1)) if m else None


@dataclass(slots=True)
class PeerJournal:
    """What one peer's journal holds, as read."""

    peer: str
    events: list[Event] = field(default_factory=list)
    bytes: int = 0
    segments: int = 0
    torn: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def last_time_us(self) -> int | None:
        return max((e.time_us for e in self.events), default=None)


def segments(peer_dir: Path, limits: Limits = LIMITS) -> list[Path]:
    """The peer's segment files, in order ([] when there is no such directory).

    Refused when `peer_dir` is no directory (a link is never followed), or holds more
    entries or segments than `limits` allow.
    """
    try:
        with files.Dir.at(peer_dir) as d:
            names = [n for n in d.names(limits.entries) if SEGMENT_RE.fullmatch(n)]
    except FileNotFoundError:
        return []
    if len(names) > limits.segments:
        raise Refused(
            f"{peer_dir}: {len(names)} segments, more than the {limits.segments} a journal "
            f"of journal.max_bytes ({limits.journal_bytes} bytes) holds; not read"
        )
    return [peer_dir / n for n in sorted(names)]


_PARSE_CHUNK = 1 << 14  # characters of journal text `parse_segment` parses at a time


def parse_segment(data: bytes, path: str, peer: str, into: PeerJournal) -> None:
    """Parse one segment's bytes (pure but for `into`); a torn last line is skipped."""
    end = data.rfind(b"\n") + 1
    if end < len(data):
        into.torn += 1
        log.info(
            "%s: ignoring a torn last line (%d bytes; a write in progress or cut short)",
            path,
            len(data) - end,
        )
    text = data[:end].decode("utf-8", "surrogateescape")
    # About a hundred lines at a time: rows (a tuple subclass, which the garbage collector
    # never stops tracking) that outlive a collection are traversed by the next ones, and a
    # whole segment's rows held at once made reading a fifth slower.
    pos, no, n = 0, 1, len(text)
    while pos < n:
        cut = text.find("\n", pos + _PARSE_CHUNK) + 1 or n
        rows = parse_rows(text[pos:cut], path, peer, into.problems, no)
        into.events.extend(map(event_of, rows))
        no += text.count("\n", pos, cut)
        pos = cut


_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # typeshed: the C scanner takes a decoder


def parse_rows(
    text: str, path: str, peer: str, problems: list[str], first_no: int = 1
) -> list[Row]:
    """The events of complete journal lines (`text` empty or ending in a newline) as rows.

    A line that does not parse is reported in `problems` as path:line (counting
    from `first_no`) and skipped. Each line is decoded in place with json's
    scanner; a line the scanner does not take whole goes through `json.loads`,
    so the outcome, error messages included, is that of `from_line` per line.
    """
    rows: list[Row] = []
    append = rows.append
    find = text.find
    scan = _scan
    pos, n, no = 0, len(text), first_no
    while pos < n:
        nl = find("\n", pos)
        if nl - pos > MAX_LINE_CHARS:  # characters: at least as many bytes
            problems.append(
                f"{path}:{no}: a line of {nl - pos} characters; a journal line holds at most "
                f"{MAX_LINE_CHARS}; line skipped"
            )
        elif nl != pos:
            try:
                try:
                    d, end = scan(text, pos)
                except (StopIteration, ValueError):
                    end = -1
                if end == nl:
                    append(row_from_json(d, peer))
                else:  # not one JSON value alone on its line: let json.loads say why
                    append(row_from_line(text[pos:nl], peer))
            except EventError as e:
                problems.append(f"{path}:{no}: {e}; line skipped")
        pos = nl + 1
        no += 1
    return rows


def read_peer(peer_dir: Path, limits: Limits = LIMITS, strict: bool = False) -> PeerJournal:
    """Read every segment of one peer, each through `files` and within `limits`.

    A segment that is no regular file or is over `limits.segment_bytes` is not
    read: a problem (`strict`: Refused, for a reader that must see every event or
    none, like `compact`).
    """
    pj = PeerJournal(peer_dir.name)
    try:
        segs = segments(peer_dir, limits)
    except Refused as e:
        if strict:
            raise
        segs = []
        pj.problems.append(f"{e}")
    for seg in segs:
        try:
            data = files.read(seg, limits.segment_bytes)
        except FileNotFoundError:  # compacted away while we listed
            continue
        except Refused as e:
            if strict:
                raise
            pj.problems.append(f"{e}; segment skipped")
            continue
        pj.bytes += len(data)
        pj.segments += 1
        parse_segment(data, str(seg), pj.peer, pj)
    for p in pj.problems:
        log.warning("%s", p)
    return pj


def peers(root: Path) -> list[str]:
    """Peer names that have a journal directory under root (a link is not one)."""
    try:
        with os.scandir(root) as it:
            return sorted(
                e.name for e in it if valid_peer(e.name) and e.is_dir(follow_symlinks=False)
            )
    except FileNotFoundError:
        return []


def read_all(root: Path, limits: Limits = LIMITS) -> dict[str, PeerJournal]:
    """Every peer's journal under root."""
    return {p: read_peer(root / p, limits) for p in peers(root)}


def sizes(peer_dir: Path, limits: Limits = LIMITS) -> list[tuple[int, int, int]]:
    """(number, size, mtime in ns) of each segment a reader would read, by lstat: links,
    other non-regular files and segments over the bound are left out; Refused as
    `segments` refuses."""
    out = []
    try:
        with files.Dir.at(peer_dir) as d:
            for name in d.names(limits.entries):
                n = segment_number(name)
                if n is None:
                    continue
                try:
                    st = d.regular(name, limits.segment_bytes)
                except (FileNotFoundError, Refused):  # compacted away; not read either
                    continue
                out.append((n, st.st_size, st.st_mtime_ns))
    except FileNotFoundError:
        return []
    if len(out) > limits.segments:
        raise Refused(f"{peer_dir}: more than {limits.segments} segments; not read")
    return sorted(out)


@contextmanager
def locked(peer_dir: Path) -> Iterator[None]:
    """Serialise writers of one peer's journal on this host (apply, record, reconcile)."""
    peer_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    with flocked(peer_dir / LOCK):
        yield


def read_owner(peer_dir: Path) -> str | None:
    """The installation id recorded in a journal directory (None: none recorded).

    Refused when `.owner` (or the directory) is a link, a FIFO, a device or longer than an
    id can be: it is never opened, so it can neither hang nor fill memory."""
    try:
        data = files.read(peer_dir / OWNER, OWNER_BYTES)
    except FileNotFoundError:
        return None
    return data.decode("ascii", errors="replace").strip() or None


class OwnerError(LeasednsError):
    """A journal directory belongs to another leasedns installation."""


def owner_problem(peer_dir: Path, owner: str, found: str | None) -> str:
    """The message for a journal directory written by another installation."""
    return (
        f"{peer_dir}: this journal belongs to leasedns installation {found}, not to this one "
        f"({owner}): another leasedns installation writes journal/{peer_dir.name}; give each "
        f"its own `peer:` (if this peer was reinstalled on purpose, remove {peer_dir / OWNER})"
    )


def write_small(path: Path, data: bytes) -> None:
    """Write a new file (0640) and fsync it; an existing one is removed first, never written
    through (callers write under a temporary name and rename)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def claim(peer_dir: Path, owner: str) -> None:
    """Record `owner` as the writer of `peer_dir` (once); OwnerError if another is recorded."""
    found = read_owner(peer_dir)
    if found is None:
        peer_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        tmp = peer_dir / f".{OWNER}.{os.getpid()}.tmp"
        try:
            write_small(tmp, (owner + "\n").encode("ascii"))
            with contextlib.suppress(FileExistsError):  # another process claimed it first
                os.link(tmp, peer_dir / OWNER)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        fsync_dir(peer_dir)
        found = read_owner(peer_dir)
    if found != owner:
        raise OwnerError(owner_problem(peer_dir, owner, found))


def append(
    peer_dir: Path,
    events: Iterable[Event],
    owner: str | None = None,
    key: bytes | None = None,
) -> int:
    """Append events durably (written and fsynced before returning); returns the count.

    With `owner` (this installation's id), the directory must be this
    installation's own (see `claim`): OwnerError otherwise, nothing written.
    With `key` (this installation's journal key, `signing`), each line carries its
    signature: a partner's copy can then give the line back (inbox.py).
    """
    data = "".join(to_line(e, key) for e in events).encode("utf-8", "surrogateescape")
    if not data:
        return 0
    with locked(peer_dir):
        if owner is not None:
            claim(peer_dir, owner)
        segs = segments(peer_dir, _APPEND)
        target = segs[-1] if segs else peer_dir / segment_name(1)
        if segs and _roll(target):
            target = peer_dir / segment_name(segment_number(target.name) + 1)  # type: ignore[operator]
        created = not target.exists()
        fd = _open_segment(target, os.O_RDWR | os.O_APPEND | os.O_CREAT)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # A torn line from a crash: end it, so it stays one bad line
                # (reported and skipped) instead of swallowing this event.
                data = b"\n" + data
            write_all(fd, data)
            os.fsync(fd)
        except OSError as e:
            # Take back a partial write (a full disk): a torn tail would otherwise stay a
            # damaged line for ever once the next append ends it.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise LeasednsError(f"{target}: cannot append to the journal: {e.strerror}") from e
        finally:
            os.close(fd)
        if created:
            fsync_dir(peer_dir)
    return data.count(b"\n") - data.startswith(b"\n")


def _open_segment(path: Path, flags: int) -> int:
    """A segment of this peer's own journal opened for writing: never through a link, and only
    a regular file (with shared storage, a partner can write the directory too)."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o640)
    except OSError as e:
        if e.errno != errno.ELOOP:
            raise
        raise Refused(f"{path}: a symbolic link, not a journal segment; never written") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise Refused(f"{path}: {files.kind(mode)}, not a journal segment; never written")
    return fd


def _roll(last: Path) -> bool:
    """Whether the next append goes to a new segment: the last one is full. A torn line
    at its end is ended first, so it stays one bad line, as an append to it would make it."""
    try:
        fd = _open_segment(last, os.O_RDWR | os.O_APPEND)
    except FileNotFoundError:
        return False
    try:
        size = os.fstat(fd).st_size
        if size < ROLL_BYTES:
            return False
        if os.pread(fd, 1, size - 1) != b"\n":
            write_all(fd, b"\n")
            os.fsync(fd)
        return True
    finally:
        os.close(fd)


def survivors(
    events: Iterable[Event], now_us: int, keep_us: int, skew_us: int = 30_000_000
) -> list[Event]:
    """The events of one peer's journal that can still matter to the merge (pure).

    An event goes when a later event of its own peer supersedes it (a commit by
    a later commit of the same address, a release/expiry by a later one of the
    same address and MAC: neither can win or end anything the later one does
    not), or when it is older than the longest lease plus a grace (every lease
    it could affect has ended), unless it is, or ends, an infinite lease.

    Only an event dated up to now supersedes; one dated later is kept and
    supersedes nothing. A peer whose clock is at most `skew_us` (the clock
    skew peers allow, `merge.Settings.clock_skew_secs`) behind this one takes
    events up to its now + `skew_us` as in effect, so there the event that
    superseded one dropped is in effect, not held back: a build there that
    already folded the dropped event in publishes what a build of the
    survivors alone publishes, and can follow the compaction (see
    `engine.cache`). (The rule needs nothing more of `skew_us`.)
    """
    commits: dict[str, Event] = {}  # per address its greatest commit
    ends: dict[tuple[str, str], Event] = {}  # per address and MAC its greatest release/expiry
    events = set(events)
    ahead = {e for e in events if e.time_us > now_us}
    for e in events - ahead:
        if e.kind.value == "commit":
            cur = commits.get(e.ip)
            if cur is None or e.key() > cur.key():
                commits[e.ip] = e
        else:
            k = (e.ip, e.mac)
            cur = ends.get(k)
            if cur is None or e.key() > cur.key():
                ends[k] = e
    cutoff = now_us - keep_us
    # An infinite lease (BOOTP, `infinite` lease time) never runs out, so neither its commit
    # nor the release or expiry that ends it ages out.
    infinite = {
        (c.ip, c.mac): c
        for c in commits.values()
        if c.lease_secs is not None and c.lease_secs >= INFINITE_LEASE
    }
    keep = [c for c in commits.values() if c.time_us >= cutoff or (c.ip, c.mac) in infinite]
    for k, e in ends.items():
        c = infinite.get(k)
        if e.time_us >= cutoff or (c is not None and e.time_us >= c.time_us):
            keep.append(e)
    keep.extend(ahead)
    return sorted(keep, key=Event.key)


def new_digest() -> Any:
    """The digest a build keeps of the bytes it read of a segment (see `engine.cache`)."""
    return hashlib.blake2b(digest_size=16)


def digest(data: bytes | memoryview) -> bytes:
    h = new_digest()
    h.update(data)
    return bytes(h.digest())


@dataclass(frozen=True, slots=True)
class Piece:
    """The complete lines at the start of a segment, as a build that read them marks them."""

    size: int  # bytes, up to and including the last newline
    lines: int
    events: int  # events parsed from them
    digest: bytes  # `digest` of those bytes


@dataclass(slots=True)
class Compaction:
    """What one `compact` did."""

    peer_dir: Path
    now_us: int  # no event dated later superseded one it dropped
    before: int = 0  # events
    after: int = 0
    replaced: dict[str, Piece] = field(default_factory=dict)  # the old segments, as compacted
    segment: str = ""  # the new one ("" when there was nothing to compact)
    written: Piece | None = None  # what it was written with


def compact(
    peer_dir: Path,
    now_us: int,
    keep_us: int,
    skew_us: int = 30_000_000,
    on_compacted: Callable[[Compaction], None] | None = None,
    key: bytes | None = None,
    limits: Limits = LIMITS,
) -> Compaction:
    """Rewrite the owner's journal as one segment of its survivors (each line signed with
    `key`, when given: see `append`).

    Crash-safe: the new segment is written under a temporary name, fsynced and
    renamed to the next segment number before the old ones are removed, so a
    reader (or an rsync to a partner) sees the old segments, or the old and the
    new (duplicates count once), or the new alone; never a half-written file.
    Refused, nothing changed, when a segment cannot be read within `limits`.

    `on_compacted` is called with the outcome once the new segment is in place,
    before the old ones go, under the journal lock (no append in between): the
    merge cache keeps it, to follow the compaction instead of reading every line
    again (see `engine.cache.note_compaction`).
    """
    out = Compaction(peer_dir, now_us)
    with locked(peer_dir):
        old = segments(peer_dir, limits)
        if not old:
            return out
        pj = PeerJournal(peer_dir.name)
        for seg in old:
            data = files.read(seg, limits.segment_bytes)
            had = len(pj.events)
            parse_segment(data, str(seg), pj.peer, pj)
            end = data.rfind(b"\n") + 1
            out.replaced[seg.name] = Piece(
                end, data.count(b"\n", 0, end), len(pj.events) - had, digest(memoryview(data)[:end])
            )
        keep = survivors(pj.events, now_us, keep_us, skew_us)
        target = peer_dir / segment_name(segment_number(old[-1].name) + 1)  # type: ignore[operator]
        tmp = peer_dir / f".{target.name}.tmp"
        blob = "".join(to_line(e, key) for e in keep).encode("utf-8", "surrogateescape")
        write_small(tmp, blob)
        os.replace(tmp, target)
        fsync_dir(peer_dir)
        out.before, out.after = len(pj.events), len(keep)
        out.segment, out.written = target.name, Piece(len(blob), len(keep), len(keep), digest(blob))
        if on_compacted is not None:
            on_compacted(out)
        for seg in old:
            seg.unlink()
        fsync_dir(peer_dir)
        log.info("%s: compacted %d events to %d", peer_dir, len(pj.events), len(keep))
        return out
