"""The merge rules of docs/design.md, the four problems leasedns exists for, order independence."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from leasedns.engine.resolve import merge
from leasedns.model import ConflictPolicy, Event, Kind, Settings, StaticHost, Statics
from leasedns.outputs.tinydns import render

T0 = 1_800_000_000  # a fixed "now" region (2027)
S = Settings(domain="lab.example")
NONE = Statics()


def ev(
    kind: str,
    ip: str,
    mac: str,
    name: str = "",
    t: float = 0,
    secs: int | None = 600,
    peer: str = "peer-a",
    host: str = "",
) -> Event:
    return Event(
        Kind(kind),
        int((T0 + t) * 1_000_000),
        ip,
        mac,
        name,
        host,
        secs if kind == "commit" else None,
        peer,
    )


def names(
    events: list[Event], now: float = 10, statics: Statics = NONE, s: Settings = S
) -> dict[str, str]:
    return {r.name: r.ip for r in merge(events, statics, s, int(T0 + now)).records}


MAC1, MAC2, MAC3 = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"


def test_commit_publishes_a_name_with_time_to_die_at_lease_end() -> None:
    r = merge([ev("commit", "192.0.2.100", MAC1, "pc1", t=0, secs=600)], NONE, S, T0 + 1)
    (rec,) = r.records
    assert (rec.name, rec.ip, rec.ttd, rec.ptr, rec.static) == (
        "pc1.lab.example",
        "192.0.2.100",
        T0 + 600,
        True,
        False,
    )


def test_expired_binding_is_gone_at_lease_end() -> None:
    e = [ev("commit", "192.0.2.100", MAC1, "pc1", t=0, secs=600)]
    assert names(e, now=599) == {"pc1.lab.example": "192.0.2.100"}
    assert names(e, now=600) == {}


def test_infinite_lease_has_no_time_to_die() -> None:
    r = merge([ev("commit", "192.0.2.9", MAC1, "srv", secs=0xFFFFFFFF)], NONE, S, T0 + 10**6)
    assert [(x.name, x.ttd) for x in r.records] == [("srv.lab.example", None)]


def test_missing_lease_length_uses_the_configured_default() -> None:
    s = Settings(domain="lab.example", default_lease_secs=100)
    r = merge([ev("commit", "192.0.2.9", MAC1, "pc", secs=None)], NONE, s, T0 + 1)
    assert r.records[0].ttd == T0 + 100


# Problem 1 and 2: each peer sees only its own commits; the merge needs both.
def test_problem_1_2_both_peers_commits_are_published() -> None:
    e = [
        ev("commit", "192.0.2.100", MAC1, "a", peer="peer-a"),
        ev("commit", "192.0.2.101", MAC2, "b", peer="peer-b"),
    ]
    assert names(e) == {"a.lab.example": "192.0.2.100", "b.lab.example": "192.0.2.101"}


# Problem 3: fixed-address hosts come from dhcpd.conf, win, and never expire.
def test_problem_3_static_host_wins_and_stays() -> None:
    st = Statics(hosts=(StaticHost("printer.lab.example", "192.0.2.50", "dhcpd.conf:12"),))
    e = [
        ev("commit", "192.0.2.50", MAC1, "printer", secs=60),  # on commit fires for it too
        ev("commit", "192.0.2.101", MAC2, "printer"),
    ]  # a client wanting the same name
    r = merge(e, st, S, T0 + 30)
    assert [(x.name, x.ip, x.static, x.ttd) for x in r.records] == [
        ("printer.lab.example", "192.0.2.50", True, None)
    ]
    reasons = sorted(x.reason for x in r.refusals)
    assert reasons == [
        "192.0.2.50 is a fixed address; its name comes from dhcpd.conf",
        "name printer.lab.example belongs to static data or a dhcpd.conf host",
    ]
    assert names([], now=10**7, statics=st) == {"printer.lab.example": "192.0.2.50"}


# Problem 4: the most recently started lease wins, whatever the order events are read in.
def test_problem_4_most_recently_started_wins_per_name() -> None:
    older = ev("commit", "192.0.2.100", MAC1, "laptop", t=0, peer="peer-a")
    newer = ev("commit", "192.0.2.150", MAC1, "laptop", t=5, peer="peer-b")
    assert names([newer, older]) == {"laptop.lab.example": "192.0.2.150"}
    assert names([older, newer]) == {"laptop.lab.example": "192.0.2.150"}


def test_problem_4_release_of_the_older_lease_keeps_the_newer() -> None:
    e = [
        ev("commit", "192.0.2.100", MAC1, "laptop", t=0, peer="peer-a"),
        ev("commit", "192.0.2.150", MAC1, "laptop", t=5, peer="peer-b"),
        ev("release", "192.0.2.100", MAC1, t=6, peer="peer-a"),
    ]
    assert names(e) == {"laptop.lab.example": "192.0.2.150"}


def test_latest_started_commit_wins_per_address() -> None:
    e = [
        ev("commit", "192.0.2.100", MAC1, "old", t=0),
        ev("commit", "192.0.2.100", MAC2, "new", t=3),
    ]
    assert names(e) == {"new.lab.example": "192.0.2.100"}


def test_release_ends_a_binding_of_the_same_mac() -> None:
    e = [ev("commit", "192.0.2.100", MAC1, "pc", t=0), ev("release", "192.0.2.100", MAC1, t=2)]
    assert names(e) == {}


def test_expiry_ends_a_binding_like_release() -> None:
    e = [ev("commit", "192.0.2.100", MAC1, "pc", t=0), ev("expiry", "192.0.2.100", MAC1, t=2)]
    assert names(e) == {}


def test_release_with_another_mac_does_not_end_the_binding() -> None:
    e = [ev("commit", "192.0.2.100", MAC2, "pc", t=0), ev("release", "192.0.2.100", MAC1, t=2)]
    assert names(e) == {"pc.lab.example": "192.0.2.100"}


def test_release_older_than_the_binding_does_not_end_it() -> None:
    e = [
        ev("commit", "192.0.2.100", MAC1, "pc", t=0),
        ev("release", "192.0.2.100", MAC1, t=1),
        ev("commit", "192.0.2.100", MAC1, "pc", t=2),
    ]
    assert names(e) == {"pc.lab.example": "192.0.2.100"}


def test_release_at_the_same_time_as_the_commit_ends_it() -> None:
    e = [ev("commit", "192.0.2.100", MAC1, "pc", t=1), ev("release", "192.0.2.100", MAC1, t=1)]
    assert names(e) == {}


def test_latest_policy_newest_claimant_takes_the_name_and_losers_are_reported() -> None:
    e = [ev("commit", "192.0.2.100", MAC1, "pc", t=0), ev("commit", "192.0.2.101", MAC2, "pc", t=4)]
    r = merge(e, NONE, S, T0 + 10)
    assert [(x.name, x.ip) for x in r.records] == [("pc.lab.example", "192.0.2.101")]
    assert [(x.binding.ip, x.reason) for x in r.refusals] == [
        ("192.0.2.100", "name pc.lab.example is held by 192.0.2.101 (latest policy)")
    ]


def test_first_policy_keeps_the_first_live_owner() -> None:
    s = Settings(domain="lab.example", conflict_policy=ConflictPolicy.FIRST)
    e = [ev("commit", "192.0.2.100", MAC1, "pc", t=0), ev("commit", "192.0.2.101", MAC2, "pc", t=4)]
    assert names(e, s=s) == {"pc.lab.example": "192.0.2.100"}
    # once the first owner's lease ends, the other live claimant gets the name
    e.append(ev("release", "192.0.2.100", MAC1, t=5))
    assert names(e, s=s) == {"pc.lab.example": "192.0.2.101"}


def test_protected_and_static_data_names_cannot_be_claimed() -> None:
    st = Statics(names=frozenset({"ns.lab.example"}))
    s = Settings(domain="lab.example", protected=frozenset({"www"}))
    e = [
        ev("commit", "192.0.2.100", MAC1, "www"),
        ev("commit", "192.0.2.101", MAC2, "ns"),
        ev("commit", "192.0.2.102", MAC3, "ok"),
    ]
    r = merge(e, st, s, T0 + 10)
    assert [(x.name, x.ip) for x in r.records] == [("ok.lab.example", "192.0.2.102")]
    assert [x.reason for x in r.refusals] == [
        "name www.lab.example is protected",
        "name ns.lab.example belongs to static data or a dhcpd.conf host",
    ]


def test_static_ptr_address_gets_no_second_ptr() -> None:
    st = Statics(ptr_ips=frozenset({"192.0.2.100"}))
    (rec,) = merge([ev("commit", "192.0.2.100", MAC1, "pc")], st, S, T0 + 1).records
    assert rec.ptr is False


def test_outside_subnets_is_refused() -> None:
    s = Settings(domain="lab.example", subnets=(ipaddress.IPv4Network("192.0.2.0/25"),))
    e = [ev("commit", "192.0.2.100", MAC1, "in"), ev("commit", "192.0.2.200", MAC2, "out")]
    r = merge(e, NONE, s, T0 + 1)
    assert names(e, s=s) == {"in.lab.example": "192.0.2.100"}
    assert r.refusals[0].reason == "192.0.2.200 is outside the configured subnets"


def test_host_declaration_name_is_preferred_to_the_client_name() -> None:
    e = [ev("commit", "192.0.2.100", MAC1, "whatever-client-says", host="desk7")]
    assert names(e) == {"desk7.lab.example": "192.0.2.100"}


def test_hostile_name_is_refused_but_the_lease_is_kept() -> None:
    r = merge([ev("commit", "192.0.2.100", MAC1, "x" * 64)], NONE, S, T0 + 1)
    assert r.records == ()
    assert [b.ip for b in r.bindings] == ["192.0.2.100"]
    assert "64-byte label" in r.refusals[0].reason


def test_duplicates_count_once() -> None:
    e = ev("commit", "192.0.2.100", MAC1, "pc")
    assert merge([e, e, e], NONE, S, T0 + 1) == merge([e], NONE, S, T0 + 1)


# Any order, any duplication: byte-identical output.
_ips = st.sampled_from([f"192.0.2.{i}" for i in range(100, 106)])
_macs = st.sampled_from([MAC1, MAC2, MAC3])
_names = st.sampled_from(["pc", "laptop", "www", "x" * 70, "Evil:1", ""])
_event = st.builds(
    lambda k, ip, mac, name, t, secs, peer: ev(k, ip, mac, name, t, secs, peer),
    st.sampled_from(["commit", "commit", "release", "expiry"]),
    _ips,
    _macs,
    _names,
    st.integers(0, 40),
    st.sampled_from([10, 30, 600, None]),
    st.sampled_from(["peer-a", "peer-b"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_event, max_size=25), st.randoms(use_true_random=False), st.integers(0, 60))
def test_any_permutation_renders_byte_identical(events: list[Event], rnd, now: int) -> None:  # type: ignore[no-untyped-def]
    s = Settings(domain="lab.example", protected=frozenset({"www"}))
    statics = Statics(hosts=(StaticHost("printer.lab.example", "192.0.2.50", "x:1"),))
    first = render(statics, merge(events, statics, s, T0 + now).records, 300)
    shuffled = events + events[: len(events) // 2]  # and some duplicates
    rnd.shuffle(shuffled)
    assert render(statics, merge(shuffled, statics, s, T0 + now).records, 300) == first


@settings(max_examples=200, deadline=None)
@given(st.lists(_event, max_size=25), st.integers(0, 60))
def test_one_name_one_address_one_ptr(events: list[Event], now: int) -> None:
    recs = merge(events, NONE, S, T0 + now).records
    assert len({r.name for r in recs}) == len(recs)
    ptr_ips = [r.ip for r in recs if r.ptr]
    assert len(set(ptr_ips)) == len(ptr_ips)


def test_run_start_follows_renewals_and_resets_after_a_gap() -> None:
    from leasedns.engine.rules import stamp_runs
    from oracle import aggregate

    first = ev("commit", "192.0.2.100", MAC1, "pc", t=0, secs=600)
    renew = ev("commit", "192.0.2.100", MAC1, "pc", t=300, secs=600)
    (stamped,) = stamp_runs([renew], aggregate([first]), 3600)
    assert stamped.since == first.time_us  # a renewal continues the run
    late = ev("commit", "192.0.2.100", MAC1, "pc", t=700, secs=600)  # after the lease ran out
    assert stamp_runs([late], aggregate([first]), 3600)[0].since_us is None
    other = ev("commit", "192.0.2.100", MAC2, "pc", t=300, secs=600)  # another client
    assert stamp_runs([other], aggregate([first]), 3600)[0].since_us is None
    rel = ev("release", "192.0.2.100", MAC1, t=100)
    assert stamp_runs([renew], aggregate([first, rel]), 3600)[0].since_us is None
    # within one batch too, in time order whatever the input order
    a, b = stamp_runs([renew, first], aggregate([]), 3600)
    assert (a.since_us, b.since) == (None, first.time_us)


def test_first_policy_keeps_the_name_across_renewals() -> None:
    from leasedns.engine.rules import stamp_runs
    from oracle import aggregate

    s = Settings(domain="lab.example", conflict_policy=ConflictPolicy.FIRST)
    owner = ev("commit", "192.0.2.101", MAC1, "desk", t=0)
    rival = ev("commit", "192.0.2.102", MAC2, "desk", t=10)
    (renewal,) = stamp_runs(
        [ev("commit", "192.0.2.101", MAC1, "desk", t=300)], aggregate([owner, rival]), 3600
    )
    assert names([owner, rival, renewal], now=310, s=s) == {"desk.lab.example": "192.0.2.101"}
