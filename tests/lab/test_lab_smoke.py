"""Smoke test of the lab: real dhcpd failover, real dhclients, the real hook and tinydns."""

from __future__ import annotations

import ipaddress
import subprocess

import dns.resolver
import pytest

from .netlab import FIXED_HOSTS, POOL, Event, Lab, LabError, norm_mac, wait_for

pytestmark = pytest.mark.lab

NAMES = ["alpha", "bravo", "charlie", "delta"]
FIXED_NAME = "fixed1"
FIXED_MAC, FIXED_IP = FIXED_HOSTS[FIXED_NAME]


def in_pool(ip: str) -> bool:
    lo, hi = (ipaddress.ip_address(a) for a in POOL)
    return lo <= ipaddress.ip_address(ip) <= hi


def events(lab: Lab, peer: str, kind: str, mac: str | None = None) -> list[Event]:
    return [
        e
        for e in lab.events(peer)
        if e.event == kind and (mac is None or e.norm_mac == norm_mac(mac))
    ]


def test_failover_pair_spools_commits_fixed_host_and_release(make_lab) -> None:
    lab = make_lab()  # long leases: exactly one commit per client during the test
    lab.start_peers()
    for name in NAMES:
        lab.add_client(name)
    lab.add_client(FIXED_NAME, mac=FIXED_MAC)
    addr = {key: lab.wait_address(key) for key in lab.clients}

    assert all(in_pool(addr[name]) for name in NAMES), addr
    assert len({addr[name] for name in NAMES}) == len(NAMES), addr
    assert addr[FIXED_NAME] == FIXED_IP

    acked = {name: lab.acked_by(name) for name in NAMES}
    assert set(acked.values()) == {"peer-a", "peer-b"}, f"MAC hash split expected: {acked}"
    for name in NAMES:
        mac = lab.clients[name].mac
        mine = events(lab, acked[name], "commit", mac)
        other = "peer-b" if acked[name] == "peer-a" else "peer-a"
        assert len(mine) == 1, (name, mine)
        assert events(lab, other, "commit", mac) == [], f"{other} spooled {name} it did not ACK"
        ev = mine[0]
        assert (ev.ip, ev.client_name, ev.host_decl) == (addr[name], name, "")
        assert int(ev.lease_secs) > 0

    # Fixed-address hosts are not load balanced: on commit fires on both peers.
    for peer in lab.peers:
        fixed = wait_for(
            lambda p=peer: events(lab, p, "commit", FIXED_MAC), 5, f"fixed-host commit on {peer}"
        )
        assert {(e.ip, e.client_name, e.host_decl) for e in fixed} == {
            (FIXED_IP, FIXED_NAME, FIXED_NAME)
        }

    # The partner learns each lease by binding update (without the hostname).
    for name in NAMES:
        for peer in lab.peers:
            wait_for(
                lambda p=peer, n=name: f"lease {addr[n]} {{" in lab.leases(p),
                5,
                f"{addr[name]} in {peer}'s dhcpd.leases",
            )

    name = NAMES[0]
    lab.release_client(name)
    mac = lab.clients[name].mac
    rel = wait_for(lambda: events(lab, acked[name], "release", mac), 5, f"release of {name}")
    assert [(e.ip, e.norm_mac) for e in rel] == [(addr[name], norm_mac(mac))]
    assert lab.address(name) is None

    # tinydns for a peer answers from its own root, in the root namespace.
    peer = lab.peer("peer-a")
    peer.dns_root.mkdir(parents=True, exist_ok=True)
    (peer.dns_root / "data").write_text(
        f".lab.example::ns.lab.example:300\n={FIXED_NAME}.lab.example:{FIXED_IP}:300\n"
    )
    subprocess.run(["tinydns-data"], cwd=peer.dns_root, check=True)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [lab.start_tinydns("peer-a")]
    resolver.lifetime = 3
    answer = resolver.resolve(f"{FIXED_NAME}.lab.example", "A")
    assert [r.address for r in answer] == [FIXED_IP]
    lab.stop_tinydns("peer-a")


def test_expiry_event_carries_saved_mac(make_lab) -> None:
    lab = make_lab(lease_time=5, mclt=5)
    lab.start_peers()
    lab.add_client("echo")
    ip = lab.wait_address("echo")
    granting = lab.acked_by("echo")
    assert granting is not None
    mac = lab.clients["echo"].mac
    lab.kill_client("echo")
    try:
        exp = wait_for(lambda: events(lab, granting, "expiry", mac), 15, "expiry of echo")
    except LabError as e:
        pytest.fail(f"{e}; {granting} logged:\n{lab.peer_log(granting)[-2000:]}")
    assert [(e.ip, e.norm_mac, e.client_name) for e in exp] == [(ip, norm_mac(mac), "echo")]


def test_clients_that_reach_only_one_peer(make_lab) -> None:
    """MAC :01 hashes to peer-b and :02 to peer-a; cut off from them, each gets the other
    peer's answer once its secs field passes `load balance max seconds 3`."""
    lab = make_lab()
    lab.start_peers()
    lab.add_client("only-a", mac="02:00:00:00:00:01", reach="peer-a")
    lab.add_client("only-b", mac="02:00:00:00:00:02", reach="peer-b")
    for key, peer in (("only-a", "peer-a"), ("only-b", "peer-b")):
        assert in_pool(lab.wait_address(key))
        assert lab.acked_by(key) == peer
    assert "02:00:00:00:00:01" not in lab.peer_log("peer-b")
    assert "02:00:00:00:00:02" not in lab.peer_log("peer-a")
