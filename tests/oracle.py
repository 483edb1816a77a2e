"""The full merge, written straight from the merge rules: the oracle of the property tests.

leasedns itself merges only through the engine (`engine.resolve`), which keeps
its outcome between builds and brings it up to date; these tests check that it
always ends where this plain, from-scratch reading of the rules does.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping

from leasedns.engine.rules import Aggregates, Result, static_records
from leasedns.model import (
    INFINITE_LEASE,
    Binding,
    ConflictPolicy,
    Event,
    Record,
    Refusal,
    Settings,
    Statics,
    event_of,
    ip_key,
    row_of,
)
from leasedns.names import fqdn, label_for, protected_fqdns


def aggregate(events: Iterable[Event]) -> Aggregates:
    """The aggregates of a set of events (duplicates count once, order does not matter)."""
    agg = Aggregates()
    agg.add(map(row_of, events))
    return agg


def merge(events: Iterable[Event], statics: Statics, s: Settings, now: int) -> Result:
    """Apply the merge rules (docs/design.md). `now` is unix seconds; output depends on it alone.

    Events dated after `s.horizon(now)` are not in effect yet (see Settings.clock_skew_secs).
    """
    horizon = s.horizon(now)
    return resolve(aggregate(e for e in events if e.time_us <= horizon), statics, s, now)


def resolve(
    agg: Aggregates,
    statics: Statics,
    s: Settings,
    now: int,
    verdicts: MutableMapping[str, tuple[str | None, str]] | None = None,
) -> Result:
    """The merge rules after the aggregates: expiry, names, conflicts, records.

    `verdicts` caches `label_for` per raw name as (label, note) and is filled
    as names are judged; it must only ever have seen this `s.domain` and
    `s.name_policy`.
    """
    if verdicts is None:
        verdicts = {}
    static_ips = {h.ip for h in statics.hosts}
    taken = statics.taken
    protected = protected_fqdns(s.protected, s.domain)
    nets = [(int(n.network_address), int(n.netmask)) for n in s.subnets]
    refusals: list[tuple[int, Refusal]] = []
    bindings: list[tuple[int, Binding]] = []
    claims: dict[str, list[Binding]] = {}
    default_secs, domain, policy = s.default_lease_secs, s.domain, s.name_policy

    for ip, r in agg.live().items():
        secs = default_secs if r.no_secs else r.secs
        end = None if secs >= INFINITE_LEASE else r.t // 1_000_000 + secs
        if end is not None and end <= now:
            continue
        c = event_of(r)
        b = Binding(ip, c.mac, c.time_us, end, c.host_decl or c.client_name, c.peer, c.source, c)
        ipk = ip_key(ip)
        bindings.append((ipk, b))
        if ip in static_ips:
            refusals.append(
                (ipk, Refusal(b, f"{ip} is a fixed address; its name comes from dhcpd.conf"))
            )
            continue
        if nets and not any(ipk & mask == net for net, mask in nets):
            refusals.append((ipk, Refusal(b, f"{ip} is outside the configured subnets")))
            continue
        verdict = verdicts.get(b.name)
        if verdict is None:
            v = label_for(b.name, domain, policy)
            verdict = verdicts[b.name] = (v.label, v.note)
        label, note = verdict
        if label is None:
            refusals.append((ipk, Refusal(b, note)))
            continue
        name = fqdn(label, domain)
        if name in protected:
            refusals.append((ipk, Refusal(b, f"name {name} is protected")))
        elif name in taken:
            refusals.append(
                (ipk, Refusal(b, f"name {name} belongs to static data or a dhcpd.conf host"))
            )
        elif (owners := claims.get(name)) is None:
            claims[name] = [b]
        else:
            owners.append(b)

    records = static_records(statics, s)
    published: dict[str, str] = {}
    static_ptr = statics.ptr_ips | static_ips
    latest_wins = s.conflict_policy is ConflictPolicy.LATEST
    for name in sorted(claims):
        owners = claims[name]
        if len(owners) == 1:
            winner = owners[0]
        else:
            if latest_wins:  # the most recently started lease
                owners.sort(key=lambda b: b.commit.key())
                winner = owners[-1]
            else:  # the owner whose unbroken run of leases began first (renewals keep it)
                owners.sort(key=lambda b: (b.commit.since, b.commit.key()))
                winner = owners[0]
            for b in owners:
                if b is not winner:
                    refusals.append(
                        (
                            ip_key(b.ip),
                            Refusal(
                                b,
                                f"name {name} is held by {winner.ip} "
                                f"({s.conflict_policy.value} policy)",
                            ),
                        )
                    )
        records.append(
            Record(name, winner.ip, winner.end, s.reverse and winner.ip not in static_ptr, False)
        )
        published[winner.ip] = name

    bindings.sort(key=_first)
    refusals.sort(key=lambda x: (x[0], x[1].reason))
    return Result(
        tuple(records),
        tuple(b for _, b in bindings),
        tuple(r for _, r in refusals),
        frozenset(agg.latest),
        published,
    )


def _first(x: tuple[int, Binding]) -> int:
    return x[0]
