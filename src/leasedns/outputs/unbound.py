"""The unbound output: the records as Unbound local data, loaded into the running resolver
with `unbound-control local_datas` and taken out with `local_datas_remove` (each a batch of
lines on stdin), so that no configuration file is written and Unbound is never restarted.

Each record is `name. TTL IN A ip` (and `rev. TTL IN PTR name.` when it has the PTR), with
TTL the configured ttl, or less when the lease ends sooner. Local data has no time-to-die:
a binding leaves at its lease end through the apply the timer runs then.

Unbound keeps runtime local data in memory only: a restart or `unbound-control reload`
drops it. A note in the state directory (named after the control command) lists the owner
names (forward and reverse) this output loaded and the outcome they make. `serving()` reads
what Unbound holds (`list_local_data`): when a name of the note is missing, Unbound lost
our data and the outcome is not known, so the next publish compares and loads it again.
Names Unbound holds that the note does not list come from unbound.conf: they are never
removed nor added to; a binding that claims one is skipped and reported as a problem.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from leasedns.errors import PublishError
from leasedns.fsutil import Runner, write_atomic
from leasedns.model import Changes, Desired, Record, Serving, reverse_name

if TYPE_CHECKING:
    from leasedns.config import UnboundOutput

log = logging.getLogger("leasedns.unbound")

# A name that may reach Unbound: dot-separated labels of letters, digits, '-' and '_',
# none empty, none longer than 63, at most 253 in all. Anything else (spaces, quotes,
# a newline that would start another line of the batch) is refused before it gets there.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_IPV4 = re.compile(
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}"
)
# What the problems say about a name unbound.conf defines.
CONF_NAME = "is defined in unbound.conf"

Held = dict[str, frozenset[tuple[int, str, str]]]  # owner -> {(ttl, type, rdata)}


def memo_name(control: Iterable[str]) -> str:
    """The note of one Unbound in the state directory (named after its control command, so
    that two Unbounds, or a reordered output list, keep their own notes)."""
    key = hashlib.blake2b(" ".join(control).encode("utf-8", "surrogateescape"), digest_size=6)
    return f"published-unbound-{key.hexdigest()}.json"


def valid(r: Record) -> bool:
    """The record's name and address may go into a line for Unbound."""
    return (
        len(r.name) <= 253 and _NAME.fullmatch(r.name) is not None and bool(_IPV4.fullmatch(r.ip))
    )


def ttl_of(r: Record, ttl: int, now: int) -> int:
    """The configured ttl, or the seconds left of the lease when fewer."""
    return ttl if r.ttd is None else max(0, min(ttl, r.ttd - now))


def rrs(r: Record, ttl: int) -> dict[str, tuple[int, str, str]]:
    """The record's owner names, each with its one RR (ttl, type, rdata)."""
    out = {r.name.lower(): (ttl, "A", r.ip)}
    if r.ptr:
        out[reverse_name(r.ip)] = (ttl, "PTR", r.name.lower() + ".")
    return out


def data_lines(r: Record, ttl: int) -> list[str]:
    """The `local_datas` lines of one record."""
    return [f"{owner}. {t} IN {kind} {rdata}\n" for owner, (t, kind, rdata) in rrs(r, ttl).items()]


def parse_local_data(text: str) -> Held:
    """`unbound-control list_local_data` output (`owner.<TAB>ttl<TAB>IN<TAB>type<TAB>rdata`
    lines) by owner name (lowercase, no trailing dot)."""
    held: dict[str, set[tuple[int, str, str]]] = {}
    for line in text.splitlines():
        f = line.split("\t", 4)
        if len(f) < 5 or not f[1].isdigit():
            continue
        owner = f[0].lower().rstrip(".")
        rr = (int(f[1]), f[3].upper(), f[4].strip().lower())
        got = held.get(owner)
        if got is None:
            held[owner] = {rr}
        else:
            got.add(rr)
    return {k: frozenset(v) for k, v in held.items()}


@dataclass(frozen=True, slots=True)
class Loaded:
    """What a publish did."""

    changed: bool  # a batch went to Unbound
    compiled: bool  # the same: its control commands ran and succeeded
    compile_secs: float
    problems: list[str] = field(default_factory=list)  # bindings skipped, and why


@dataclass(slots=True)
class _Note:
    token: str = ""
    owners: set[str] = field(default_factory=set)  # owner names that may be ours
    records: dict[str, Record] = field(default_factory=dict)  # what we loaded, by name
    # Names a binding claims but unbound.conf defines: not loaded, tried again at each apply.
    waiting: set[str] = field(default_factory=set)


class Unbound:
    """One running Unbound, driven through its control command."""

    proven = False  # the server can change behind leasedns's back

    def __init__(
        self,
        spec: UnboundOutput,
        ttl: int,
        state_dir: Path,
        runner: Runner | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.control, self.timeout, self.ttl = tuple(spec.control), spec.timeout, ttl
        self.name = f"unbound {' '.join(self.control)}"
        self.memo, self.runner, self.clock = state_dir / memo_name(self.control), runner, clock
        self._note = _Note()
        self._held: Held | None = None
        self._down: PublishError | None = None
        self._token = ""

    # --- what it serves ------------------------------------------------------------------

    def serving(self) -> Serving:
        """The outcome Unbound holds: the note's, when Unbound still holds every name the note
        lists (else "": restarted or reloaded); the dynamic records it holds of ours. When
        Unbound cannot be asked, the outcome is not known and publish says why."""
        self._note = self._read_note()
        self._down, self._held = None, None
        try:
            self._held = parse_local_data(self._run("list_local_data", b""))
        except PublishError as e:
            self._down = e
        note, held = self._note, self._held
        lost = held is None or any(o not in held for o in note.owners)
        self._token = "" if lost else note.token
        return Serving(self._token, lambda: self._served(note, held))

    def held(self) -> list[Record]:
        """The dynamic records of ours Unbound holds now (asked by list_local_data)."""
        serving = self.serving()
        if self._down is not None:
            raise self._down
        return serving.records()

    @staticmethod
    def _served(note: _Note, held: Held | None) -> list[Record]:
        out = []
        for r in note.records.values():
            if r.static:
                continue
            if held is not None:
                got = held.get(r.name.lower(), frozenset())
                if not any(kind == "A" and ip == r.ip for _t, kind, ip in got):
                    continue
            out.append(r)
        return out

    # --- publishing ----------------------------------------------------------------------

    def publish(self, desired: Desired, changes: Changes) -> Loaded:
        """Serve the outcome `changes.token`: send the changes when Unbound holds `changes.base`,
        else compare everything with what it holds and send the difference."""
        if self._held is None and self._down is None:
            self.serving()
        if self._down is not None:
            raise self._down
        assert self._held is not None
        held, note, now = self._held, self._note, int(self.clock())
        foreign = {o for o in held if o not in note.owners}
        problems: list[tuple[str, str]] = []  # (what, the waiting name it is about)
        skipped: set[str] = set()
        if changes.base and changes.base == self._token:
            gone, new, renewed = self._delta(desired, changes)
            retry = note.waiting - {r.name for r in gone} - {r.name for r in new}
            if retry:  # still live and still claimed? Tried again: unbound.conf may let go
                new += [r for r in desired.dynamic() if r.name in retry]
            load = self._admit(new, foreign, now, problems, skipped)
            drop = {o for r in gone for o in rrs(r, 0)}
            names = {g.name for g in gone}
            records = {n: r for n, r in note.records.items() if n not in names}
            records.update((r.name, r) for r in renewed)
        else:
            admitted = self._admit(
                [*desired.static, *desired.dynamic()], foreign, now, problems, skipped
            )
            want = {o: rr for r in admitted for o, rr in rrs(r, ttl_of(r, self.ttl, now)).items()}
            drop = {o for o in note.owners if o not in want or held.get(o) != frozenset((want[o],))}
            load = [
                r
                for r in admitted
                if any(
                    held.get(o) != frozenset((rr,))
                    for o, rr in rrs(r, ttl_of(r, self.ttl, now)).items()
                )
            ]
            records = {r.name: r for r in admitted}
        drop |= {o for r in load for o in rrs(r, 0)}
        drop = {o for o in drop if o in note.owners and o in held}  # never unbound.conf's
        records.update((r.name, r) for r in load)
        for p, name in problems:
            if name not in note.waiting:  # said once in the log; every build's report has it
                log.warning("%s", p)
        t0 = time.monotonic()
        if drop or load:
            # Nothing half recorded: until both batches went through, the note says the
            # outcome is not known and lists every name that may be ours.
            loading = {o for r in load for o in rrs(r, 0)}
            self._write_note(_Note("", note.owners | loading, records))
            if drop:
                self._run("local_datas_remove", "".join(f"{o}.\n" for o in sorted(drop)).encode())
            if load:
                lines = [ln for r in load for ln in data_lines(r, ttl_of(r, self.ttl, now))]
                self._run("local_datas", "".join(lines).encode())
        secs = time.monotonic() - t0
        # A skipped binding waits: each apply tries it again (and reports it), and loads it
        # once unbound.conf no longer holds the name.
        token = changes.token
        owners = {o for r in records.values() for o in rrs(r, 0)}
        new_note = _Note(token, owners, records, skipped)
        if drop or load or new_note != note:
            self._write_note(new_note)
        self._note, self._token = new_note, token
        self._held = None  # what it holds now: read again by the next serving()
        sent = bool(drop or load)
        return Loaded(sent, sent, secs, [p for p, _name in problems])

    def _admit(
        self,
        records: Iterable[Record],
        foreign: set[str],
        now: int,
        problems: list[tuple[str, str]],
        skipped: set[str],
    ) -> list[Record]:
        """The records that may go to Unbound: live, with a valid name, and not clobbering
        a name unbound.conf defines (a PTR unbound.conf gives is left out alone)."""
        out: list[Record] = []
        for r in records:
            if r.ttd is not None and r.ttd <= now:
                continue  # its lease has ended
            if not valid(r):
                problems.append(
                    (f"{self.name}: {r.name!r} ({r.ip}) is not a valid DNS name; not added", "")
                )
                continue
            if r.name.lower() in foreign:
                problems.append(
                    (
                        f"{self.name}: {r.name} {CONF_NAME}; the binding {r.ip} is not added "
                        "(rename the client, or take the name out of unbound.conf)",
                        r.name,
                    )
                )
                skipped.add(r.name)
                continue
            if r.ptr and reverse_name(r.ip) in foreign:
                problems.append(
                    (
                        f"{self.name}: the PTR of {r.ip} {CONF_NAME}; {r.name} gets its A "
                        "record only",
                        "",
                    )
                )
                r = Record(r.name, r.ip, r.ttd, False, r.static)
            out.append(r)
        return out

    def _delta(
        self, desired: Desired, changes: Changes
    ) -> tuple[list[Record], list[Record], list[Record]]:
        """The records to take out and to load: the engine's changes, and the fixed-address
        hosts that differ from the ones loaded; and the renewed ones (only the lease end
        moved), which stay loaded as they are: replacing them would take the name out for a
        moment (Unbound removes a whole name, then adds)."""
        renewed = [
            now
            for was, now in changes.changed
            if (was.ip, was.ptr) == (now.ip, now.ptr) and was.name in self._note.records
        ]
        moved = [(was, now) for was, now in changes.changed if now not in renewed]
        gone = changes.removed + [was for was, _now in moved]
        new = changes.added + [now for _was, now in moved]
        static = {r.name: r for r in desired.static}
        loaded = {r.name: r for r in self._note.records.values() if r.static}
        gone += [r for name, r in loaded.items() if static.get(name) != r]
        new += [r for name, r in static.items() if loaded.get(name) != r]
        return gone, new, renewed

    # --- the note ------------------------------------------------------------------------

    def _read_note(self) -> _Note:
        try:
            doc = json.loads(self.memo.read_text())
            records = {
                str(n): Record(str(n), str(ip), None if ttd is None else int(ttd), bool(p), bool(s))
                for n, ip, ttd, p, s in doc["records"]
            }
            waiting = {str(n) for n in doc.get("waiting", [])}
            return _Note(str(doc["token"]), {str(o) for o in doc["owners"]}, records, waiting)
        except FileNotFoundError:
            return _Note()
        except (OSError, ValueError, KeyError, TypeError) as e:
            # Without it, the names loaded before look like unbound.conf's and stay: only a
            # reload of Unbound (which drops runtime local data) lets the next apply load all.
            log.error(
                "%s: note %s unreadable (%s): run `unbound-control reload` so that names "
                "loaded before do not stay",
                self.name,
                self.memo,
                e,
            )
            return _Note()

    def _write_note(self, note: _Note) -> None:
        # Fsynced: a note lost in a crash would make the names loaded before look like
        # unbound.conf's (never removed) until Unbound reloads.
        doc = {
            "token": note.token,
            "owners": sorted(note.owners),
            "records": [[r.name, r.ip, r.ttd, r.ptr, r.static] for r in note.records.values()],
            "waiting": sorted(note.waiting),
        }
        write_atomic(self.memo, json.dumps(doc).encode(), 0o640)

    # --- the control command -------------------------------------------------------------

    def _run(self, command: str, data: bytes) -> str:
        """Run `control command` with `data` on stdin; its output, or PublishError when it
        cannot run, fails, times out, or reports an error for any line."""
        cmd = f"`{' '.join(self.control)} {command}`"
        check = (
            "is Unbound running, with remote-control enabled on the interface the control "
            "command uses (see conf/unbound-leasedns.conf)?"
        )
        run = self.runner or subprocess.run
        try:
            proc = run(
                [*self.control, command], input=data, capture_output=True, timeout=self.timeout
            )
        except FileNotFoundError:
            raise PublishError(
                f"{self.name}: {cmd}: {self.control[0]} not found; install unbound "
                "(it has unbound-control) or set the output's `control:`"
            ) from None
        except subprocess.TimeoutExpired:
            raise PublishError(
                f"{self.name}: {cmd} did not finish within {self.timeout:g} s (killed); {check}"
            ) from None
        except OSError as e:
            raise PublishError(f"{self.name}: {cmd}: {e}") from None
        out = (proc.stdout or b"").decode("utf-8", "replace")
        err = (proc.stderr or b"").decode("utf-8", "replace")
        if command == "list_local_data":
            bad = []
        else:
            bad = [ln for ln in (out + "\n" + err).splitlines() if "error" in ln.lower()]
        if proc.returncode != 0 or bad:
            said = "; ".join((bad or err.strip().splitlines() or out.strip().splitlines())[:3])
            raise PublishError(
                f"{self.name}: {cmd} failed (exit {proc.returncode})"
                f"{': ' + said if said else ''}; {check} The next apply compares again"
            )
        return out
