"""What each peer's journal held at the last published build, and the check that none went back.

A journal only grows, or is compacted; compaction (and rolling to a new
segment) always writes a segment numbered above every earlier one. So a
peer's journal that lost its directory or every segment, whose newest
segment number went down, or whose segments shrank or vanished without a
newer segment to take their place, has lost events: deleted, truncated, or
replaced by an older copy (a restored backup). The merge would then simply
drop that peer's names, and the mass-delete guard, which counts names, misses
it when the peer held no more than its share. This check refuses such a
build by its journals alone, until the journal comes back or the operator
confirms the loss with `leasedns apply --force`.

What was held is kept in `journals.json` in the state directory: per peer the
size of each segment, as listed (no journal line is read, so the check costs
a directory listing and a stat per segment).

That file is the floor, so losing it must not lower the bar: once anything was
published from the state directory, a `journals.json` that is missing,
unreadable or damaged refuses the build too (`Floor.lost`), until the file is
back or `--force` makes the journals as they are the floor again. Only a fresh
state directory, where nothing was ever published, starts without one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from leasedns import journal
from leasedns.errors import LeasednsError
from leasedns.fsutil import write_atomic

log = logging.getLogger("leasedns.holdings")

HOLDINGS_FILE = "journals.json"

Holdings = dict[str, "Holding"]  # peer -> what its journal holds


@dataclass(frozen=True, slots=True)
class Holding:
    """One peer's journal as listed: (segment number, size in bytes), by number."""

    segments: tuple[tuple[int, int], ...]

    @property
    def newest(self) -> int:
        return self.segments[-1][0] if self.segments else 0

    @property
    def bytes(self) -> int:
        return sum(size for _n, size in self.segments)

    def describe(self) -> str:
        if not self.segments:
            return "no segments"
        n = len(self.segments)
        return (
            f"{self.bytes} bytes in {n} segment{'s' if n != 1 else ''} up to "
            f"{journal.segment_name(self.newest)}"
        )


class HoldingsError(LeasednsError):
    """journals.json is there but cannot be read or is damaged (the message says which)."""


def survey(journal_dir: Path, limits: journal.Limits = journal.LIMITS) -> Holdings:
    """Every peer's journal under `journal_dir` as it is now (a listing and an lstat each):
    what a reader reads, so a segment it refuses (a link, over the bounds) is not held."""
    out: Holdings = {}
    for peer in journal.peers(journal_dir):
        try:
            segs = journal.sizes(journal_dir / peer, limits)
        except journal.Refused:  # more segments than a journal holds: none is read
            segs = []
        out[peer] = Holding(tuple((n, size) for n, size, _mtime in segs))
    return out


def regressions(before: Mapping[str, Holding], now: Mapping[str, Holding]) -> dict[str, str]:
    """Per peer whose journal lost what it held before, what went back (pure)."""
    out: dict[str, str] = {}
    for peer, was in sorted(before.items()):
        if not was.segments or not was.bytes:
            continue  # it held nothing: nothing can be lost
        cur = now.get(peer)
        if cur is None:
            out[peer] = f"its journal directory is gone (it held {was.describe()})"
            continue
        if not cur.segments or not cur.bytes:
            out[peer] = f"its journal is empty (it held {was.describe()})"
            continue
        if cur.newest < was.newest:
            out[peer] = (
                f"its journal went back to {cur.describe()} (it held {was.describe()}): "
                "an older copy, restored from a backup or put in place by hand?"
            )
            continue
        sizes = dict(cur.segments)
        for n, size in was.segments:
            now_size = sizes.get(n)
            if now_size is not None and now_size < size:
                out[peer] = (
                    f"{journal.segment_name(n)} shrank from {size} to {now_size} bytes "
                    "(truncated, or replaced by an older copy)"
                )
                break
            if now_size is None and cur.newest == was.newest:
                # Compaction writes a newer segment before old ones go; none is there.
                out[peer] = (
                    f"{journal.segment_name(n)} is gone with no newer segment to replace it "
                    "(deleted, or renamed)"
                )
                break
    return out


@dataclass(frozen=True, slots=True)
class Floor:
    """What `journals.json` says the journals held at the last published build."""

    held: Holdings | None  # None: the file is missing, unreadable or damaged
    # Why the floor is not known although a build was published ("" when it is known, or on a
    # fresh state directory): the build is refused until the file is back or --force.
    lost: str = ""

    @property
    def bar(self) -> Holdings:
        return self.held or {}


def load(state_dir: Path) -> Holdings | None:
    """What the journals held at the last published build; None when journals.json is
    missing. HoldingsError when it cannot be read or is damaged."""
    path = state_dir / HOLDINGS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {
            str(peer): Holding(tuple(sorted((int(n), int(size)) for n, size in segs)))
            for peer, segs in data["peers"].items()
        }
    except FileNotFoundError:
        return None
    except PermissionError as e:
        raise HoldingsError(
            f"cannot be read ({e.strerror}: left by a command run as another user, such as "
            "root? give it to the user apply runs as, mode 0640)"
        ) from None
    except OSError as e:
        raise HoldingsError(f"cannot be read ({e.strerror or e})") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise HoldingsError(f"is damaged ({e.__class__.__name__}: {e})") from None


def floor(state_dir: Path, published: str) -> Floor:
    """The floor for this build. `published` says what shows that a build was published from
    this state directory ("" when nothing does: a fresh one, where a missing file is no loss).
    A file that is there was written by a published build, so damage is always a loss."""
    path = state_dir / HOLDINGS_FILE
    try:
        held = load(state_dir)
    except HoldingsError as e:
        return Floor(None, f"{path} {e}")
    if held is None and published:
        return Floor(None, f"{path} is missing (deleted?), although {published}")
    return Floor(held)


def lost_floor(lost: str, journal_dir: Path) -> str:
    """The message of a build refused because the floor itself is lost."""
    return (
        f"refusing to publish: {lost}. It is the guard's floor: what each journal held at the "
        f"last published build; without it a journal under {journal_dir} that lost events "
        "since then would have its names vanish unnoticed. The old data keeps serving. Put "
        "the file back (from a backup of the state directory, or with its owner and mode "
        "fixed), or, if every peer's journal is complete, run `leasedns apply --force`: it "
        "publishes and makes what the journals hold now the floor."
    )


def save(state_dir: Path, holdings: Mapping[str, Holding]) -> str:
    """Keep what the journals hold now, for the next build's check; "" or why it failed."""
    data = {"peers": {peer: [list(s) for s in h.segments] for peer, h in sorted(holdings.items())}}
    try:
        write_atomic(state_dir / HOLDINGS_FILE, json.dumps(data).encode(), 0o640)
    except OSError as e:
        log.error("%s: cannot save: %s", state_dir / HOLDINGS_FILE, e.strerror)
        return f"{state_dir / HOLDINGS_FILE}: cannot save: {e.strerror or e}"
    return ""


def refusal(lost: Mapping[str, str], journal_dir: Path) -> str:
    """The message of a build refused because journals went back."""
    what = "; ".join(f"peer {peer} ({journal_dir / peer}): {why}" for peer, why in lost.items())
    return (
        f"refusing to publish: {what}. Its names would vanish with no event to explain it; "
        "the old data keeps serving. Put the journal back (a partner's sync brings its own "
        "journal again), or if the loss is intended (a peer retired), run "
        "`leasedns apply --force`."
    )
