"""Issue 5: leasedns doing its job the way a sysadmin runs it.

Both failover peers run the real pipeline (dhcpd -> the installed hook -> `leasedns apply`
started by the hook -> tinydns-data), journals reach the partner by rsync or a shared
journal directory, and every assertion is a DNS answer from BOTH peers' real tinydns.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .netlab import FIXED_HOSTS, Lab, LabError, norm_mac, wait_for
from .pipeline import MODES, Site, dynamic_lines, record_fields, snippet_file

pytestmark = pytest.mark.lab

FIXED_NAME = "fixed1"
FIXED_MAC, FIXED_IP = FIXED_HOSTS[FIXED_NAME]


@pytest.fixture
def make_site(make_lab: Callable[..., Lab], tmp_path: Path) -> Iterator[Callable[..., Site]]:
    """Factory: a Lab whose peers run the real leasedns pipeline; peers started."""
    sites: list[Site] = []

    def make(mode: str = "rsync", *, start: bool = True, **lab_kw: Any) -> Site:
        holder: list[Site] = []
        lab = make_lab(
            hooks_snippet=snippet_file(tmp_path / f"hooks-{len(sites)}.conf"),
            peer_env=lambda peer: holder[0].peer_env(peer),
            **lab_kw,
        )
        site = Site(lab, mode)
        holder.append(site)
        sites.append(site)
        if start:
            lab.start_peers()
        return site

    yield make
    for site in sites:  # let hook-started applies finish before the lab goes away
        with contextlib.suppress(LabError):
            site.quiesce(timeout=5)


def start_clients(site: Site, names: list[str], **kw: Any) -> dict[str, str]:
    for name in names:
        site.lab.add_client(name, **kw)
    return {name: site.lab.wait_address(name) for name in names}


CLIENTS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"]


# ---------------------------------------------------------------- 1. load balancing


@pytest.mark.parametrize("mode", MODES)
def test_split_clients_resolve_on_both_peers(make_site: Callable[..., Site], mode: str) -> None:
    site = make_site(mode)
    lab = site.lab
    addr = start_clients(site, CLIENTS)
    acked = {n: lab.acked_by(n) for n in CLIENTS}
    assert set(acked.values()) == {"peer-a", "peer-b"}, f"both peers must ACK some: {acked}"
    assert len(set(addr.values())) == len(CLIENTS), addr

    site.wait_dns(addr)  # A and PTR of every client, from both peers' tinydns

    site.quiesce()
    journals = {p: site.journal(p) / p for p in lab.peers}
    for p, d in journals.items():
        assert list(d.glob("events-*.jsonl")), f"{p} journaled nothing in {d}"
    if mode == "rsync":  # each peer holds the partner's journal, pushed by rsync
        for p in lab.peers:
            other = site.partner(p)
            assert list((site.journal(p) / other).glob("events-*.jsonl")), (
                f"{other}'s journal was not pushed to {p}"
            )
    assert site.data("peer-a") == site.data("peer-b")


# ---------------------------------------------------------------- 2. fixed-address host


def test_fixed_address_host_from_dhcpd_conf_outlives_its_lease(
    make_site: Callable[..., Site],
) -> None:
    lease = 5
    site = make_site("rsync", lease_time=lease, mclt=lease)
    lab = site.lab
    # A dynamic client renews every ~2.5 s: a steady stream of events and rebuilds.
    addr = start_clients(site, ["hotel"])
    # fixed1 is published from dhcpd.conf alone: its host has not asked for anything yet.
    site.wait_dns({FIXED_NAME: FIXED_IP, **addr})

    lab.add_client(FIXED_NAME, mac=FIXED_MAC)
    assert lab.wait_address(FIXED_NAME) == FIXED_IP
    lab.kill_client(FIXED_NAME)  # no release: its lease would end `lease` s from now
    lease_end = time.time() + lease
    for peer in lab.peers:  # both peers rebuild after that moment (the renewals of hotel)
        cdb = lab.peers[peer].dns_root / "data.cdb"
        wait_for(
            lambda c=cdb: c.stat().st_mtime > lease_end + 1,
            3 * lease,
            f"a rebuild on {peer} after the fixed host's lease end",
        )
    site.wait_dns({FIXED_NAME: FIXED_IP, "hotel": addr["hotel"]}, timeout=3)
    for peer in lab.peers:
        fixed = [f for f in record_fields(site.data(peer)) if f[0] == f"{FIXED_NAME}.lab.example"]
        assert fixed == [[f"{FIXED_NAME}.lab.example", FIXED_IP, "300"]], (
            f"{peer}: fixed host must be one static record without time-to-die: {fixed}"
        )


# ---------------------------------------------------------------- 3. release and expiry


def test_released_and_killed_clients_disappear_from_both_peers(
    make_site: Callable[..., Site],
) -> None:
    lease = 5
    site = make_site("rsync", lease_time=lease, mclt=lease)
    lab = site.lab
    addr = start_clients(site, ["india", "juliet", "kilo"])
    site.wait_dns(addr)
    granting = {n: lab.acked_by(n) for n in addr}

    lab.release_client("india")
    site.wait_dns(
        {"india": None, "kilo": addr["kilo"], "juliet": addr["juliet"]},
        {addr["india"]: None, addr["kilo"]: "kilo"},
        timeout=3,
    )

    lab.kill_client("juliet")
    killed = time.monotonic()
    site.wait_dns(
        {"juliet": None, "kilo": addr["kilo"]},
        {addr["juliet"]: None, addr["kilo"]: "kilo"},
        timeout=lease + 4,
    )
    assert time.monotonic() - killed <= lease + 4
    # dhcpd reported the end: the expiry event is in the granting peer's journal, and
    # (pushed by rsync) in the partner's copy of it.
    peer = granting["juliet"]
    assert peer is not None

    def expiry_journaled(holder: str) -> bool:
        lines = [
            ln
            for f in (site.journal(holder) / peer).glob("events-*")
            for ln in f.read_text().splitlines()
        ]
        return any('"expiry"' in ln and f'"{addr["juliet"]}"' in ln for ln in lines)

    for holder in lab.peers:
        wait_for(
            lambda h=holder: expiry_journaled(h),
            lease + 3,
            f"juliet's expiry in {holder}'s journal/{peer}/",
        )


# ---------------------------------------------------------------- 4. peer down


def test_peer_down_survivor_serves_and_both_agree_after_return(
    make_site: Callable[..., Site],
) -> None:
    # First grants and grants while the partner is down are capped at mclt (5 s), so
    # rebinding is quick; back in state normal, renewals get 10 s: room for a quiet moment.
    mclt, lease = 5, 10
    site = make_site("rsync", lease_time=lease, mclt=mclt)
    lab = site.lab
    names = CLIENTS[:6]
    addr = start_clients(site, names)
    site.wait_dns(addr)
    acked = {n: lab.acked_by(n) for n in names}
    victims = [n for n in names if acked[n] == "peer-a"]
    assert victims and len(victims) < len(names), f"both peers must ACK some: {acked}"

    # peer-a's host goes down: dhcpd crashes, its tinydns stops, nothing reaches it.
    site.host_down("peer-a")
    lab.stop_peer("peer-a", signal.SIGKILL)
    lab.stop_tinydns("peer-a")
    down = lab.peer_log("peer-b").count("DHCPACK")
    wait_for(
        lambda: all(lab.acked_by(n) == "peer-b" for n in victims),
        lease + mclt,
        f"{victims} to renew or rebind from peer-b",
    )

    def now() -> dict[str, str | None]:  # a client may change address on the way
        return {n: lab.address(n) for n in names}

    site.wait_dns(now, peers=["peer-b"])
    time.sleep(mclt)  # a whole (capped) lease length later: still there, renewed by peer-b
    site.wait_dns(now, peers=["peer-b"], timeout=3)
    assert lab.peer_log("peer-b").count("DHCPACK") > down + len(names)

    # peer-a comes back and syncs; peer-b's next apply pushes what peer-a missed.
    # (Observed: once both are normal again, peer-b runs `on expiry` for the leases it
    # granted meanwhile and refuses their renewals, "lease owned by peer"; the names are
    # gone until the clients rebind with peer-a at T2. leasedns follows dhcpd here.)
    site.host_up("peer-a")
    lab.start_tinydns("peer-a")
    lab.start_peer("peer-a", timeout=30)
    site.leasedns("peer-a", "sync")
    site.wait_dns(now, timeout=lease + 3)

    # Once every client holds a long lease again, freeze the clients (no more renewals):
    # both peers must then publish the very same bytes.
    def renewal_in(n: str) -> int:
        got = re.findall(r"renewal in (\d+) seconds", lab.client_log(n))
        return int(got[-1]) if got else 0

    def settled() -> bool:  # dhcpd's own churn after the return is over, DNS shows it
        if not all(renewal_in(n) >= lease // 2 - 1 for n in names):
            return False
        try:
            site.wait_dns(now, timeout=0.5)
        except AssertionError:
            return False
        return all(renewal_in(n) >= lease // 2 - 1 for n in names)

    wait_for(settled, 3 * lease, "long leases for every client after peer-a's return", step=0.2)
    for n in names:
        lab.kill_client(n)
    tries: list[tuple[bytes, bytes]] = []

    def agreed() -> bytes | None:
        site.quiesce()
        for peer in lab.peers:
            site.leasedns(peer, "sync")
        site.quiesce()
        a, b = site.data("peer-a"), site.data("peer-b")
        tries.append((a, b))
        return a if a == b else None

    try:
        data = wait_for(agreed, mclt, "byte-identical data files on both peers", step=0.2)
    except LabError as e:
        a, b = tries[-1]
        pytest.fail(f"{e}\n--- peer-a:\n{a.decode()}\n--- peer-b:\n{b.decode()}")
    # dhcpd itself may still expire a lease it handed over (see above), so the agreed
    # data may hold only some clients; both peers must say the same about each.
    published = {
        ln[1:].split(":")[0].split(".")[0]: ln[1:].split(":")[1] for ln in dynamic_lines(data)
    }
    assert published and set(published) <= set(names), data.decode()
    # Compare answers for records that are not about to reach their time-to-die.
    ends = {
        ln[1:].split(":")[0].split(".")[0]: int(ln.split(":")[3], 16) - 2**62 - 10
        for ln in dynamic_lines(data)
    }
    published = {n: a for n, a in published.items() if ends[n] > time.time() + 2}
    answers = {p: site.answers(p, published, published.values()) for p in lab.peers}
    assert answers["peer-a"] == answers["peer-b"]
    assert answers["peer-a"] == {
        **{n: {published[n]} for n in published},
        **{f"ptr {a}": {n} for n, a in published.items()},
    }


# ---------------------------------------------------------------- 5. server move


def test_client_moving_to_the_other_peer_keeps_its_newest_lease(
    make_site: Callable[..., Site],
) -> None:
    lease = 5
    site = make_site("rsync", lease_time=lease, mclt=lease)
    lab = site.lab
    # MAC :02 hashes to peer-a: it gets its lease there at once.
    lab.add_client("mover", mac="02:00:00:00:00:02", reach="peer-a")
    old = lab.wait_address("mover")
    assert lab.acked_by("mover") == "peer-a"
    site.wait_dns({"mover": old})

    lab.set_reach("mover", "peer-b")  # only peer-b hears it from now on
    wait_for(lambda: lab.acked_by("mover") == "peer-b", 4 * lease, "a lease from peer-b")
    new = lab.wait_address("mover")
    expect_ptr = {new: "mover"}
    if new != old:
        expect_ptr[old] = None
    site.wait_dns({"mover": new}, expect_ptr, timeout=lease + 3)
    mac = norm_mac(lab.clients["mover"].mac)
    for peer in lab.peers:  # the binding in force is peer-b's (its address may be the old one)

        def live(p: str = peer) -> list[tuple[object, object]]:
            return [
                (r["ip"], r["peer"]) for r in site.show(p) if r["published"] and r["mac"] == mac
            ]

        try:
            wait_for(lambda p=peer: live(p) == [(new, "peer-b")], lease, f"{peer}: peer-b's lease")
        except LabError:
            pytest.fail(
                f"{peer}: live bindings of mover {live()}, want {[(new, 'peer-b')]}\n"
                + site.describe()
            )


# ---------------------------------------------------------------- 6. hostile names


HOSTILE: dict[str, str | bytes] = {
    "colon": "evil:1.2.3.4",
    "newline": "bad\nname",
    "protected": "www",
    "long": "x" * 300,
    "latin1": b"caf\xe9",
}


def test_hostile_host_names_never_break_or_poison_dns(make_site: Callable[..., Site]) -> None:
    site = make_site("rsync")
    lab = site.lab
    for key, name in HOSTILE.items():
        lab.add_client(name, key=key)
    good = start_clients(site, ["lima", "mike"])
    hostile = {key: lab.wait_address(key) for key in HOSTILE}  # every client gets a lease

    site.wait_dns(good)
    site.quiesce()
    for peer in lab.peers:
        root = lab.peers[peer].dns_root
        assert (root / "data.cdb").stat().st_mtime >= (root / "data").stat().st_mtime, (
            f"{peer}: data.cdb older than data: tinydns-data failed"
        )
        fields = record_fields(site.data(peer))
        assert not any("1.2.3.4" in f[1:] for f in fields), f"{peer}: record for 1.2.3.4"
        assert not any(f[0].startswith("www.") for f in fields), f"{peer}: www taken"
        assert site.a(peer, "www") is None
        for line in site.data(peer).split(b"\n"):
            assert b"\r" not in line and (not line or line[:1] in b"#.=+Z&^C'@-%")
        # the hostile leases are listed, the unpublished ones with the reason
        rows = {r["ip"]: r for r in site.show(peer)}
        for key in ("protected", "long"):
            row = rows.get(hostile[key])
            assert row is not None, f"{peer}: lease of {key} missing from show: {rows}"
            assert not row["published"] and row["note"], f"{peer}: {key}: {row}"
        for key in HOSTILE:
            assert hostile[key] in rows, f"{peer}: lease of {key} missing from show"
    assert site.data("peer-a") == site.data("peer-b")
    for line in dynamic_lines(site.data("peer-a")):  # only clean names reach the data file
        assert re.fullmatch(r"=[a-z0-9-]+\.lab\.example:192\.0\.2\.\d+:0:[0-9a-f]{16}", line), line
    # what a published hostile name resolves to, it resolves to its own lease
    for key, ip in hostile.items():
        for peer in lab.peers:
            names = site.ptr(peer, ip)
            assert names is None or len(names) == 1, (key, names)
            if names:
                (n,) = names
                assert site.a(peer, n) == {ip}, f"{peer}: {key} PTR {n} but A differs"


# ---------------------------------------------------------------- 7. reconcile


def test_reconcile_after_losing_spool_and_journal(make_site: Callable[..., Site]) -> None:
    site = make_site("rsync")
    lab = site.lab
    addr = start_clients(site, CLIENTS[:6])
    site.wait_dns(addr)
    lab.release_client(CLIENTS[0])
    gone = CLIENTS[0]
    live = {n: a for n, a in addr.items() if n != gone}
    site.wait_dns({**live, gone: None}, {**{a: n for n, a in live.items()}, addr[gone]: None})
    site.quiesce()

    # peer-b loses its state: spool and journal (its own and its copy of peer-a's).
    shutil.rmtree(site.spool("peer-b"))
    shutil.rmtree(site.journal("peer-b"))
    site.spool("peer-b").mkdir()
    site.journal("peer-b").mkdir()
    # The lease files give reconcile the live leases back, but the journals that held them
    # (peer-b's own and its copy of peer-a's) are gone: the build is refused, old data serves.
    fixed = site.leasedns("peer-b", "reconcile", "--fix", check=False)
    assert fixed.returncode == 2, fixed.stdout
    assert "5 corrective events journaled" in fixed.stdout
    assert "its journal directory is gone" in fixed.stdout
    expected = ({**live, gone: None}, {**{a: n for n, a in live.items()}, addr[gone]: None})
    site.wait_dns(*expected, timeout=5)
    # peer-a's next sync brings both journals back: peer-b takes peer-a's own and gets its
    # own events back from peer-a's copy, and publishes again without --force.
    site.leasedns("peer-a", "sync")
    site.wait_dns(*expected, timeout=5)
    assert site.leasedns("peer-b", "status", check=False).returncode in (0, 1)
    assert site.leasedns("peer-b", "reconcile", "--check", check=False).returncode == 0
