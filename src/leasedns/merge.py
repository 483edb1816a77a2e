"""The merge rules: a set of events plus static input plus "now" -> the records to publish (pure)."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from .config import Config, ConflictPolicy, NamePolicy
from .events import INFINITE_LEASE, Event, Kind
from .names import fqdn, label_for, protected_fqdns
from .statics import Statics


@dataclass(frozen=True, slots=True)
class Settings:
    """The part of the config the merge depends on."""

    domain: str
    subnets: tuple[ipaddress.IPv4Network, ...] = ()
    name_policy: NamePolicy = NamePolicy.SANITIZE
    conflict_policy: ConflictPolicy = ConflictPolicy.LATEST
    protected: frozenset[str] = frozenset()
    reverse: bool = True
    default_lease_secs: int = 3600

    @classmethod
    def from_config(cls, cfg: Config) -> Settings:
        return cls(cfg.domain, cfg.subnets, cfg.name_policy, cfg.conflict_policy,
                   cfg.protected, cfg.reverse, cfg.default_lease_secs)


@dataclass(frozen=True, slots=True)
class Binding:
    """A live lease: the winning commit for its address, not ended, not expired."""

    ip: str
    mac: str
    start_us: int
    end: int | None  # unix seconds the lease ends; None for an infinite lease
    name: str  # the raw name it asks for (host declaration name, else client name)
    peer: str
    source: str
    commit: Event


@dataclass(frozen=True, slots=True)
class Record:
    """One line of tinydns data: A (+PTR) for name -> ip, dying at `ttd` when set."""

    name: str
    ip: str
    ttd: int | None
    ptr: bool
    static: bool


@dataclass(frozen=True, slots=True)
class Refusal:
    """A live binding that publishes nothing, and why."""

    binding: Binding
    reason: str


@dataclass(frozen=True, slots=True)
class Result:
    """What the merge decided."""

    records: tuple[Record, ...]
    bindings: tuple[Binding, ...]
    refusals: tuple[Refusal, ...]
    known_ips: frozenset[str]  # addresses some commit speaks of: their removal is explained
    published: dict[str, str]  # ip -> published name, for dynamic bindings


def lease_end(e: Event, default_secs: int) -> int | None:
    """When a commit's lease ends (unix seconds), None if infinite."""
    secs = default_secs if e.lease_secs is None else e.lease_secs
    if secs >= INFINITE_LEASE:
        return None
    return e.time_us // 1_000_000 + secs


def winners(events: Iterable[Event]) -> tuple[dict[str, Event], set[str]]:
    """Per address the latest-started commit that no release/expiry of its MAC ended.

    Returns (ip -> commit) for bindings not ended, and the set of every address
    a commit speaks of. Duplicated events count once; order does not matter.
    """
    latest: dict[str, Event] = {}
    ends: dict[tuple[str, str], int] = {}
    for e in set(events):
        if e.kind is Kind.COMMIT:
            cur = latest.get(e.ip)
            if cur is None or e.key() > cur.key():
                latest[e.ip] = e
        else:
            k = (e.ip, e.mac)
            if ends.get(k, -1) < e.time_us:
                ends[k] = e.time_us
    live = {ip: c for ip, c in latest.items() if ends.get((ip, c.mac), -1) < c.time_us}
    return live, set(latest)


def merge(events: Iterable[Event], statics: Statics, s: Settings, now: int) -> Result:
    """Apply DESIGN.md's merge rules. `now` is unix seconds; output depends on nothing else."""
    live, known = winners(events)
    static_ips = {h.ip for h in statics.hosts}
    taken = statics.taken
    protected = protected_fqdns(s.protected, s.domain)
    refusals: list[Refusal] = []
    bindings: list[Binding] = []
    claims: dict[str, list[Binding]] = defaultdict(list)

    for ip, c in live.items():
        end = lease_end(c, s.default_lease_secs)
        if end is not None and end <= now:
            continue
        b = Binding(ip, c.mac, c.time_us, end, c.host_decl or c.client_name, c.peer, c.source, c)
        bindings.append(b)
        if ip in static_ips:
            refusals.append(Refusal(b, f"{ip} is a fixed address; its name comes from dhcpd.conf"))
            continue
        if s.subnets and not any(ipaddress.IPv4Address(ip) in n for n in s.subnets):
            refusals.append(Refusal(b, f"{ip} is outside the configured subnets"))
            continue
        verdict = label_for(b.name, s.domain, s.name_policy)
        if verdict.label is None:
            refusals.append(Refusal(b, verdict.note))
            continue
        name = fqdn(verdict.label, s.domain)
        if name in protected:
            refusals.append(Refusal(b, f"name {name} is protected"))
        elif name in taken:
            refusals.append(Refusal(b, f"name {name} belongs to static data or a dhcpd.conf host"))
        else:
            claims[name].append(b)

    records: list[Record] = []
    published: dict[str, str] = {}
    static_ptr = set(statics.ptr_ips)
    for h in sorted(statics.hosts, key=lambda h: (h.name, _ipkey(h.ip))):
        records.append(Record(h.name, h.ip, None, s.reverse and h.ip not in static_ptr, True))
        static_ptr.add(h.ip)
    for name in sorted(claims):
        owners = sorted(claims[name], key=lambda b: b.commit.key())
        winner = owners[-1] if s.conflict_policy is ConflictPolicy.LATEST else owners[0]
        for b in owners:
            if b is not winner:
                refusals.append(Refusal(b, f"name {name} is held by {winner.ip} "
                                           f"({s.conflict_policy.value} policy)"))
        records.append(Record(name, winner.ip, winner.end, s.reverse and winner.ip not in static_ptr,
                              False))
        published[winner.ip] = name

    bindings.sort(key=lambda b: _ipkey(b.ip))
    refusals.sort(key=lambda r: (_ipkey(r.binding.ip), r.reason))
    return Result(tuple(records), tuple(bindings), tuple(refusals), frozenset(known), published)


def _ipkey(ip: str) -> int:
    return int(ipaddress.IPv4Address(ip))
