"""The last resolve's outcome, kept between builds and brought up to date per changed address.

A full `merge.resolve` costs time in proportion to the live bindings; most
builds change a handful of them. `Resolved` keeps, for the aggregates it was
computed from, per live binding what it asks for (a name, or why it may not
have one) and when it ends, and per dynamic name its winner and rivals, so
that the next build recomputes only:

- the addresses whose aggregate entries new journal lines touched, and
- the addresses whose binding ran out between the saved `now` and the new one,

and then the names those addresses claimed before or claim now (a conflict's
winner can change). Everything else the outcome depends on (the statics, the
merge settings, the record TTL) is fingerprinted; a different fingerprint, a
clock gone backwards or anything inconsistent means a full recompute, which is
the same code run over every address. An update returns the changes to the
dynamic records (`model.Changes`) since the outcome it started from, which the
outputs apply; a property test checks that the outputs then serve exactly what
a full merge of the journals gives.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Set
from dataclasses import dataclass, field
from typing import Any

from leasedns.engine.rules import Aggregates, Judge, Outcome, Result, pick, static_records
from leasedns.engine.store import Table
from leasedns.model import (
    Binding,
    Changes,
    ConflictPolicy,
    Event,
    Record,
    Refusal,
    Row,
    Settings,
    Statics,
    event_of,
    ip_key,
    row_of,
)


@dataclass(slots=True)
class Resolved:
    """What the last resolve decided, in the form an update needs (see the module doc).

    The mappings are plain dicts after a full resolve, or `store.Table`s read
    from the saved merge state as an update asks for them.
    """

    fingerprint: bytes = b""
    now: int = 0
    outcome: MutableMapping[str, Outcome] = field(default_factory=dict)  # ip -> its outcome
    winner: MutableMapping[str, str] = field(default_factory=dict)  # name -> ip publishing it
    rivals: MutableMapping[str, list[str]] = field(default_factory=dict)  # name -> claimants, > 1
    # Names this outcome: "<random>.<n>", n counting the updates since the last full resolve.
    # An output that serves outcome `token` can apply the next update's changes to it.
    token: str = ""

    def expiring(self, now: int) -> list[str]:
        """Addresses whose live binding has run out by `now`."""
        if isinstance(self.outcome, Table):
            return self.outcome.expiring("end", now)
        return [ip for ip, o in self.outcome.items() if o[0] is not None and o[0] <= now]

    def next_token(self, full: bool) -> str:
        epoch, _, n = self.token.partition(".")
        if full or not epoch or not n.isdigit():
            return f"{secrets.token_hex(8)}.0"
        return f"{epoch}.{int(n) + 1}"


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def fingerprint(statics: Statics, s: Settings, ttl: int) -> bytes:
    """Everything besides the aggregates and `now` the outcome of a resolve depends on."""
    key = (
        sorted(statics.names),
        sorted(statics.ptr_ips),
        sorted((h.name, h.ip) for h in statics.hosts),
        s.domain,
        [str(n) for n in s.subnets],
        s.name_policy.value,
        s.conflict_policy.value,
        sorted(s.protected),
        s.reverse,
        s.default_lease_secs,
        ttl,
    )
    return hashlib.blake2b(repr(key).encode("utf-8", "surrogateescape"), digest_size=16).digest()


@dataclass(slots=True)
class Update:
    """One build's resolve: the changes to publish and what the guard and the report need."""

    resolved: Resolved
    changes: Changes
    full: str  # why everything was recomputed ("" = incremental)
    dirty: set[str] = field(default_factory=set)
    bindings: int = 0  # live bindings
    dynamic: int = 0  # dynamic records published


def update(
    saved: Resolved | None,
    touched: Iterable[str] | None,
    agg: Aggregates,
    statics: Statics,
    s: Settings,
    ttl: int,
    now: int,
    verdicts: MutableMapping[str, tuple[str | None, str]],
) -> Update:
    """Bring `saved` (the outcome for the aggregates before `touched` changed) up to `now`.

    `touched` holds (at least) every address whose aggregate entries changed
    since `saved` was computed; None when that is not known. `saved` is
    updated in place when it can be. The changes returned are those since
    `saved` (its token is their base); after a full resolve their base is ""
    and only the whole outcome (`desired`) says what to serve.
    """
    fp = fingerprint(statics, s, ttl)
    judge = Judge(agg, statics, s, verdicts)
    why = ""
    if saved is None:
        why = "no saved resolve"
    elif touched is None:
        why = "changes since the saved resolve not known"
    elif saved.fingerprint != fp:
        why = "static data or merge settings changed"
    elif now < saved.now:
        why = "the clock went back"
    static_ptr = statics.ptr_ips | {h.ip for h in statics.hosts}
    if why:
        res = Resolved(fp, now, token=saved.token if saved is not None else "")
        dirty = set(agg.latest)
    else:
        assert saved is not None and touched is not None
        res = saved
        dirty = set(touched)
        dirty.update(res.expiring(now))
    base = "" if why else res.token
    old: dict[str, Record | None] = {}  # affected name -> its record before
    affected = _apply(res, dirty, judge, now, lambda n: _remember(res, n, s, static_ptr, old))
    changes = Changes(base, res.next_token(bool(why)))
    live_before = 0
    for name in sorted(affected):
        _settle(res, name, agg.latest, s.conflict_policy)
        was, now_rec = old.get(name), _record(res, name, s, static_ptr)
        if was is not None and (was.ttd is None or was.ttd > now):
            live_before += 1
        changes.note(was, now_rec)
    res.now, res.token = now, changes.token
    dynamic = len(res.winner)
    if not why:
        # Names no dirty address claimed kept their record (and it is live: expiring
        # addresses are dirty); with the affected ones still live, that was the count.
        unaffected = dynamic - sum(1 for n in affected if n in res.winner)
        changes.before = unaffected + live_before
    return Update(res, changes, why, dirty=dirty, bindings=len(res.outcome), dynamic=dynamic)


def _remember(
    res: Resolved, name: str, s: Settings, static_ptr: Set[str], old: dict[str, Record | None]
) -> None:
    """Keep `name`'s record as it was, before the first change to its claimants."""
    if name not in old:
        old[name] = _record(res, name, s, static_ptr)


def _record(res: Resolved, name: str, s: Settings, static_ptr: Set[str]) -> Record | None:
    """The dynamic record of `name` in the outcome (None: nobody publishes it)."""
    w = res.winner.get(name)
    if w is None:
        return None
    return Record(name, w, res.outcome[w][0], s.reverse and w not in static_ptr, False)


def dynamic_records(res: Resolved, statics: Statics, s: Settings) -> list[Record]:
    """The dynamic records of the outcome, by name."""
    static_ptr = statics.ptr_ips | {h.ip for h in statics.hosts}
    out: list[Record] = []
    outcome, reverse = res.outcome, s.reverse
    # From a saved state, the ends in one read of their column, not a checked read per row.
    ends: Mapping[str, tuple[Any, ...]] = (
        outcome.columns(("end",)) if isinstance(outcome, Table) else outcome
    )
    for name, ip in sorted(res.winner.items()):
        out.append(Record(name, ip, ends[ip][0], reverse and ip not in static_ptr, False))
    return out


def _apply(
    res: Resolved, dirty: Iterable[str], judge: Judge, now: int, before: Callable[[str], None]
) -> set[str]:
    """Judge the dirty addresses again; returns the names whose claimants may have changed.

    `before(name)` is called before anything about `name` or its winner changes."""
    outcome = res.outcome
    affected: set[str] = set()
    for ip in sorted(dirty):
        old = outcome.get(ip)
        new = judge(ip, now)
        if old is not None and old[1] is not None:
            before(old[1])
        if new is not None and new[1] is not None:
            before(new[1])
        if old is not None and old[1] is not None:
            affected.add(old[1])
            _unclaim(res, old[1], ip)
        if new is None:
            if old is not None:
                del outcome[ip]
            continue
        outcome[ip] = new
        name = new[1]
        if name is not None:
            affected.add(name)
            _claim(res, name, ip)
    return affected


def _claim(res: Resolved, name: str, ip: str) -> None:
    """Record that `ip` claims `name` (the winner is settled later)."""
    riv = res.rivals.get(name)
    if riv is not None:
        if ip not in riv:
            res.rivals[name] = [*riv, ip]
        return
    w = res.winner.get(name)
    if w is None or w == ip:
        res.winner[name] = ip
        return
    res.rivals[name] = [w, ip]


def _unclaim(res: Resolved, name: str, ip: str) -> None:
    riv = res.rivals.get(name)
    if riv is not None:
        if ip in riv:
            riv = [x for x in riv if x != ip]
            res.rivals[name] = riv
        if len(riv) == 1:
            del res.rivals[name]
            res.winner[name] = riv[0]
        elif res.winner.get(name) == ip and riv:
            res.winner[name] = riv[0]  # provisional; settled later
        return
    if res.winner.get(name) == ip:
        del res.winner[name]


def _settle(res: Resolved, name: str, latest: Mapping[str, Row], policy: ConflictPolicy) -> None:
    """Pick `name`'s winner among its claimants again."""
    riv = res.rivals.get(name)
    w = pick(riv, latest, policy) if riv is not None else res.winner.get(name)
    if w is None:
        if name in res.winner:
            del res.winner[name]
        return
    if res.winner.get(name) != w:
        res.winner[name] = w


def refusal_of(res: Resolved, ip: str, s: Settings) -> str | None:
    """Why the live binding of `ip` publishes nothing (None when it publishes or is not live)."""
    o = res.outcome.get(ip)
    if o is None:
        return None
    if o[1] is None:
        return o[2]
    w = res.winner.get(o[1])
    if w == ip:
        return None
    return f"name {o[1]} is held by {w} ({s.conflict_policy.value} policy)"


def fresh_refusals(
    res: Resolved, agg: Aggregates, s: Settings, new: Iterable[Event]
) -> list[Refusal]:
    """The refusals `merge.Result.refusals` would list for the bindings of `new` commits."""
    out = []
    for e in new:
        r = agg.latest.get(e.ip)
        if r is None or event_of(r) != e:
            continue
        reason = refusal_of(res, e.ip, s)
        o = res.outcome.get(e.ip)
        if reason is None or o is None:
            continue
        c = e
        out.append(
            (
                ip_key(e.ip),
                Refusal(
                    Binding(
                        e.ip,
                        c.mac,
                        c.time_us,
                        o[0],
                        c.host_decl or c.client_name,
                        c.peer,
                        c.source,
                        c,
                    ),
                    reason,
                ),
            )
        )
    out.sort(key=lambda x: (x[0], x[1].reason))
    return [r for _, r in out]


def result_of(res: Resolved, agg: Aggregates, statics: Statics, s: Settings) -> Result:
    """The outcome as the merge rules state it: records, live bindings and refusals."""
    latest = agg.latest
    bindings: list[tuple[int, Binding]] = []
    refusals: list[tuple[int, Refusal]] = []
    published: dict[str, str] = {}
    for ip, (end, name, _reason) in res.outcome.items():
        c = event_of(latest[ip])
        raw = c.host_decl or c.client_name
        b = Binding(ip, c.mac, c.time_us, end, raw, c.peer, c.source, c)
        key = ip_key(ip)
        bindings.append((key, b))
        why = refusal_of(res, ip, s)
        if why is not None:
            refusals.append((key, Refusal(b, why)))
        elif name is not None:
            published[ip] = name
    records = static_records(statics, s) + dynamic_records(res, statics, s)
    bindings.sort(key=lambda x: x[0])
    refusals.sort(key=lambda x: (x[0], x[1].reason))
    return Result(
        tuple(records),
        tuple(b for _, b in bindings),
        tuple(r for _, r in refusals),
        frozenset(latest),
        published,
    )


def merge(events: Iterable[Event], statics: Statics, s: Settings, now: int) -> Result:
    """The merge rules applied to a set of events from scratch (pure; no state kept).

    Events dated after `s.horizon(now)` are not in effect yet (see Settings.clock_skew_secs).
    """
    horizon = s.horizon(now)
    agg = Aggregates()
    agg.add(row_of(e) for e in events if e.time_us <= horizon)
    up = update(None, None, agg, statics, s, 0, now, {})
    return result_of(up.resolved, agg, statics, s)
