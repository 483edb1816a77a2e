"""Adopt what partners pushed, never losing an event this peer already holds.

A partner's `leasedns sync` pushes its whole journal root into this peer's
journal root under `.incoming-<partner>/` (a name no peer can have, so
journal readers skip it). Before each build, apply looks at each inbox:

- `.incoming-S/S/` is S's own journal. It replaces this peer's copy
  `journal/S/` when it holds every event that copy holds, except events
  compaction may drop (`journal.survivors`: superseded by a later event of
  the copy, or aged out). Pure growth is recognised by the segment files
  alone (every held segment still there and starting with the same bytes).
  A copy that would lose events (S restored from an old backup, a journal
  put back by hand) is refused: kept aside in `state_dir/refused/`, logged,
  and a CRITICAL problem for `status` until an acceptable copy arrives. The
  copy must come from the installation that wrote the one held (the `.owner`
  of the journal directory): another installation under S's name is refused.
- `.incoming-S/<this peer>/` is S's copy of this peer's journal. Events it
  holds that this peer's journal lacks, and that compaction here would not
  have dropped, are this peer's own events lost here (a restored backup):
  they are appended to the journal again, and reported; but only those whose
  line carries this installation's signature (`signing`). Any other is one S
  made or changed: refused, CRITICAL, never appended.

The inbox is a boundary: nothing in it is followed or opened but regular
files, every read is bounded (`files`, `journal.Limits` from
`journal.max_bytes`), and a copy that holds anything else (a link, a FIFO, a
device, a directory or a stray name where segments belong, too many or too
big segments) is refused as a whole, kept aside and reported; the other
copies and inboxes are still taken.

Adopting a copy replaces `journal/S/` segment by segment: each new or
changed segment is copied from the inbox under a temporary name,
then renamed into place; segments the copy no longer has go last. A reader
sees the old segments, old and new, or the new ones, never less.

A copy that replaces held segments (S compacted its journal) was checked
event by event; what that check proved is noted for the merge cache
(`cache.note`): the held segments it replaced, and the lines at the start of
each new segment that hold only events of those. The next build then follows
the compaction instead of reading every journal line again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leasedns import journal
from leasedns.config import Config
from leasedns.errors import LeasednsError
from leasedns.fsutil import fsync_dir, write_atomic
from leasedns.journal import files, identity, signing
from leasedns.journal.files import Refused
from leasedns.journal.lines import signed_events
from leasedns.journal.sync import INBOX_PREFIX
from leasedns.model import Event, format_time, valid_peer

log = logging.getLogger("leasedns.inbox")

INBOX_STATE = "inbox.json"
REFUSED_DIR = "refused"
REFUSED_KEPT = 4  # copies kept aside in all (the latest per inbox); with journal.max_bytes
WHY_FILE = "why.txt"  # in a copy kept aside: why it was refused, what was not kept
RECOVERED_SHOWN_SECS = 86400  # `status` warns about recovered events for a day
EXAMPLES = 3


@dataclass(slots=True)
class Outcome:
    """What one look at the inboxes did."""

    adopted: list[str] = field(default_factory=list)  # partners whose copy was taken
    refused: list[str] = field(default_factory=list)  # problems found this time
    recovered: int = 0  # own events appended again from a partner's copy
    problems: list[str] = field(default_factory=list)  # could not look (I/O)


def senders(journal_dir: Path) -> list[str]:
    """The names whose inbox is in `journal_dir` (valid peer names only)."""
    try:
        names = os.listdir(journal_dir)
    except FileNotFoundError:
        return []
    return sorted(
        n[len(INBOX_PREFIX) :]
        for n in names
        if n.startswith(INBOX_PREFIX) and valid_peer(n[len(INBOX_PREFIX) :])
    )


@dataclass(slots=True)
class Copy:
    """One journal copy in an inbox as listed (nothing in it read but `.owner`)."""

    dir: files.Dir
    segments: dict[str, os.stat_result]  # the regular segments within the bounds, by name
    owner: str | None = None
    problems: list[str] = field(default_factory=list)  # entries refused: the copy is refused
    fingerprint: str = ""  # what was listed: the copy is looked at again when it changes


def look(box: files.Dir, name: str, limits: journal.Limits) -> Copy:
    """List the copy `name` in an inbox without following or opening anything in it.

    It may hold regular segment files (canonical names), `.owner`, and hidden
    names (rsync's temporary files, never read); anything else, a segment over
    the bounds or too many of them is a problem of the copy. Refused when `name`
    is no directory; FileNotFoundError when it is not there.
    """
    copy = Copy(files.Dir.at(box.path / name, box), {})
    listed: list[tuple[object, ...]] = []
    try:
        names = sorted(copy.dir.names(limits.entries))
    except Refused as e:
        copy.problems.append(str(e))
        st = os.fstat(copy.dir.fd)
        copy.fingerprint = _digest([("over", st.st_ino, st.st_mtime_ns)])
        return copy
    total = 0
    for n in names:
        if n.startswith(".") and n != journal.OWNER:
            continue  # rsync's temporary files (and our own): never read
        try:
            st = copy.dir.lstat(n)
            listed.append((n, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino))
            if n == journal.OWNER:
                text = copy.dir.read(n, journal.OWNER_BYTES).decode("ascii", errors="replace")
                copy.owner = text.strip() or None
            elif journal.segment_number(n) is None:
                copy.problems.append(
                    f"{copy.dir.path}/{n!a}: {files.kind(st.st_mode)} whose name is no "
                    "journal segment's (events-NNNNNNNN.jsonl, ASCII digits) nor .owner; "
                    "never read"
                )
            else:
                copy.segments[n] = copy.dir.regular(n, limits.segment_bytes)
                total += st.st_size
        except FileNotFoundError:
            continue  # replaced by a sync arriving: its next look takes it
        except Refused as e:
            copy.problems.append(str(e))
    if len(copy.segments) > limits.segments:
        copy.problems.append(
            f"{copy.dir.path}: {len(copy.segments)} segments, more than the {limits.segments} "
            f"a journal of journal.max_bytes ({limits.journal_bytes} bytes) holds"
        )
    if total > limits.journal_bytes:
        copy.problems.append(
            f"{copy.dir.path}: {total} bytes of segments, over journal.max_bytes "
            f"({limits.journal_bytes})"
        )
    copy.fingerprint = _digest(listed)
    return copy


def _digest(items: list[tuple[object, ...]]) -> str:
    return hashlib.blake2b(repr(items).encode(), digest_size=16).hexdigest()


def held_fingerprint(peer_dir: Path, limits: journal.Limits) -> str:
    """The journal held here for a partner, as listed (segments, and the owner file)."""
    try:
        owner = os.lstat(peer_dir / journal.OWNER)
        has: tuple[int, ...] = (owner.st_size, owner.st_mtime_ns, owner.st_ino)
    except FileNotFoundError:
        has = ()
    return _digest([*journal.sizes(peer_dir, limits), has])


# Told of a compacted copy taken, whose survivors a reader of the journal may follow instead of
# reading them again: (journal directory, replaced segments, written segments, settled up to).
OnCompacted = Callable[[Path, dict[str, journal.Piece], dict[str, journal.Piece], int], None]


def receive(
    cfg: Config, now_us: int | None = None, on_compacted: OnCompacted | None = None
) -> Outcome:
    """Look at every inbox; adopt, refuse or recover (call under the build lock).

    Nothing in an inbox is followed, and every read from it is bounded (`files`,
    `journal.Limits`): a copy that holds anything else is refused, kept aside
    (its regular segments, within the bounds) and reported; the other copies and
    inboxes are still taken. `on_compacted` hears of every compacted copy taken
    (the engine's cache follows it)."""
    now_us = time.time_ns() // 1000 if now_us is None else now_us
    out = Outcome()
    limits = journal.Limits.of(cfg)
    senders_now = senders(cfg.journal_dir)
    state = load(cfg.state_dir)
    seen: dict[str, Any] = state.setdefault("seen", {})
    refused: dict[str, Any] = state.setdefault("refused", {})
    before = json.dumps(state, sort_keys=True)
    me = identity.installation_id(cfg.state_dir, cfg.journal_dir / cfg.peer)

    def refuse(key: str, problem: str, copy: Copy | None) -> None:
        if copy is None and refused.get(key, {}).get("problem") == problem:
            return  # told when it was found; status keeps telling
        kept = _keep_aside(cfg, key, copy, problem, now_us, limits) if copy is not None else ""
        refused[key] = {"time": format_time(now_us), "problem": problem, "kept": kept}
        log.error("%s", problem)
        out.refused.append(problem)

    for key in list(refused):  # an inbox removed by hand takes its refusal along
        if not _present(cfg.journal_dir, key):
            del refused[key]
    for sender in senders_now:
        box_path = cfg.journal_dir / (INBOX_PREFIX + sender)
        try:
            box = files.Dir.at(box_path)
        except FileNotFoundError:
            continue
        except Refused as e:
            refuse(f"{sender}/{sender}", f"{e}: an inbox is a directory; remove it", None)
            continue
        with box:
            for name in dict.fromkeys((sender, cfg.peer)):
                key = f"{sender}/{name}"
                try:
                    copy = look(box, name, limits)
                except FileNotFoundError:
                    continue
                except Refused as e:
                    refuse(key, f"{e}: a journal copy is a directory; remove it", None)
                    continue
                except OSError as e:
                    msg = f"{box_path / name}: cannot look at the partner's copy: {e}"
                    log.error("%s; tried again next run", msg)
                    out.problems.append(msg)
                    continue
                with copy.dir:
                    problem = _take(
                        cfg, sender, name, copy, me, limits, now_us, out, state, on_compacted
                    )
                    if problem:
                        refuse(key, problem, copy)
                    elif problem is not None:
                        refused.pop(key, None)
    for key in list(seen):
        sender, _, name = key.partition("/")
        if sender not in senders_now:
            del seen[key]
    if json.dumps(state, sort_keys=True) != before:
        save(cfg.state_dir, state)
    return out


def _present(journal_dir: Path, key: str) -> bool:
    """Whether what a refusal was about is still there (a link counts, whatever it points
    to)."""
    sender, _, name = key.partition("/")
    box = journal_dir / (INBOX_PREFIX + sender)
    if not box.is_dir() or box.is_symlink():
        return os.path.lexists(box)
    return os.path.lexists(box / name)


def _take(
    cfg: Config,
    sender: str,
    name: str,
    copy: Copy,
    me: str,
    limits: journal.Limits,
    now_us: int,
    out: Outcome,
    state: dict[str, Any],
    on_compacted: OnCompacted | None,
) -> str | None:
    """Adopt or recover from one copy: "" when done, a problem when refused, None when it was
    looked at as it is, or cannot be looked at now (tried again next run)."""
    key, src, seen = f"{sender}/{name}", copy.dir.path, state["seen"]
    # The copy as it is, and (for a partner's own journal) the one held here: a copy
    # removed or damaged here by hand is taken again, without waiting for a push.
    adopting = name == sender != cfg.peer
    now_listing = {"in": copy.fingerprint}
    if adopting:
        now_listing["held"] = held_fingerprint(cfg.journal_dir / sender, limits)
    if seen.get(key) == now_listing:
        return None
    try:
        if copy.problems:
            more = len(copy.problems) - EXAMPLES
            problem = (
                f"{src}: refusing this copy: {'; '.join(copy.problems[:EXAMPLES])}"
                + (f" (and {more} more)" if more > 0 else "")
                + ". A journal copy holds only regular segment files and .owner, within "
                "journal.max_bytes; nothing else in it is read. The journal held here stays"
            )
        elif sender == cfg.peer:
            problem = (
                f"{src}: another leasedns installation syncs under this peer's name "
                f"{cfg.peer!r} (its journal owner {copy.owner}, this one {me}): give each "
                f"its own `peer:`, then remove {src.parent}"
            )
        elif adopting:
            problem = _adopt(cfg, sender, copy, limits, now_us, out, on_compacted)
        else:
            problem = _recover(cfg, sender, copy, me, limits, now_us, out, state)
    except Refused as e:  # swapped for a link, a FIFO or something bigger while read
        problem = f"{e}; refusing this copy"
    except (OSError, LeasednsError) as e:
        msg = f"{src}: cannot take the partner's copy: {e}; tried again next run"
        log.error("%s", msg)
        out.problems.append(msg)
        return None
    if adopting and not problem:
        now_listing["held"] = held_fingerprint(cfg.journal_dir / sender, limits)
    seen[key] = now_listing
    return problem


def _adopt(
    cfg: Config,
    sender: str,
    copy: Copy,
    limits: journal.Limits,
    now_us: int,
    out: Outcome,
    on_compacted: OnCompacted | None,
) -> str:
    """Take `copy` (sender's own journal) as journal/<sender>; a problem ('' when taken)."""
    src, dst = copy.dir.path, cfg.journal_dir / sender
    theirs, held = copy.owner, journal.read_owner(dst)
    if theirs is None:
        return f"{src}: the copy names no owner ({journal.OWNER}); not taken"
    if held is not None and held != theirs:
        return (
            f"{src}: this copy of {sender}'s journal was written by leasedns installation "
            f"{theirs}, the one held by installation {held}: another installation syncs under "
            f"the name {sender!r}; give each its own `peer:` (if {sender} was reinstalled on "
            f"purpose, remove {dst / journal.OWNER})"
        )
    staged = _stage(copy, dst, limits)
    try:
        if not _grows(dst, staged, limits):
            mine, theirs_events, replaced, written = _read_both(dst, staged, limits)
            # Judged at the horizon of a build now (the partner's clock may be ahead by up to
            # the skew): an event dropped must be superseded by one in effect here.
            horizon = (now_us // 1_000_000 + cfg.clock_skew_secs) * 1_000_000
            lost = _lost(
                mine,
                theirs_events,
                horizon,
                (cfg.max_lease_secs + cfg.compact_grace_secs) * 1_000_000,
            )
            if lost:
                return (
                    f"{src}: refusing {sender}'s copy of its journal: it lacks {len(lost)} "
                    f"event(s) this peer holds in {dst} that compaction would have kept "
                    f"(e.g. {_examples(lost)}); {sender}'s journal went back (restored from a "
                    f"backup?). This peer's copy stays, and is pushed back to {sender}, which "
                    f"recovers them; to take the copy anyway, remove {dst}"
                )
            if replaced and written and on_compacted is not None:
                # Every event dropped was superseded by one dated up to the horizon, or aged
                # out: a build at this horizon or later can follow.
                on_compacted(dst, replaced, written, horizon)
        _install(dst, staged, theirs)
    finally:
        _unstage(staged)
    log.info(
        "%s: took %s's copy of its journal (%d segment(s) new or changed)",
        dst,
        sender,
        sum(t is not None for t in staged.values()),
    )
    out.adopted.append(sender)
    return ""


def _stage(copy: Copy, dst: Path, limits: journal.Limits) -> dict[str, Path | None]:
    """Copy each segment of `copy` that differs from `dst`'s under a temporary name in `dst`:
    a snapshot that a sync arriving meanwhile cannot change. Only regular files are copied,
    each at most the size it had when opened, and all of them together at most
    `limits.journal_bytes` (Refused beyond)."""
    dst.mkdir(mode=0o750, parents=True, exist_ok=True)
    held = {journal.segment_name(n): (size, mtime) for n, size, mtime in journal.sizes(dst)}
    staged: dict[str, Path | None] = {}  # None: a held segment the copy lacks
    left = limits.journal_bytes
    try:
        for name, st in sorted(copy.segments.items()):
            if held.get(name) == (st.st_size, st.st_mtime_ns):
                left -= st.st_size
                continue  # the same file as held (rsync -t keeps mtimes)
            tmp = dst / f".{name}.in.tmp"
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            try:
                # A copy, not a hard link: a file of the inbox rewritten in place (by hand, or
                # rsync --inplace) must not change the journal behind the checks' back.
                left -= copy.dir.copy(name, tmp, max(0, min(limits.segment_bytes, left)))
            except FileNotFoundError:
                continue  # replaced by a sync arriving: its next look takes it
            staged[name] = tmp
    except BaseException:  # a full disk, a bound passed: leave no partial copy behind
        _unstage(staged)
        raise
    # Segments the copy does not have at all go in `_install`; absent ones count as lost.
    staged.update({n: None for n in held if n not in copy.segments})
    return staged


def _unstage(staged: dict[str, Path | None]) -> None:
    for tmp in staged.values():
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def _grows(dst: Path, staged: dict[str, Path | None], limits: journal.Limits) -> bool:
    """Every held segment is still there and starts with the bytes held (no event read)."""
    for name, tmp in staged.items():
        if not (dst / name).exists():
            continue  # a new segment
        if tmp is None:
            return False  # a held segment the copy lacks
        if not _starts_with(tmp, dst / name, limits):
            return False
    return True


def _starts_with(path: Path, prefix_of: Path, limits: journal.Limits) -> bool:
    with (
        files.opened(prefix_of, limits.segment_bytes) as old,
        files.opened(path, limits.segment_bytes) as new,
    ):
        if os.fstat(new.fileno()).st_size < os.fstat(old.fileno()).st_size:
            return False
        while True:
            chunk = old.read(1 << 20)
            if not chunk:
                return True
            if new.read(len(chunk)) != chunk:
                return False


def _read_both(
    dst: Path, staged: dict[str, Path | None], limits: journal.Limits
) -> tuple[list[Event], list[Event], dict[str, journal.Piece], dict[str, journal.Piece]]:
    """The events held and those of the copy (staged segments, and held ones it has
    unchanged), each segment read once; and for the merge cache's note, the held
    segments the copy replaces (their complete lines) and, per new segment of
    the copy, the lines at its start that hold only events of those."""
    peer = dst.name
    held: list[Event] = []
    copy: list[Event] = []
    replaced: dict[str, journal.Piece] = {}
    written: dict[str, journal.Piece] = {}
    dropped: set[Event] = set()
    problems: list[str] = []
    for seg in journal.segments(dst, limits):
        try:
            data = files.read(seg, limits.segment_bytes)
        except FileNotFoundError:
            continue
        evs = _parse(data, str(seg), peer, problems)
        held += evs
        if seg.name not in staged:
            copy += evs
        elif staged[seg.name] is None:
            replaced[seg.name] = _piece(data, evs)
            dropped.update(evs)
    for p in problems:
        log.warning("%s", p)
    for name, tmp in sorted(staged.items()):
        if tmp is not None:
            data = files.read(tmp, limits.segment_bytes)
            evs = _parse(data, f"{dst / name} (copy)", peer, [])
            copy += evs
            if replaced and not (dst / name).exists():
                covered = _covered(data, evs, dropped)
                if covered.size:
                    written[name] = covered
    return held, copy, replaced, written


def _parse(data: bytes, path: str, peer: str, problems: list[str]) -> list[Event]:
    pj = journal.PeerJournal(peer)
    journal.parse_segment(data, path, peer, pj)
    problems += pj.problems
    return pj.events


def _piece(data: bytes, events: list[Event]) -> journal.Piece:
    """A segment's complete lines, as a build that read them all marks them."""
    end = data.rfind(b"\n") + 1
    return journal.Piece(
        end, data.count(b"\n", 0, end), len(events), journal.digest(memoryview(data)[:end])
    )


def _covered(data: bytes, events: list[Event], have: set[Event]) -> journal.Piece:
    """The lines at the start of a segment (parsed as `events`) whose events are all in
    `have` (pure). None when a line is blank or no event: it is read again, and reported."""
    end = data.rfind(b"\n") + 1
    if len(events) != data.count(b"\n", 0, end):
        return journal.Piece(0, 0, 0, journal.digest(b""))
    n = next((i for i, e in enumerate(events) if e not in have), len(events))
    if n < len(events):
        end = 0
        for _ in range(n):
            end = data.index(b"\n", end) + 1
    return journal.Piece(end, n, n, journal.digest(memoryview(data)[:end]))


def _read_staged(
    dst: Path, staged: dict[str, Path | None], limits: journal.Limits, key: bytes
) -> tuple[list[Event], set[Event]]:
    """The events of the copy (staged segments, and held ones it has unchanged), and those
    of them a staged line carries with a valid signature under `key`."""
    pj = journal.PeerJournal(dst.name)
    signed: set[Event] = set()
    for seg in journal.segments(dst, limits):
        if seg.name not in staged:
            journal.parse_segment(files.read(seg, limits.segment_bytes), str(seg), pj.peer, pj)
    for name, tmp in staged.items():
        if tmp is not None:
            data = files.read(tmp, limits.segment_bytes)
            journal.parse_segment(data, f"{dst / name} (copy)", pj.peer, pj)
            text = data[: data.rfind(b"\n") + 1].decode("utf-8", "surrogateescape")
            signed |= signed_events(text, pj.peer, key)
    return pj.events, signed


def _lost(held: Iterable[Event], copy: Iterable[Event], now_us: int, keep_us: int) -> list[Event]:
    """Events held that the copy lacks and that compaction would not have dropped (pure).

    The journal of a peer is a set of events that only compaction shrinks; what
    compaction keeps of everything known (held and copy) must be in the copy.
    """
    have = set(copy)
    gone = set(held) - have
    if not gone:
        return []
    return [e for e in journal.survivors([*gone, *have], now_us, keep_us) if e in gone]


def _examples(events: list[Event]) -> str:
    return ", ".join(
        f"{e.kind.value} {e.ip} {e.mac} at {format_time(e.time_us)}" for e in events[:EXAMPLES]
    )


def _install(dst: Path, staged: dict[str, Path | None], owner: str) -> None:
    """Rename the staged segments into place, then drop those the copy no longer has."""
    for name, tmp in sorted(staged.items()):
        if tmp is not None:
            os.replace(tmp, dst / name)
    if journal.read_owner(dst) != owner:
        tmp = dst / f".{journal.OWNER}.in.tmp"
        journal.write_small(tmp, (owner + "\n").encode("ascii"))
        os.replace(tmp, dst / journal.OWNER)
    fsync_dir(dst)
    gone = [name for name, tmp in staged.items() if tmp is None]
    for name in gone:
        with contextlib.suppress(FileNotFoundError):
            (dst / name).unlink()
    if gone:
        fsync_dir(dst)


def _recover(
    cfg: Config,
    sender: str,
    copy: Copy,
    me: str,
    limits: journal.Limits,
    now_us: int,
    out: Outcome,
    state: dict[str, Any],
) -> str:
    """Append again this peer's events that `sender`'s copy holds and the journal lost; only
    those whose line carries this installation's signature: any other is refused."""
    src, own = copy.dir.path, cfg.journal_dir / cfg.peer
    if copy.owner is None:
        return ""  # a copy from before owners were recorded: nothing to tell it by
    if copy.owner != me:
        return (
            f"{src}: {sender} holds a journal named {cfg.peer!r} written by leasedns "
            f"installation {copy.owner}, not this one ({me}): another installation uses this "
            "peer's name; give each its own `peer:`"
        )
    key = signing.journal_key(cfg.state_dir)
    staged = _stage(copy, own, limits)
    try:
        if _grows_into(own, staged, limits):
            return ""
        mine = journal.read_peer(own, limits).events
        theirs, signed = _read_staged(own, staged, limits, key)
    finally:
        _unstage(staged)
    keep_us = (cfg.max_lease_secs + cfg.compact_grace_secs) * 1_000_000
    back = _lost(theirs, mine, now_us, keep_us)
    good = [e for e in back if e in signed]
    forged = [e for e in back if e not in signed]
    if good:
        journal.append(own, good, owner=me, key=key)
        out.recovered += len(good)
        msg = (
            f"recovered {len(good)} event(s) of {cfg.peer} from {sender}'s copy of its journal "
            f"(journal restored from a backup?), e.g. {_examples(good)}"
        )
        log.warning("%s", msg)
        rec = state.setdefault("recovered", [])
        rec.append({"time": format_time(now_us), "time_us": now_us, "message": msg})
        del rec[:-5]
    if not forged:
        return ""
    return (
        f"{src}: {sender}'s copy of this peer's journal holds {len(forged)} event(s) of "
        f"{cfg.peer} this journal lacks that carry no valid signature of this installation, "
        f"not recovered (e.g. {_examples(forged)}): forged or changed by {sender}, or written "
        "before journal lines were signed, or signed with a journal key since lost "
        f"({cfg.state_dir / signing.KEY_FILE}). Check {sender}; if they are real leases, "
        "`leasedns reconcile --fix` journals them again from the lease files"
    )


def _grows_into(own: Path, staged: dict[str, Path | None], limits: journal.Limits) -> bool:
    """The partner's copy is a prefix of this peer's journal: nothing in it is missing here."""
    for name, tmp in staged.items():
        if tmp is None:
            continue  # a segment held here that the copy lacks: nothing lost here
        if not (own / name).exists() or not _starts_with(own / name, tmp, limits):
            return False
    return True


def _keep_aside(
    cfg: Config, key: str, copy: Copy, problem: str, now_us: int, limits: journal.Limits
) -> str:
    """Keep a refused copy in state_dir/refused/ (the latest one per inbox); its path.

    Only its regular segment files and `.owner` are copied, each through `files`
    (nothing followed, nothing past its size or the bounds), beside `why.txt`: the
    problem and what was not kept. All copies kept together stay within
    REFUSED_KEPT copies and `limits.journal_bytes`: the oldest go first.
    """
    base = cfg.state_dir / REFUSED_DIR
    sender, _, name = key.partition("/")
    prefix = f"{sender}.{name}-"  # "." is in no peer name: one prefix per inbox
    target = base / f"{prefix}{now_us}"
    keep, left, skipped = [], limits.journal_bytes, []
    for seg, st in sorted(copy.segments.items()):
        if st.st_size <= left:
            keep.append(seg)
            left -= st.st_size
        else:
            skipped.append(f"{seg} ({st.st_size} bytes): over journal.max_bytes, not kept")
    try:
        base.mkdir(mode=0o750, exist_ok=True)
        _make_room(base, prefix, limits.journal_bytes - left, limits.journal_bytes)
        target.mkdir(mode=0o750)
        for seg in keep:
            try:  # at most its size when listed: the room made for it
                copy.dir.copy(seg, target / seg, copy.segments[seg].st_size)
            except (FileNotFoundError, Refused) as e:  # changed since it was listed
                skipped.append(f"{seg}: {e}, not kept")
        if copy.owner is not None:
            with contextlib.suppress(FileNotFoundError, Refused):
                copy.dir.copy(journal.OWNER, target / journal.OWNER, journal.OWNER_BYTES)
        why = "\n".join([problem, *copy.problems, *skipped]) + "\n"
        journal.write_small(target / WHY_FILE, why.encode("utf-8", "backslashreplace"))
        fsync_dir(target)
    except OSError as e:
        shutil.rmtree(target, ignore_errors=True)  # a full disk: no partial copy
        log.error("%s: cannot keep the refused copy: %s", target, e)
        return ""
    return str(target)


def _make_room(base: Path, prefix: str, need: int, most: int) -> None:
    """Remove copies kept aside before: the inbox's own, then the oldest, until one more of
    `need` bytes fits in REFUSED_KEPT copies and `most` bytes."""
    kept = []
    for d in base.iterdir():
        stamp = d.name.rpartition("-")[2]
        if not d.is_dir() or d.is_symlink() or not stamp.isdigit():
            continue
        if d.name.startswith(prefix):
            shutil.rmtree(d, ignore_errors=True)
            continue
        size = sum(f.lstat().st_size for f in d.iterdir())
        kept.append((int(stamp), size, d))
    kept.sort()
    while kept and (len(kept) + 1 > REFUSED_KEPT or sum(k[1] for k in kept) + need > most):
        shutil.rmtree(kept.pop(0)[2], ignore_errors=True)


def load(state_dir: Path) -> dict[str, Any]:
    """The inbox state: what was looked at, refusals, recoveries ({} when none)."""
    try:
        data = json.loads((state_dir / INBOX_STATE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save(state_dir: Path, state: dict[str, Any]) -> None:
    try:
        write_atomic(state_dir / INBOX_STATE, json.dumps(state, indent=1).encode(), 0o640)
    except OSError as e:
        log.error("%s: cannot save the inbox state: %s", state_dir / INBOX_STATE, e.strerror)


def status_problems(state_dir: Path, now_us: int) -> tuple[list[str], list[str]]:
    """(critical, warnings) for `status`: refused copies, and events recovered lately."""
    state = load(state_dir)
    critical, warnings = [], []
    refused = state.get("refused")
    for key, r in sorted(refused.items() if isinstance(refused, dict) else []):
        if isinstance(r, dict):
            kept = f" (kept in {r.get('kept')})" if r.get("kept") else ""
            critical.append(f"inbox {key} since {r.get('time')}: {r.get('problem')}{kept}")
    recovered = state.get("recovered")
    for r in recovered if isinstance(recovered, list) else []:
        t = r.get("time_us") if isinstance(r, dict) else None
        if isinstance(t, int) and now_us - t < RECOVERED_SHOWN_SECS * 1_000_000:
            warnings.append(f"{r.get('time')}: {r.get('message')}")
    return critical, warnings
