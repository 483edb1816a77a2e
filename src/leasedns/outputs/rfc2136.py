"""The rfc2136 output: A and PTR records sent as RFC 2136 dynamic updates, signed with TSIG,
to a zone's primary (BIND, Knot, PowerDNS), over TCP.

**Ownership.** leasedns creates a name only where the zone has none (prerequisite "name not
in use"), and marks every name it creates with one TXT record at the same name:

    pc1.lab.example.  TXT  "leasedns owner=<owner> t=<event time, µs> end=<lease end|->"

It changes or deletes a name only when that name still holds exactly the A (or PTR) and the
TXT record it believes are there (value-dependent prerequisites, RFC 2136 section 2.4.2). A
name that existed before (a server, `www`, a printer's static A, a delegation), or that
another program changed, is never clobbered: the update's prerequisite fails, the name is
read again, and a name without the marker is left alone, remembered and reported.

**The zone as it is.** Only an authoritative answer's records owned by the name itself are
data at that name: a referral (a delegation), a CNAME at the name or a DNAME above it make
the name someone else's. A wildcard answers for names that do not exist, so whether a name
exists at all is asked with a prerequisite-only update ("name is in use", which no wildcard
satisfies and which changes nothing). A zone transfer lists the names as they are; every
name it shows that leasedns did not create is remembered, and never tried.

**One name fails alone.** A message whose prerequisites fail is split in halves and each
half sent again, down to single names; only a name whose own update failed is read back
and decided again.

**Two writers, one zone.** Both failover peers update the same primary. Each learns the
other's events late, so a prerequisite can fail because the partner has just published a
lease this peer has not seen yet. The name is then read again and decided again: the
marker says which event made the record (`t`) and when its lease ends (`end`), and this
peer replaces or deletes it only if it has seen that event or a newer one for that address
(`Desired.seen`), if that lease has ended, or if the outcome is final (`apply --force`).
Otherwise the record is the partner's newer news: it stays, and the name is tried again at
every apply until this peer has caught up. A record that changes hands is replaced in one
update message, so the name never disappears in between; a PTR is sent only once its name
points to its address.

**Time.** RFC 2136 has no time-to-die: a record leaves at lease end through the apply that
runs after it (the timer's), and its TTL is min(configured ttl, what is left of the lease).

**What it believes the server holds** is kept in a note in the state directory (per server,
zone and owner): each owned name's record and marker, the names held by others, and the
names waiting for this peer to catch up. Only the changes since the last successful
publish are sent; after a failure, a lost note or a different outcome, every name is
compared again (the note, or without one the zones read by AXFR).

**Self-repair.** Every publish asks each zone's SOA serial (and notes it after sending). A
serial that went back (RFC 1982) means the zone was reloaded from an older file, and at
most every `verify_secs` the zones are read whole anyway (a partner's updates move the
serial on and can hide a reload): what was published and is missing is sent again.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.tsig

from leasedns.errors import ConfigError, PublishError
from leasedns.fsutil import write_atomic
from leasedns.model import Changes, Desired, Record, Serving, reverse_address, reverse_name
from leasedns.outputs import dnsupdate, tsigkey

if TYPE_CHECKING:
    from leasedns.config import Rfc2136Output

log = logging.getLogger("leasedns.rfc2136")

NOTE_VERSION = 2
MAX_OPS = 400  # names changed per UPDATE message (at most; each message under 64 KiB)
ROUNDS = 4  # send, read back the names whose prerequisites failed, decide again: at most
SHOWN = 5  # names a report line lists (a hostile client can claim thousands)
# Names the engine publishes are labels of letters, digits and '-'; anything else is refused.
_NAME = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?")
_MARK = re.compile(r"leasedns owner=(\S+) t=(\d{1,20}) end=(\d{1,20}|-)")

# What holds a name leasedns did not create (said in reports). Below a delegation or a DNAME
# the zone holds no data of its own: a name there is not published either.
DELEGATION = "a delegation (NS)"
CNAME = "a CNAME"
DNAME = "a DNAME"
CUTS = frozenset({DELEGATION, DNAME})
BESIDE = "records another writer added beside leasedns's"
OTHER = "records of another writer"
_DNSSEC = frozenset({"RRSIG", "NSEC", "NSEC3"})  # beside every name of a signed zone


@dataclass(frozen=True, slots=True)
class Entry:
    """One owned name as leasedns writes it: its A (or PTR) record and its marker's times."""

    rdtype: str  # "A" or "PTR"
    value: str  # the address, or the name the PTR points to (no trailing dot)
    t: int  # the time (µs) of the event the record was made from; 0: a fixed-address host
    end: int | None  # when the lease ends (unix seconds); None: never

    def marker(self, owner: str) -> str:
        return f"leasedns owner={owner} t={self.t} end={'-' if self.end is None else self.end}"

    def ip(self, name: str) -> str:
        """The address this record is about."""
        return self.value if self.rdtype == "A" else reverse_address(name) or ""


def parse_marker(text: str, owner: str) -> tuple[int, int | None] | None:
    """(t, end) of a marker of `owner`; None for any other TXT."""
    m = _MARK.fullmatch(text)
    if m is None or m.group(1) != owner:
        return None
    return int(m.group(2)), None if m.group(3) == "-" else int(m.group(3))


@dataclass(slots=True)
class Sent:
    """What one publish did."""

    changed: bool = False  # some update was applied
    # Every name was decided and what it needed was sent: the zones hold the outcome, whose
    # token the note then keeps (whether or not anything had to be sent).
    settled: bool = False
    compile_secs: float = 0.0  # time spent talking to the server
    updates: int = 0  # UPDATE messages applied
    names: int = 0  # names changed
    restored: int = 0  # names published before that the server had lost, sent again
    problems: list[str] = field(default_factory=list)

    @property
    def compiled(self) -> bool:
        """The server-side step ran: an update was applied (a publish that sent nothing
        compiled nothing)."""
        return self.changed


@dataclass(frozen=True, slots=True)
class _Op:
    """One name's change, conditional on what the server is believed to hold (`have`)."""

    name: str
    have: Entry | None
    want: Entry | None


class Rfc2136:
    """One zone's primary (with its reverse zones), updated by RFC 2136."""

    proven = False  # the server can change behind leasedns's back

    def __init__(self, spec: Rfc2136Output, ttl: int, reverse: bool, state_dir: Path) -> None:
        self.spec, self.ttl, self.reverse = spec, ttl, reverse
        self.name = f"rfc2136 {spec.zone}@{spec.server}:{spec.port}"
        key = f"{spec.server}|{spec.port}|{spec.zone}|{spec.owner}".encode()
        self.memo = (
            state_dir / f"published-rfc2136-{hashlib.blake2b(key, digest_size=6).hexdigest()}.json"
        )
        self.zones = sorted([spec.zone, *spec.reverse_zones], key=len, reverse=True)
        self._suffixes = [(z, "." + z) for z in self.zones]
        self._zone_set = frozenset(self.zones)
        self._token = ""
        self._have: dict[str, Entry] | None = None  # owned names -> what the server holds
        # Names held by records leasedns did not create -> what holds them (DELEGATION, ...).
        self._foreign: dict[str, str] = {}
        self._cuts: set[str] = set()  # those of them that are delegations or DNAMEs
        self._blocked: set[str] = set()  # names the outcome wants that others hold
        self._deferred: set[str] = set()  # names holding a partner's record not seen here yet
        self._verified = 0  # when (unix s) the zones were last read whole and compared
        self._serials: dict[str, int] = {}  # each zone's SOA serial after the last publish
        self._fresh = False  # the entries were just read from the zones, whole
        self._key: dns.tsig.Key | None = None
        self._gen = ""  # names the note's entries; the token file says which it goes with
        self._noted: tuple[dict[str, str], frozenset[str], frozenset[str]] = (
            {},
            frozenset(),
            frozenset(),
        )
        self._changed = True  # the entries differ from the note's
        self._sock: socket.socket | None = None

    # --- what it serves ----------------------------------------------------------------------

    def serving(self) -> Serving:
        """The outcome the zone was last brought to (per the note; "" when not known) and
        the dynamic records it holds for leasedns (from the note, else read by AXFR)."""
        self._load_note()
        return Serving(self._token, self._records)

    def _records(self) -> list[Record]:
        have = self.holdings()
        ptrs = {e.value for n, e in have.items() if e.rdtype == "PTR"}
        return [
            Record(n, e.value, e.end, n in ptrs, False)
            for n, e in sorted(have.items())
            if e.rdtype == "A" and e.t != 0
        ]

    def held(self) -> list[Record]:
        """The dynamic records the zones hold for leasedns, read from the server: by AXFR,
        or, where a transfer is refused, the names the note says it published, one by one."""
        if self._have is None:
            self._load_note()
        self._have, foreign, self._fresh = self.survey(self._have or ())
        self._hold(foreign)
        self._changed = True
        return self._records()

    def holdings(self) -> dict[str, Entry]:
        """The owned names and what the server holds for them (read from the zones when the
        note does not say)."""
        if self._have is None:
            self._have, foreign, self._fresh = self.survey()
            self._hold(foreign)
            self._changed = True
        return self._have

    def survey(self, names: Iterable[str] = ()) -> tuple[dict[str, Entry], dict[str, str], bool]:
        """Read the zones from the server: every zone by AXFR, or, where a transfer is
        refused, the `names` one by one. Returns the owned names, the names held by others
        (and by what), and whether every zone was transferred whole."""
        have: dict[str, Entry] = {}
        foreign: dict[str, str] = {}
        whole = True
        by_zone: dict[str, list[str]] = {}
        for n in names:
            z = self.zone_of(n)
            if z is not None:
                by_zone.setdefault(z, []).append(n)
        for zone in self.zones:
            self.check_zone(zone)
            found: Mapping[str, Entry | str | None]
            try:
                found = self._axfr(zone)
            except PublishError as e:
                # Names published before and no longer wanted are found only by a transfer.
                log.warning("%s; reading %d names one by one", e, len(by_zone.get(zone, [])))
                whole = False
                found = {n: self._read(n) for n in by_zone.get(zone, [])}
            for n, got in found.items():
                if isinstance(got, Entry):
                    have[n] = got
                elif got is not None:
                    foreign[n] = got
        return have, foreign, whole

    # --- publishing --------------------------------------------------------------------------

    def publish(self, desired: Desired, changes: Changes) -> Sent:
        """Bring the zones to the outcome `changes.token`: the changed names when the note
        says the zones hold `changes.base`, else every name; every name, the zones read
        whole, when a zone's serial went back or a verification is due. Raises PublishError
        when the server fails; what it took is remembered and the rest is sent by the next
        apply."""
        t0 = time.monotonic()
        out = Sent()
        now = desired.now or int(time.time())
        incremental = bool(changes.base) and changes.base == self._token and self._have is not None
        self._token = ""  # until this publish went through
        blocked = set(self._blocked)
        try:
            serials = self._zone_serials()
            if self._fresh:  # read whole a moment ago (a lost note): that was the verification
                self._verified, self._fresh = now, False
            why = self._verify_due(serials, now)
            lost: list[str] = []
            want: dict[str, Entry | None]
            if why or not incremental:
                every = self.entries(desired.static, desired.dynamic(), desired.seen, out.problems)
                if why:
                    lost = [n for n in self._verify(every, why, now) if n in every]
                want = dict(every)
                names = set(want) | set(self.holdings()) | self._deferred
                self._blocked.clear()  # every name is decided again
            else:
                want, names = self._touched(changes, desired, out.problems)
                if self._deferred:
                    every = self.entries(desired.static, desired.dynamic(), desired.seen, [])
                    for n in self._deferred:
                        want[n] = every.get(n)
                    names |= self._deferred
            self._settle(names, want, desired, now, out)
            if lost:
                self._tell_restored(lost, want, out)
            self._serials = self._zone_serials() if out.updates else serials
            out.settled = True
        finally:
            self._close()
            out.compile_secs = round(time.monotonic() - t0, 4)
            self._token = changes.token if out.settled else ""
            self._save_note()
        self._tell_blocked(blocked, out)
        return out

    def _verify_due(self, serials: Mapping[str, int], now: int) -> str:
        """Why the zones must be read whole and compared now ("" when they need not be)."""
        if self._have is None:
            return "no note of what they hold"
        for zone, serial in serials.items():
            was = self._serials.get(zone)
            if was is not None and _serial_before(serial, was):
                return f"the SOA serial of zone {zone} went back from {was} to {serial}"
        if abs(now - self._verified) >= self.spec.verify_secs:
            return f"verification due (every {self.spec.verify_secs} s)"
        return ""

    def _verify(self, every: Mapping[str, Entry], why: str, now: int) -> list[str]:
        """Read the zones whole instead of believing the note; the names the note says were
        published that the zones no longer hold at all."""
        before = self._have
        log.info("%s: reading the zones back: %s", self.name, why)
        names = set(every) | set(before or ()) | self._blocked
        self._have, foreign, _whole = self.survey(names)
        self._hold(foreign)
        self._changed, self._verified = True, now
        if before is None:
            return []
        return sorted(n for n in before if n not in self._have and n not in self._foreign)

    def _tell_restored(self, lost: list[str], want: Mapping[str, Entry | None], out: Sent) -> None:
        have = self.holdings()
        out.restored = sum(1 for n in lost if have.get(n) == want.get(n))
        done = "restored" if out.restored == len(lost) else f"restored {out.restored} of them"
        problem = (
            f"{self.name}: the server had lost {len(lost)} names leasedns published "
            f"(reloaded from its file?); {done}"
        )
        out.problems.append(problem)
        log.warning("%s", problem)

    def _tell_blocked(self, before: set[str], out: Sent) -> None:
        """Report the names held by others (every publish, one line), and log those found
        now (once)."""
        if not self._blocked:
            return
        new = self._blocked - before
        if new:
            log.warning(
                "%s: %d names found held by records leasedns did not create (not published): %s",
                self.name,
                len(new),
                self._show(new),
            )
        n = len(self._blocked)
        out.problems.append(
            f"{self.name}: {n} name{'s are' if n != 1 else ' is'} held by records leasedns did "
            f"not create (not published): {self._show(self._blocked)}"
        )

    def _show(self, names: set[str]) -> str:
        first = heapq.nsmallest(SHOWN, names)
        more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
        return ", ".join(f"{n} ({self.held_by(n) or OTHER})" for n in first) + more

    def held_by(self, name: str) -> str:
        """What holds `name`, which leasedns did not create ("" when nothing is known to)."""
        held = self._foreign.get(name)
        if held is not None:
            return held
        cut = self._cut_above(name)
        return "" if cut is None else f"{self._foreign[cut]} at {cut}"

    def _cut_above(self, name: str) -> str | None:
        """The delegation or DNAME above `name` in its zone, if one is known."""
        if not self._cuts:
            return None
        n = name
        while True:
            n = n.partition(".")[2]
            if not n or n in self._zone_set:
                return None
            if n in self._cuts:
                return n

    def _hold(self, foreign: dict[str, str]) -> None:
        """The names held by others are now `foreign` (name -> what holds it)."""
        self._foreign = foreign
        self._cuts = {n for n, why in foreign.items() if why in CUTS}

    def entries(
        self,
        static: Iterable[Record],
        dynamic: Iterable[Record],
        seen: Callable[[str], int],
        problems: list[str],
    ) -> dict[str, Entry]:
        """The owned names the records make (A, and PTR where the record has one)."""
        out: dict[str, Entry] = {}
        for r in [*static, *dynamic]:
            for n, e in self._entries_of(r, seen, problems):
                out[n] = e
        return out

    def _entries_of(
        self, r: Record, seen: Callable[[str], int], problems: list[str]
    ) -> Iterator[tuple[str, Entry]]:
        # 0 marks a fixed-address host; a binding whose events are not known (no `seen`)
        # gets the oldest time there is, which any peer that knows more may replace.
        t = 0 if r.static else max(1, seen(r.ip))
        end = None if r.static else r.ttd
        try:
            dnsupdate.name_wire(r.name)
            fits = True
        except (dnsupdate.BadName, UnicodeEncodeError):
            fits = False
        in_zone = self.zone_of(r.name) == self.spec.zone and r.name != self.spec.zone
        if not fits or not _NAME.fullmatch(r.name) or not in_zone:
            problems.append(f"{self.name}: {r.name} is not a name in zone {self.spec.zone}")
            return
        yield r.name, Entry("A", r.ip, t, end)
        if r.ptr and self.reverse and self.spec.reverse_zones:
            rev = reverse_name(r.ip)
            if self.zone_of(rev) in (None, rev):  # not covered, or the zone's apex itself
                problems.append(
                    f"{self.name}: no reverse zone covers {r.ip}; its PTR is not published"
                )
            else:
                yield rev, Entry("PTR", r.name, t, end)

    def _touched(
        self, changes: Changes, desired: Desired, problems: list[str]
    ) -> tuple[dict[str, Entry | None], set[str]]:
        """The names `changes` touch and what each should hold now."""
        names: set[str] = set()
        for r in [*changes.removed, *(was for was, _ in changes.changed)]:
            names.add(r.name)
            names.add(reverse_name(r.ip))
        want: dict[str, Entry | None] = {}
        now_records = [*changes.added, *(now for _, now in changes.changed)]
        for n, e in self.entries((), now_records, desired.seen, problems).items():
            want[n] = e
            names.add(n)
        return want, names

    def _settle(
        self,
        names: Iterable[str],
        want: Mapping[str, Entry | None],
        desired: Desired,
        now: int,
        out: Sent,
    ) -> None:
        """Send what each name needs, the forward names first; then their PTRs, each only
        once its name points to its address."""
        todo = sorted(names)
        self._deferred.difference_update(todo)
        forward = [n for n in todo if not n.endswith(".in-addr.arpa")]
        self._rounds(forward, want, desired, now, out)
        have = self.holdings()
        reverse: dict[str, Entry | None] = {}
        for n in todo:
            if not n.endswith(".in-addr.arpa"):
                continue
            e = want.get(n)
            if e is not None:
                a = have.get(e.value)
                if a is None or a.rdtype != "A" or reverse_name(a.value) != n:
                    if self.held_by(e.value):
                        e = None  # the name is someone else's: no PTR of leasedns names it
                    else:
                        # The name holds a partner's record not seen here yet, or is still
                        # contested: a PTR now would be a second one for it. It waits too.
                        self._deferred.add(n)
                        continue
            reverse[n] = e
        self._rounds(list(reverse), reverse, desired, now, out)

    def _rounds(
        self,
        names: list[str],
        want: Mapping[str, Entry | None],
        desired: Desired,
        now: int,
        out: Sent,
    ) -> None:
        """Send what each name needs; read back and decide again the names whose own update
        failed, a few rounds; what is still contested waits for the next apply."""
        have = self.holdings()
        todo = names
        for round_ in range(ROUNDS + 1):
            ops = []
            for n in todo:
                op = self._decide(n, have.get(n), want.get(n), desired, now)
                if op is not None:
                    ops.append(op)
            if not ops:
                break
            if round_ == ROUNDS:
                self._deferred.update(op.name for op in ops)
                problem = (
                    f"{self.name}: {len(ops)} names changed under every update for {ROUNDS} "
                    f"rounds (another writer?), first {ops[0].name}; the next apply tries again"
                )
                out.problems.append(problem)
                log.warning("%s", problem)
                break
            failed = self._send_all(ops, now, out)
            if not failed:
                break
            self._changed = True
            for n in failed:  # someone else changed these: read them again
                got = self._read(n)
                have.pop(n, None)
                self._foreign.pop(n, None)
                self._cuts.discard(n)
                if isinstance(got, Entry):
                    have[n] = got
                elif got is not None:
                    self._foreign[n] = got
                    if got in CUTS:
                        self._cuts.add(n)
            todo = failed
        for n in names:
            if want.get(n) is not None and self.held_by(n):
                self._blocked.add(n)
            else:
                self._blocked.discard(n)

    def _decide(
        self, name: str, have: Entry | None, want: Entry | None, desired: Desired, now: int
    ) -> _Op | None:
        """The change `name` needs, or None: nothing to do, held by others, or a record
        made from an event this peer has not seen yet (deferred)."""
        if name in self._foreign:
            return None
        if want is not None and self._cut_above(name) is not None:
            want = None  # below a delegation or a DNAME: no data of the zone's own
        if have == want:
            return None
        if have is not None:
            ended = have.end is not None and have.end <= now
            if not ended and not desired.final and desired.seen(have.ip(name)) < have.t:
                self._deferred.add(name)
                return None
            same = want is not None and (want.rdtype, want.value) == (have.rdtype, have.value)
            if same and want is not None and want.t < have.t:
                return None  # the same record from an older event: keep the newer
        return _Op(name, have, want)

    # --- talking to the server ---------------------------------------------------------------

    def _send_all(self, ops: Sequence[_Op], now: int, out: Sent) -> list[str]:
        """Send `ops` in messages per zone; returns the names whose own update's
        prerequisites failed. Raises PublishError when the server fails."""
        by_zone: dict[str, list[_Op]] = {}
        for op in ops:
            z = self.zone_of(op.name)
            if z is not None:
                by_zone.setdefault(z, []).append(op)
        failed: list[str] = []
        for zone, zops in by_zone.items():
            for msg, mops in self.messages(zone, zops, now):
                failed += self._send_halves(zone, msg, mops, now, out)
        return failed

    def _send_halves(
        self, zone: str, msg: dnsupdate.Update, ops: list[_Op], now: int, out: Sent
    ) -> list[str]:
        """Send one message; where its prerequisites fail, each half of its names again, down
        to single names, so that one name held by others fails no other. Returns the names
        whose own update failed."""
        failed: list[str] = []
        parts: list[tuple[dnsupdate.Update, list[_Op]]] = [(msg, ops)]
        while parts:
            msg, ops = parts.pop()
            if self._send(msg):
                self._took(ops, out)
            elif len(ops) == 1:
                failed.append(ops[0].name)
            else:
                half = len(ops) // 2
                for part in (ops[half:], ops[:half]):  # the first half is sent first
                    ((m, _),) = self.messages(zone, part, now)  # a part of one message fits one
                    parts.append((m, part))
        return failed

    def _took(self, ops: Sequence[_Op], out: Sent) -> None:
        """The server applied the message of `ops`."""
        have = self.holdings()
        self._changed = True
        for op in ops:
            if op.want is None:
                have.pop(op.name, None)
            else:
                have[op.name] = op.want
        out.changed = True
        out.updates += 1
        out.names += len(ops)

    def messages(
        self, zone: str, ops: Sequence[_Op], now: int
    ) -> Iterator[tuple[dnsupdate.Update, list[_Op]]]:
        """The UPDATE messages of `ops`: up to MAX_OPS names each, as many as fit 64 KiB."""
        owner = self.spec.owner
        msg, mops = dnsupdate.Update(zone), list[_Op]()
        for op in ops:
            have = want = None
            if op.have is not None:
                have = dnsupdate.Records(op.have.rdtype, op.have.value, op.have.marker(owner))
            ttl = self.ttl
            if op.want is not None:
                want = dnsupdate.Records(op.want.rdtype, op.want.value, op.want.marker(owner))
                if op.want.end is not None:
                    ttl = max(1, min(self.ttl, op.want.end - now))
            if len(mops) >= MAX_OPS or not msg.add(op.name, have, want, ttl):
                yield msg, mops
                msg, mops = dnsupdate.Update(zone), list[_Op]()
                msg.add(op.name, have, want, ttl)  # one name always fits
            mops.append(op)
        if mops:
            yield msg, mops

    def _send(self, msg: dnsupdate.Update) -> bool:
        """Send one UPDATE: True when applied, False when a prerequisite failed."""
        key = self._tsig()
        wire, mac = msg.wire(key)
        rcode = self._exchange(wire, mac, msg.id, f"update of zone {msg.zone}")
        if rcode == dns.rcode.NOERROR:
            return True
        if rcode in (dns.rcode.YXDOMAIN, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.NXRRSET):
            return False
        raise PublishError(f"{self.name}: {_rcode_problem(rcode, msg.zone, self.spec)}")

    def _read(self, name: str) -> Entry | str | None:
        """What the zone itself holds at `name`: an owned Entry, what holds it when leasedns
        did not create it (DELEGATION, CNAME, ...), or None (no record at all)."""
        rdtype = "PTR" if name.endswith(".in-addr.arpa") else "A"
        qname = dns.name.from_text(name + ".")
        types: dict[str, list[str]] = {}
        for t in ("TXT", rdtype):
            resp = self._ask(name, t)
            if not resp.flags & dns.flags.AA:
                if any(rrset.rdtype == dns.rdatatype.NS for rrset in resp.authority):
                    return DELEGATION  # a referral: the name is at or below a zone cut
                raise PublishError(
                    f"{self.name}: reading {name}: the answer is not authoritative; check that "
                    f"{self.spec.server} is the primary of zone {self.zone_of(name)}"
                )
            for rrset in resp.answer:
                if rrset.rdtype == dns.rdatatype.DNAME and rrset.name != qname:
                    return DNAME  # above the name: the name is rewritten, not looked up
                if rrset.rdtype == dns.rdatatype.CNAME and rrset.name == qname:
                    return CNAME
            if resp.rcode() == dns.rcode.NXDOMAIN:
                return None
            rdt = dns.rdatatype.from_text(t)
            got = [
                rd.to_text()
                for rrset in resp.answer
                if rrset.name == qname and rrset.rdtype == rdt
                for rd in rrset
            ]
            if got:
                types[t] = got
        judged = _judge(rdtype, types, self.spec.owner) if types else None
        if isinstance(judged, Entry):
            return judged
        # Records without the marker, or none of these types: a wildcard answers for a name
        # that does not exist, so only the name's own existence tells.
        if not self._in_use(name):
            return None
        return judged or OTHER

    def _ask(self, name: str, rdtype: str) -> dns.message.Message:
        """One query (signed when there is a key); its answer, NOERROR or NXDOMAIN."""
        q = dns.message.make_query(name + ".", rdtype)
        key = self._tsig()
        if key is not None:
            q.use_tsig(key)
        resp = self._query(q, f"reading {name}")
        rcode = resp.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise PublishError(
                f"{self.name}: reading {name}: the server answered {dns.rcode.to_text(rcode)}"
            )
        return resp

    def _in_use(self, name: str) -> bool:
        """Whether `name` holds any record of its own (a prerequisite-only update, which
        changes nothing and which no wildcard satisfies)."""
        zone = self.zone_of(name)
        assert zone is not None
        msg = dnsupdate.Update(zone)
        msg.require_in_use(name)
        wire, mac = msg.wire(self._tsig())
        rcode = self._exchange(wire, mac, msg.id, f"asking whether {name} is in use")
        if rcode == dns.rcode.NOERROR:
            return True
        if rcode == dns.rcode.NXDOMAIN:
            return False
        raise PublishError(f"{self.name}: {_rcode_problem(rcode, zone, self.spec)}")

    def _zone_serials(self) -> dict[str, int]:
        """Each zone's SOA serial (and that the server serves it)."""
        return {zone: self.check_zone(zone) for zone in self.zones}

    def check_zone(self, zone: str) -> int:
        """The zone's SOA serial; raise PublishError unless the server answers
        authoritatively for `zone`."""
        q = dns.message.make_query(zone + ".", "SOA")
        key = self._tsig()
        if key is not None:
            q.use_tsig(key)
        fix = f"check `zone:`/`reverse_zones:` and that {self.spec.server} is its primary"
        try:
            resp = self._query(q, f"asking for the SOA of {zone}")
        except PublishError as e:
            if "not signed" not in str(e):
                raise
            raise PublishError(
                f"{self.name}: the server does not serve zone {zone} or does not know the key "
                f"(its answer was not signed); {fix}"
            ) from None
        soa = [r for r in resp.answer if r.rdtype == dns.rdatatype.SOA]
        if resp.rcode() != dns.rcode.NOERROR or not soa or not resp.flags & dns.flags.AA:
            got = dns.rcode.to_text(resp.rcode()) + ("" if soa else ", no SOA")
            raise PublishError(f"{self.name}: the server does not serve zone {zone} ({got}); {fix}")
        return int(soa[0][0].serial)

    def _axfr(self, zone: str) -> dict[str, Entry | str]:
        """The zone's names by AXFR: owned Entries, or what holds them."""
        rrs: dict[str, dict[str, list[str]]] = {}
        key = self._tsig()
        try:
            for msg in dns.query.xfr(
                self.spec.server,
                zone + ".",
                port=self.spec.port,
                keyring=key,  # type: ignore[arg-type]  # a Key is taken as well
                relativize=False,
                lifetime=self.spec.timeout * 3,
                timeout=self.spec.timeout,
            ):
                for rrset in msg.answer:
                    n = rrset.name.to_text(omit_final_dot=True).lower()
                    t = dns.rdatatype.to_text(rrset.rdtype)
                    rrs.setdefault(n, {}).setdefault(t, []).extend(rd.to_text() for rd in rrset)
        except (dns.exception.DNSException, OSError, EOFError) as e:
            raise PublishError(
                f"{self.name}: zone {zone}: no transfer ({_problem(e, self.spec)}); allow AXFR to "
                "the key so that names published before are found"
            ) from None
        out: dict[str, Entry | str] = {}
        for n, types in rrs.items():
            if n == zone or types.keys() <= _DNSSEC:
                continue  # the apex; a signed zone's NSEC3 names
            out[n] = _judge("PTR" if n.endswith(".in-addr.arpa") else "A", types, self.spec.owner)
        return out

    def _exchange(self, wire: bytes, mac: bytes, msg_id: int, what: str) -> dns.rcode.Rcode:
        """Send a message written as bytes; the rcode of the (verified) answer."""
        return self._round_trip(wire, mac, msg_id, what).rcode()

    def _query(self, msg: dns.message.Message, what: str) -> dns.message.Message:
        """One dnspython message (signed when it has a key) and its (verified) answer."""
        wire = msg.to_wire()
        return self._round_trip(wire, msg.mac or b"", msg.id, what)

    def _round_trip(self, wire: bytes, mac: bytes, msg_id: int, what: str) -> dns.message.Message:
        """One message over the output's TCP connection (opened on first use; once more on a
        new one when the server had closed it), its answer's signature checked."""
        key = self._tsig()
        keyring = {key.name: key} if key is not None else None
        for attempt in (1, 2):
            sock = self._connect()
            expiration = time.time() + self.spec.timeout
            try:
                dns.query.send_tcp(sock, wire, expiration)
                resp, _ = dns.query.receive_tcp(sock, expiration, keyring=keyring, request_mac=mac)
            except (EOFError, ConnectionResetError, BrokenPipeError) as e:
                self._close()  # the server closed an idle connection: once more on a new one
                if attempt == 2:
                    raise PublishError(f"{self.name}: {what}: {_problem(e, self.spec)}") from None
                continue
            except (dns.exception.DNSException, OSError) as e:
                self._close()
                raise PublishError(f"{self.name}: {what}: {_problem(e, self.spec)}") from None
            if resp.id != msg_id:
                self._close()
                raise PublishError(f"{self.name}: {what}: an answer to another message")
            return resp
        raise AssertionError("unreachable")

    def _connect(self) -> socket.socket:
        if self._sock is None:
            try:
                self._sock = socket.create_connection(
                    (self.spec.server, self.spec.port), timeout=self.spec.timeout
                )
            except OSError as e:
                raise PublishError(f"{self.name}: {_problem(e, self.spec)}") from None
        return self._sock

    def _close(self) -> None:
        if self._sock is not None:
            with suppress(OSError):
                self._sock.close()
            self._sock = None

    def _tsig(self) -> dns.tsig.Key | None:
        path = self.spec.tsig_key_file
        if path is None:
            return None
        if self._key is None:
            try:
                k = tsigkey.read(path)
            except ConfigError as e:
                raise PublishError(f"{self.name}: {e}") from None
            # dnspython knows hmac-md5 only by its old name (RFC 2845).
            algorithm = dns.tsig.HMAC_MD5 if k.algorithm == "hmac-md5" else k.algorithm + "."
            try:
                self._key = dns.tsig.Key(k.name + ".", k.secret, algorithm)
            except (dns.exception.DNSException, ValueError) as e:
                raise PublishError(f"{self.name}: {path}: key {k.name!r}: {e}") from None
        return self._key

    def zone_of(self, name: str) -> str | None:
        """The longest of the output's zones `name` is in."""
        for z, dot_z in self._suffixes:
            if name.endswith(dot_z) or name == z:
                return z
        return None

    # --- the note ----------------------------------------------------------------------------

    def _load_note(self) -> None:
        """What the note says: the entries (the big file, written when they change) and the
        outcome, the last verification and the zones' serials (a small file naming the
        entries it goes with)."""
        self._token, self._have, self._gen, self._changed = "", None, "", True
        self._blocked, self._deferred = set(), set()
        self._hold({})
        self._verified, self._serials, self._fresh = 0, {}, False
        try:
            note = json.loads(self.memo.read_text())
            if note.get("v") != NOTE_VERSION:
                return
            have = {
                str(n): Entry(str(e[0]), str(e[1]), int(e[2]), None if e[3] is None else int(e[3]))
                for n, e in note["entries"].items()
            }
            if any(e.rdtype not in ("A", "PTR") for e in have.values()):
                raise ValueError("an entry of another type than A or PTR")
            self._hold({str(n): str(why) for n, why in note["foreign"].items()})
            self._blocked = {str(n) for n in note["blocked"]}
            self._deferred = {str(n) for n in note["deferred"]}
            self._have, self._gen, self._changed = have, str(note["gen"]), False
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
            log.warning("%s: %s: unreadable (%s); reading the zones again", self.name, self.memo, e)
            self._blocked, self._deferred = set(), set()
            self._hold({})
            return
        self._noted = (dict(self._foreign), frozenset(self._blocked), frozenset(self._deferred))
        try:
            told = json.loads(self._token_file.read_text())
            if told["gen"] == self._gen:
                self._token = str(told["token"])
                self._verified = int(told["verified"])
                self._serials = {str(z): int(s) for z, s in told["serials"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self._token, self._verified, self._serials = "", 0, {}

    @property
    def _token_file(self) -> Path:
        return self.memo.with_suffix(".token")

    def _save_note(self) -> None:
        # Neither file is fsynced: a note lost in a crash costs reading the zones once.
        noted = (self._foreign, frozenset(self._blocked), frozenset(self._deferred))
        if self._changed or noted != self._noted or not self._gen:
            have = self._have or {}
            self._gen = secrets.token_hex(8)
            note = {
                "v": NOTE_VERSION,
                "gen": self._gen,
                "entries": {n: [e.rdtype, e.value, e.t, e.end] for n, e in sorted(have.items())},
                "foreign": dict(sorted(self._foreign.items())),
                "blocked": sorted(self._blocked),
                "deferred": sorted(self._deferred),
            }
            blob = json.dumps(note, separators=(",", ":")).encode()
            write_atomic(self.memo, blob, 0o640, durable=False)
            self._changed = False
            self._noted = (dict(self._foreign), noted[1], noted[2])
        told = {
            "token": self._token,
            "gen": self._gen,
            "verified": self._verified,
            "serials": self._serials,
        }
        write_atomic(self._token_file, json.dumps(told).encode(), 0o640, durable=False)


def _judge(rdtype: str, types: Mapping[str, list[str]], owner: str) -> Entry | str:
    """What the records at one name (type -> rdata texts) say: an owned Entry, or what holds
    the name."""
    kinds = types.keys() - _DNSSEC
    if "CNAME" in kinds:
        return CNAME
    if "DNAME" in kinds:
        return DNAME
    if "NS" in kinds:
        return DELEGATION
    values, txts = types.get(rdtype, []), types.get("TXT", [])
    marks = [parse_marker(t.strip('"'), owner) for t in txts]
    if kinds <= {rdtype, "TXT"} and len(values) == 1 and len(marks) == 1 and marks[0]:
        value = values[0].rstrip(".").lower() if rdtype == "PTR" else values[0]
        return Entry(rdtype, value, *marks[0])
    if any(marks):
        return BESIDE
    if values:
        return f"{rdtype} records of another writer"
    if txts:
        return "TXT records of another writer"
    return OTHER


def _serial_before(a: int, b: int) -> bool:
    """Serial `a` comes before `b` (RFC 1982 arithmetic: serials wrap at 2^32)."""
    return a != b and ((b - a) % 2**32) < 2**31


def _problem(e: BaseException, spec: Rfc2136Output) -> str:
    where = f"{spec.server} port {spec.port}"
    key = f"key {spec.tsig_key_file}" if spec.tsig_key_file else "no key"
    if isinstance(e, (dns.exception.Timeout, TimeoutError)):
        return f"no answer from {where} within {spec.timeout:g} s (is the server up?)"
    if isinstance(e, ConnectionRefusedError):
        return f"connection refused by {where} (is the server running, listening on TCP?)"
    if isinstance(e, dns.tsig.PeerBadKey):
        return f"the server does not know the key (BADKEY): give it the same {key}"
    if isinstance(e, dns.tsig.PeerBadSignature):
        return f"the server's secret for the key differs (BADSIG): give it the same {key}"
    if isinstance(e, dns.tsig.PeerBadTime):
        return "the server's clock and this host's differ (BADTIME): set both by NTP"
    if isinstance(e, dns.tsig.PeerError):
        return f"the server rejected the signature ({e.__class__.__name__}): check the {key}"
    if isinstance(e, dns.exception.FormError) and "TSIG" in str(e):
        return "the answer was not signed: the server does not know the key, or the zone"
    if isinstance(e, dns.exception.DNSException):
        return f"{e.__class__.__name__}: {e}" if str(e) else e.__class__.__name__
    if isinstance(e, EOFError):
        return f"{where} closed the connection"
    if isinstance(e, OSError):
        return f"{where}: {e.strerror or e}"
    return str(e)


def _rcode_problem(rcode: dns.rcode.Rcode, zone: str, spec: Rfc2136Output) -> str:
    text = dns.rcode.to_text(rcode)
    key = f"the key of {spec.tsig_key_file}" if spec.tsig_key_file else "updates without a key"
    if rcode == dns.rcode.REFUSED:
        return (
            f"the server REFUSED the update of zone {zone}: allow {key} to update it "
            "(BIND: update-policy { grant <key> zonesub ANY; }; Knot: an acl with action update)"
        )
    if rcode == dns.rcode.NOTAUTH:
        return (
            f"the server is not authoritative for zone {zone} or does not accept {key} "
            "(NOTAUTH): check `zone:`/`reverse_zones:` and that it is the zone's primary"
        )
    if rcode == dns.rcode.NOTZONE:
        return f"a name outside zone {zone} (NOTZONE)"
    if rcode == dns.rcode.SERVFAIL:
        return f"the server failed to update zone {zone} (SERVFAIL): see its log"
    return f"the server answered {text} to the update of zone {zone}"
