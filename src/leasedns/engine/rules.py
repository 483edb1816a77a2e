"""The merge rules, the only copy: which commit holds an address, when its lease ends, the name
it may claim, who wins a name, the static records (pure; `resolve` applies them)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field, replace

from leasedns.model import (
    INFINITE_LEASE,
    Binding,
    ConflictPolicy,
    Event,
    Record,
    Refusal,
    Row,
    Settings,
    Statics,
    event_of,
    ip_key,
)
from leasedns.names import fqdn, label_for, protected_fqdns

# What the rules decide for one address: (end, claimed name or None, refusal reason or "").
Outcome = tuple[int | None, str | None, str]


@dataclass(frozen=True, slots=True)
class Result:
    """What the merge decided."""

    records: tuple[Record, ...]
    bindings: tuple[Binding, ...]
    refusals: tuple[Refusal, ...]
    known_ips: frozenset[str]  # addresses some commit speaks of: their removal is explained
    published: dict[str, str]  # ip -> published name, for dynamic bindings


def run_start(
    current: Event | None, ends: dict[tuple[str, str], int], e: Event, default_secs: int
) -> int:
    """When the unbroken run of leases that commit `e` continues began (pure).

    `current` is the address's greatest commit so far and `ends` the latest
    release/expiry per (address, MAC). A commit renews `current` when both
    are for the same MAC, nothing ended `current` since, and `current`'s
    lease had not run out when `e` came; then the run began at `current`'s.
    """
    if current is None or current.mac != e.mac or current.time_us > e.time_us:
        return e.time_us
    if ends.get((e.ip, e.mac), -1) >= current.time_us:
        return e.time_us
    end = lease_end(current, default_secs)
    if end is not None and end * 1_000_000 < e.time_us:
        return e.time_us
    return current.since


def stamp_runs(events: Iterable[Event], agg: Aggregates, default_secs: int) -> list[Event]:
    """New events with `since` set on their commits, from what the aggregates already hold."""
    latest: dict[str, Event] = {}
    ends = _Overlay(agg.ends)
    out = []
    for e in sorted(events, key=Event.key):
        if e.kind.value == "commit":
            cur = latest.get(e.ip)
            if cur is None and (r := agg.latest.get(e.ip)) is not None:
                cur = event_of(r)
            since = run_start(cur, ends, e, default_secs)
            e = replace(e, since_us=None if since == e.time_us else since)
            if cur is None or e.key() > cur.key():
                latest[e.ip] = e
        else:
            k = (e.ip, e.mac)
            if ends.get(k, -1) < e.time_us:
                ends[k] = e.time_us
        out.append(e)
    return out


class _Overlay(dict[tuple[str, str], int]):
    """A dict that falls back to a base dict it never changes."""

    def __init__(self, base: Mapping[tuple[str, str], int]) -> None:
        super().__init__()
        self.base = base

    def get(self, k: tuple[str, str], default: int = -1) -> int:  # type: ignore[override]
        return super().get(k, self.base.get(k, default))


def lease_end(e: Event, default_secs: int) -> int | None:
    """When a commit's lease ends (unix seconds), None if infinite."""
    return _end(e.time_us, default_secs if e.lease_secs is None else e.lease_secs)


def row_end(r: Row, default_secs: int) -> int | None:
    """`lease_end` of a commit given as a row (`model.Row`)."""
    return _end(r.t, default_secs if r.no_secs else r.secs)


def _end(time_us: int, secs: int) -> int | None:
    return None if secs >= INFINITE_LEASE else time_us // 1_000_000 + secs


@dataclass(slots=True)
class Aggregates:
    """What the merge needs of the events, as monotone maxima over their set.

    Adding events only ever raises a maximum, and adding an event twice changes
    nothing, so the aggregates of journals can be kept and brought up to date
    with just the lines appended since (see `mergestate`).
    """

    # Plain dicts, or `store.Table`s of a saved merge state.
    latest: MutableMapping[str, Row] = field(default_factory=dict)  # ip -> its greatest commit
    ends: MutableMapping[tuple[str, str], int] = field(default_factory=dict)  # (ip, mac) -> end

    def add(self, rows: Iterable[Row]) -> None:
        """Fold events (as rows, see `model.Row`) in."""
        latest, ends = self.latest, self.ends
        for r in rows:
            if r.kind == "commit":
                cur = latest.get(r.ip)
                if cur is None or r > cur:  # as tuples: by time first (see `Row`)
                    latest[r.ip] = r
            else:
                k = (r.ip, r.mac)
                if ends.get(k, -1) < r.t:
                    ends[k] = r.t

    def prune(self) -> None:
        """Forget releases/expiries that can never end a binding again.

        One older than its address's greatest commit cannot: any commit that
        becomes the greatest later is at least as new.
        """
        latest = self.latest
        self.ends = {
            k: t for k, t in self.ends.items() if (c := latest.get(k[0])) is None or t >= c.t
        }

    def live(self) -> dict[str, Row]:
        """Per address its greatest commit, unless a release/expiry of its MAC ended it."""
        ends = self.ends
        return {ip: c for ip, c in self.latest.items() if ends.get((ip, c.mac), -1) < c.t}


class Judge:
    """The rules per address: its live binding's end, and the name it claims or why it may not.

    Called with an address and `now`: None when no binding of it is live, else
    (end, name, "") or (end, None, reason). Name verdicts are cached in `verdicts`.
    """

    def __init__(
        self,
        agg: Aggregates,
        statics: Statics,
        s: Settings,
        verdicts: MutableMapping[str, tuple[str | None, str]],
    ) -> None:
        self.latest, self.ends = agg.latest, agg.ends
        self.static_ips = {h.ip for h in statics.hosts}
        self.taken = statics.taken
        self.protected = protected_fqdns(s.protected, s.domain)
        self.nets = [(int(n.network_address), int(n.netmask)) for n in s.subnets]
        self.verdicts = verdicts
        self.s = s

    def __call__(self, ip: str, now: int) -> Outcome | None:
        r = self.latest.get(ip)
        if r is None or self.ends.get((ip, r.mac), -1) >= r.t:
            return None
        s = self.s
        end = row_end(r, s.default_lease_secs)
        if end is not None and end <= now:
            return None
        if ip in self.static_ips:
            return end, None, f"{ip} is a fixed address; its name comes from dhcpd.conf"
        if self.nets:
            ipk = ip_key(ip)
            if not any(ipk & mask == net for net, mask in self.nets):
                return end, None, f"{ip} is outside the configured subnets"
        raw = r.host or r.client
        verdict = self.verdicts.get(raw)
        if verdict is None:
            v = label_for(raw, s.domain, s.name_policy)
            verdict = self.verdicts[raw] = (v.label, v.note)
        label, note = verdict
        if label is None:
            return end, None, note
        name = fqdn(label, s.domain)
        if name in self.protected:
            return end, None, f"name {name} is protected"
        if name in self.taken:
            return end, None, f"name {name} belongs to static data or a dhcpd.conf host"
        return end, name, ""


def pick(ips: list[str], latest: Mapping[str, Row], policy: ConflictPolicy) -> str:
    """The winner of a name among the addresses claiming it."""
    if policy is ConflictPolicy.LATEST:  # the most recently started lease
        return max(ips, key=lambda ip: _key(latest[ip]))
    return min(ips, key=lambda ip: (latest[ip].since, _key(latest[ip])))


def _key(r: Row) -> tuple[object, ...]:
    """`Event.key()` of a row's event: its fields but `infinite`, in order."""
    return (*r[:9], r.since)


def static_records(statics: Statics, s: Settings) -> list[Record]:
    """The records of the fixed-address hosts, in the order they are rendered."""
    records = []
    static_ptr = set(statics.ptr_ips)
    for h in sorted(statics.hosts, key=lambda h: (h.name, ip_key(h.ip))):
        records.append(Record(h.name, h.ip, None, s.reverse and h.ip not in static_ptr, True))
        static_ptr.add(h.ip)
    return records
