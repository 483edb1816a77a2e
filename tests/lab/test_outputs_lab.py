"""The lab's failover scenarios once more, with an rfc2136 and an unbound output.

Both peers run the real pipeline as in test_scenarios.py, publishing into their tinydns
and also, through the `outputs:` list, into one BIND primary both peers update (RFC 2136,
one TSIG key, one owner) and into an Unbound each (unbound-control local_datas). Every
assertion is an answer from BIND or an Unbound, asked with dnspython.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from leasedns.outputs.rfc2136 import parse_marker

from .netlab import Lab, LabError, norm_mac, wait_for
from .pipeline import DOMAIN, OWNER, Site, snippet_file

pytestmark = pytest.mark.lab

CLIENTS = ["alpha", "bravo", "charlie", "delta", "echo"]


@pytest.fixture
def make_site(make_lab: Callable[..., Lab], tmp_path: Path) -> Iterator[Callable[..., Site]]:
    """Factory: a Lab whose peers run leasedns with the BIND and Unbound outputs; started."""
    sites: list[Site] = []

    def make(**lab_kw: Any) -> Site:
        holder: list[Site] = []
        lab = make_lab(
            hooks_snippet=snippet_file(tmp_path / f"hooks-{len(sites)}.conf"),
            peer_env=lambda peer: holder[0].peer_env(peer),
            **lab_kw,
        )
        site = Site(lab, "rsync", outputs=True)
        holder.append(site)
        sites.append(site)
        lab.start_peers()
        return site

    yield make
    for site in sites:  # let hook-started applies finish, then stop BIND and the Unbounds
        with contextlib.suppress(LabError):
            site.quiesce(timeout=5)
        site.close()


def start_clients(site: Site, names: list[str], **kw: Any) -> dict[str, str]:
    for name in names:
        site.lab.add_client(name, **kw)
    return {name: site.lab.wait_address(name) for name in names}


def live_bindings(site: Site, peer: str, mac: str) -> list[tuple[object, object]]:
    """(ip, granting peer) of the MAC's published bindings, as `leasedns show` on peer says."""
    return [(r["ip"], r["peer"]) for r in site.show(peer) if r["published"] and r["mac"] == mac]


# ---------------------------------------------------------------- 1. names from both peers


def test_names_from_both_peers_are_answered_by_bind_and_both_unbounds(
    make_site: Callable[..., Site],
) -> None:
    site = make_site()
    lab = site.lab
    addr = start_clients(site, CLIENTS)
    acked = {n: lab.acked_by(n) for n in CLIENTS}
    assert set(acked.values()) == {"peer-a", "peer-b"}, f"both peers must ACK some: {acked}"

    site.wait_outputs(addr)  # A and PTR of every client from BIND and both Unbounds
    site.wait_dns(addr, timeout=3)  # tinydns goes on as before
    site.quiesce()
    assert site.bind is not None
    zone = site.bind.names()
    for n, ip in addr.items():  # one A and the site's marker: both peers write as one owner
        held = zone[f"{n}.{DOMAIN}"]
        assert [h for h in held if h.startswith("A ")] == [f"A {ip}"], held
        (marker,) = [h for h in held if h.startswith("TXT ")]
        assert marker.startswith(f'TXT "leasedns owner={OWNER} t='), marker
    dynamic = {n.split(".")[0] for n in zone} - {"ns", "fixed1"}
    assert dynamic == set(CLIENTS), zone


# ---------------------------------------------------------------- 2. release and expiry


def test_released_and_expired_names_leave_bind_and_both_unbounds(
    make_site: Callable[..., Site],
) -> None:
    lease = 5
    site = make_site(lease_time=lease, mclt=lease)
    lab = site.lab
    addr = start_clients(site, ["india", "juliet", "kilo"])
    site.wait_outputs(addr)

    lab.release_client("india")
    site.wait_outputs(
        {"india": None, "juliet": addr["juliet"], "kilo": addr["kilo"]},
        {addr["india"]: None, addr["kilo"]: "kilo"},
        timeout=3,
    )

    lab.kill_client("juliet")  # no release: the lease runs out at dhcpd, which says so
    site.wait_outputs(
        {"juliet": None, "kilo": addr["kilo"]},
        {addr["juliet"]: None, addr["kilo"]: "kilo"},
        timeout=lease + 4,
    )
    site.wait_dns({"juliet": None, "india": None, "kilo": addr["kilo"]}, timeout=3)


# ---------------------------------------------------------------- 3. peer down


def test_peer_down_the_survivor_keeps_publishing_and_all_agree_after_return(
    make_site: Callable[..., Site],
) -> None:
    mclt, lease = 5, 10
    site = make_site(lease_time=lease, mclt=mclt)
    lab = site.lab
    names = CLIENTS[:4]
    addr = start_clients(site, names)
    site.wait_outputs(addr)
    acked = {n: lab.acked_by(n) for n in names}
    victims = [n for n in names if acked[n] == "peer-a"]
    assert victims and len(victims) < len(names), f"both peers must ACK some: {acked}"

    # peer-a's host goes down: dhcpd crashes, its tinydns and Unbound stop, BIND is cut off.
    site.host_down("peer-a")
    lab.stop_peer("peer-a", signal.SIGKILL)
    site.network_down("peer-a")
    wait_for(
        lambda: all(lab.acked_by(n) == "peer-b" for n in victims),
        lease + mclt,
        f"{victims} to renew or rebind from peer-b",
    )

    def now() -> dict[str, str | None]:  # a client may change address on the way
        return {n: lab.address(n) for n in names}

    survivor = ["bind", "unbound peer-b"]
    site.wait_outputs(now, servers=survivor)
    time.sleep(mclt)  # a whole (capped) lease later: still there, renewed through peer-b
    site.wait_outputs(now, servers=survivor, timeout=3)

    # peer-a comes back (its Unbound empty, as after a reboot) and syncs.
    site.host_up("peer-a")
    site.network_up("peer-a")
    lab.start_peer("peer-a", timeout=30)
    site.leasedns("peer-a", "sync")
    site.leasedns("peer-a", "apply")
    # dhcpd's own churn after the return (see test_scenarios) may move clients; whatever
    # they hold, BIND, both Unbounds and both tinydns end up saying the same about it.
    site.wait_outputs(now, timeout=2 * lease)
    site.wait_dns(now, timeout=lease)


# ---------------------------------------------------------------- 4. a move while sync lags


def marker(site: Site, host: str) -> tuple[int, int | None]:
    """(event time, lease end) of the site's marker on host in BIND."""
    txts = site.ask("bind", f"{host}.{DOMAIN}.", "TXT") or set()
    got = [parse_marker(t.strip('"'), OWNER) for t in txts]
    found = [m for m in got if m is not None]
    assert len(found) == 1, f"{host}: TXT records in BIND: {txts}"
    return found[0]


class Watch:
    """Asks BIND for one name over TCP every ~20 ms, keeping every answer that differs
    from the previous one with its time."""

    def __init__(self, site: Site, host: str) -> None:
        self.site, self.qname = site, f"{host}.{DOMAIN}."
        self.seen: list[tuple[float, set[str] | None]] = []
        self.bad: list[tuple[float, set[str] | None]] = []
        self.count = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="watch BIND", daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            got = self.site.ask("bind", self.qname, "A")
            self.count += 1
            now = time.monotonic()
            if not self.seen or self.seen[-1][1] != got:
                self.seen.append((now, got))
            if not got or any(a.startswith("(") for a in got):
                self.bad.append((now, got))
            self.stop.wait(0.02)

    def __enter__(self) -> Watch:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


# MAC :01 hashes to peer-b (load balancing), :02 to peer-a: the mover (MAC :01) gets its
# first lease from peer-a only once its `secs` exceed `load balance max seconds` (3), then
# rebinds (T2) with peer-b, which answers it at once: the new lease starts before the old
# one ends, so the name has an address all along.
MOVER_MAC = "02:00:00:00:00:01"


def test_a_client_moving_while_sync_lags_never_disappears_from_bind(
    make_site: Callable[..., Site],
) -> None:
    lease = 12
    site = make_site(lease_time=lease, mclt=lease)
    lab = site.lab
    client = lab.add_client("mover", mac=MOVER_MAC, reach="peer-a", start=False)
    # The mover rebinds (broadcast, so peer-b hears it) 6 s into a 12 s lease, not at 7/8:
    # peer-b's lease starts well before the old one ends.
    with client.conf.open("a") as conf:
        conf.write("supersede dhcp-renewal-time 3;\nsupersede dhcp-rebinding-time 6;\n")
    lab.start_client("mover")
    old = lab.wait_address("mover", timeout=20)
    old_end = time.monotonic() + lease  # at the latest: the ACK came before the address
    assert lab.acked_by("mover") == "peer-a"
    site.wait_outputs({"mover": old})
    site.quiesce()
    mac = norm_mac(MOVER_MAC)
    first = marker(site, "mover")

    with Watch(site, "mover") as watch:
        # Sync lags: peer-a's host is unreachable for peer-b's rsync and notify (peer-a's
        # dhcpd keeps running: the failover link is another network).
        site.host_down("peer-a")
        lab.set_reach("mover", "peer-b")  # only peer-b hears it from now on
        wait_for(lambda: lab.acked_by("mover") == "peer-b", 2 * lease, "a lease from peer-b")
        new = lab.wait_address("mover")
        moved = time.monotonic()
        assert moved < old_end - 2, (
            "lab timing: peer-b's lease came after peer-a's had ended; a gap in which the "
            "client held no lease would make NXDOMAIN right"
        )
        site.wait_outputs({"mover": new}, servers=["bind", "unbound peer-b"], timeout=5)
        # the address may be the same: peer-b's publish shows in the marker (its newer
        # event, its lease end)
        try:
            moved_marker = wait_for(
                lambda: (m := marker(site, "mover")) != first and m, 5, "peer-b's marker"
            )
        except LabError as e:
            pytest.fail(f"{e}: still {first}\n{site.describe()}")
        assert moved_marker[0] > first[0] and moved_marker[1] > first[1], (first, moved_marker)
        # peer-a has not seen peer-b's lease: its own is all it knows of the mover.
        assert (new, "peer-b") not in live_bindings(site, "peer-a", mac)
        # peer-a's lease ends; peer-a applies (as a timer would) with only its stale view.
        time.sleep(max(0.0, old_end - time.monotonic()) + 1)
        for _ in range(3):
            site.leasedns("peer-a", "apply")
            time.sleep(0.5)
        assert (new, "peer-b") not in live_bindings(site, "peer-a", mac), "sync did not lag"
        # peer-a's view: the mover's lease is over; its own Unbound drops the name ...
        assert site.ask("unbound peer-a", f"mover.{DOMAIN}.", "A") is None, site.describe()
        # ... but the record in BIND is peer-b's, from an event peer-a has not seen: kept.
        assert site.ask("bind", f"mover.{DOMAIN}.", "A") == {new}, site.describe()
        assert marker(site, "mover")[0] >= moved_marker[0]  # peer-b's (it renews every ~3 s)

        # Sync again: peer-b pushes its journal and notifies peer-a.
        site.host_up("peer-a")
        site.leasedns("peer-b", "sync")
        site.quiesce()
        for peer in lab.peers:
            wait_for(
                lambda p=peer: live_bindings(site, p, mac) == [(new, "peer-b")],
                lease,
                f"{peer}: peer-b's lease of the mover",
            )
        site.wait_outputs({"mover": new}, {new: "mover"})
        site.wait_dns({"mover": new}, {new: "mover"})
        assert site.ask("bind", f"mover.{DOMAIN}.", "A") == {new}
        assert marker(site, "mover")[0] >= moved_marker[0]  # still peer-b's
    t0 = watch.seen[0][0] if watch.seen else 0.0
    history = [(round(t - t0, 2), a) for t, a in watch.seen]
    assert watch.count > 100, f"BIND was asked only {watch.count} times"
    assert not watch.bad, f"BIND answered no address for the mover: {watch.bad}; {history}"
    assert watch.seen[0][1] == {old} and watch.seen[-1][1] == {new}, history
    assert all(a in ({old}, {new}) for _, a in watch.seen), history
