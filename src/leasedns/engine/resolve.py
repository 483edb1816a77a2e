"""The last resolve's outcome, kept between builds and brought up to date per changed address.

A full `merge.resolve` costs time in proportion to the live bindings; most
builds change a handful of them. `Resolved` keeps, for the aggregates it was
computed from, per live binding what it asks for (a name, or why it may not
have one) and when it ends, per dynamic name its winner and rivals, and the
rendered line of every dynamic record, so that the next build recomputes only:

- the addresses whose aggregate entries new journal lines touched, and
- the addresses whose binding ran out between the saved `now` and the new one,

and then the names those addresses claimed before or claim now (a conflict's
winner can change). Everything else the outcome depends on (the statics, the
merge settings, the record TTL) is fingerprinted; a different fingerprint, a
clock gone backwards or anything inconsistent means a full recompute, which is
the same code run over every address. Output is byte-identical to
`render(statics, resolve(...).records, ttl)` (a property test checks it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, MutableMapping, Set
from dataclasses import dataclass, field

from leasedns.engine.rules import (
    Aggregates,
    Binding,
    Judge,
    Outcome,
    Record,
    Refusal,
    Result,
    Settings,
    pick,
    static_records,
)
from leasedns.engine.store import Table
from leasedns.model import Event, Row, event_of, ip_key, row_of
from leasedns.outputs.tinydns import DYNAMIC_MARK, escape, from_tai64, record_line, render_parts
from leasedns.sources.statics import Statics


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
    lines: MutableMapping[str, str] = field(default_factory=dict)  # name -> its data line
    data_digest: bytes = b""  # digest of the data rendered from this outcome

    def expiring(self, now: int) -> list[str]:
        """Addresses whose live binding has run out by `now`."""
        if isinstance(self.outcome, Table):
            return self.outcome.expiring("end", now)
        return [ip for ip, o in self.outcome.items() if o[0] is not None and o[0] <= now]

    def sorted_lines(self) -> list[str]:
        """The dynamic data lines, in name order."""
        lines = self.lines
        if isinstance(lines, Table):
            return lines.ordered_values()
        return [lines[n] for n in sorted(lines)]


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
    """One build's resolve: the data to publish and what the guard and the report need."""

    resolved: Resolved
    data: bytes
    full: str  # why everything was recomputed ("" = incremental)
    # The guard, for an incremental update: previously published names that went although
    # no event speaks of their address, and how many were live before (None: not known here).
    lost: list[tuple[str, str, int | None]] = field(default_factory=list)
    before: int | None = None
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
    render: bool = True,
) -> Update:
    """Bring `saved` (the outcome for the aggregates before `touched` changed) up to `now`.

    `touched` holds (at least) every address whose aggregate entries changed
    since `saved` was computed; None when that is not known. `saved` is
    updated in place when it can be. Without `render`, the outcome is not
    rendered (`data` is empty) and so must not be saved.
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
    if why:
        res = Resolved(fp, now)
        dirty = set(agg.latest)
    else:
        assert saved is not None and touched is not None
        res = saved
        dirty = set(touched)
        dirty.update(res.expiring(now))
    affected = _apply(res, dirty, judge, now)
    lines = res.lines  # not changed before `_settle`: still what the saved outcome rendered
    prev = {n: _published(lines[n]) for n in affected if n in lines}
    static_ptr = statics.ptr_ips | {h.ip for h in statics.hosts}
    for name in sorted(affected):
        _settle(res, name, agg.latest, s, static_ptr, ttl)
    res.now = now
    data = b""
    if render:
        data = render_joined(statics, s, ttl, res)
        res.data_digest = digest(data)
    out = Update(res, data, why, dirty=dirty, bindings=len(res.outcome), dynamic=len(res.lines))
    if not why:
        out.lost, out.before = _losses(res, affected, prev, agg.latest, now)
    return out


def _apply(res: Resolved, dirty: Iterable[str], judge: Judge, now: int) -> set[str]:
    """Judge the dirty addresses again; returns the names whose claimants may have changed."""
    outcome = res.outcome
    affected: set[str] = set()
    for ip in sorted(dirty):
        old = outcome.get(ip)
        new = judge(ip, now)
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


def _published(line: str) -> tuple[str, int | None]:
    """The address and time-to-die of a rendered dynamic line (as `published_dynamic` reads it)."""
    f = line.rstrip("\n").split(":")
    return f[1], from_tai64(f[3]) if len(f) > 3 and f[3] else None


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


def _settle(
    res: Resolved, name: str, latest: Mapping[str, Row], s: Settings, static_ptr: Set[str], ttl: int
) -> None:
    """Pick `name`'s winner among its claimants again and render its line."""
    riv = res.rivals.get(name)
    w = pick(riv, latest, s.conflict_policy) if riv is not None else res.winner.get(name)
    lines = res.lines
    if w is None:
        if name in lines:
            del lines[name]
        if name in res.winner:
            del res.winner[name]
        return
    res.winner[name] = w
    end = res.outcome[w][0]
    ptr = s.reverse and w not in static_ptr
    line = record_line(Record(name, w, end, ptr, False), ttl)
    if lines.get(name) != line:
        lines[name] = line


def _losses(
    res: Resolved,
    affected: set[str],
    prev: dict[str, tuple[str, int | None]],
    latest: Mapping[str, Row],
    now: int,
) -> tuple[list[tuple[str, str, int | None]], int]:
    """`guard.unexplained_losses` against the data rendered from the saved outcome.

    A name no dirty address claimed keeps its record, and its address has a
    commit; so only the affected names that were published (`prev`, with the
    address and time-to-die of their saved line) can be lost. The live count
    before is the unaffected names plus the affected ones still live.
    """
    lost = []
    live_prev = 0
    for name in sorted(prev):
        ip, ttd = prev[name]
        if ttd is not None and ttd <= now:
            continue
        live_prev += 1
        shown = escape(name)  # as the data file spells it
        kept = shown in res.lines and res.winner.get(shown) == ip
        if not kept and ip not in latest:
            lost.append((shown, ip, ttd))
    unaffected = len(res.lines) - sum(1 for n in affected if n in res.lines)
    return lost, unaffected + live_prev


def render_joined(statics: Statics, s: Settings, ttl: int, res: Resolved) -> bytes:
    """`render.render` of the outcome: static part, then the dynamic lines in name order."""
    static_lines = [record_line(r, ttl) for r in static_records(statics, s)]
    return render_parts(statics, static_lines, res.sorted_lines())


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


def static_mark_clash(statics: Statics) -> bool:
    """Static data holding our dynamic-section marker would confuse a reader of the data file."""
    return any(DYNAMIC_MARK.rstrip("\n") in text for _p, text in statics.data_files)


class Built:
    """A build's outcome from an `Update`: what the guard and the refusal log need."""

    def __init__(
        self,
        up: Update,
        agg: Aggregates,
        statics: Statics,
        s: Settings,
        now: int,
        verdicts: MutableMapping[str, tuple[str | None, str]],
    ) -> None:
        self.update, self.agg, self.statics, self.s, self.now = up, agg, statics, s, now
        self.verdicts = verdicts

    def fresh_refusals(self, new: Iterable[Event]) -> list[Refusal]:
        return fresh_refusals(self.update.resolved, self.agg, self.s, new)


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
    static_ptr = statics.ptr_ips | {h.ip for h in statics.hosts}
    records = static_records(statics, s)
    for name in sorted(res.winner):
        ip = res.winner[name]
        records.append(
            Record(name, ip, res.outcome[ip][0], s.reverse and ip not in static_ptr, False)
        )
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
    up = update(None, None, agg, statics, s, 0, now, {}, render=False)
    return result_of(up.resolved, agg, statics, s)
