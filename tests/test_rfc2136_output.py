"""The rfc2136 output against real primaries (BIND 9, Knot DNS and PowerDNS Authoritative on
127.0.0.1): records and their markers, only the changes sent, names it did not create left
alone, two peers writing one zone while their sync lags, and every way the server can fail."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from dnsservers import DEFAULT_RECORDS, Bind, Knot, PowerDNS, tsig_key
from helpers import hook
from leasedns import config, journal
from leasedns.commands import apply
from leasedns.config import Rfc2136Output
from leasedns.errors import PublishError
from leasedns.model import Changes, Desired, Event, Kind, Record
from leasedns.outputs.rfc2136 import (
    CNAME,
    DELEGATION,
    DNAME,
    Rfc2136,
    _serial_before,
    parse_marker,
)

pytestmark = pytest.mark.integration

ZONE, REV = "lab.example", "2.0.192.in-addr.arpa"
NOW = int(time.time())
END = NOW + 3600
Primary = Bind | Knot | PowerDNS
SERVERS = {"bind": Bind, "knot": Knot, "powerdns": PowerDNS}
# The servers the tests of a zone read name by name (no AXFR allowed) and of an update refused
# by policy run against: both answer those as the tests assert (REFUSED to a denied update).
NAME_BY_NAME = [pytest.param(Bind, id="bind"), pytest.param(PowerDNS, id="powerdns")]


def rec(name: str, ip: str, end: int | None = END) -> Record:
    return Record(f"{name}.{ZONE}", ip, end, True, False)


def reverse(ip: str) -> str:
    return f"{ip.rsplit('.', 1)[1]}.{REV}"


class Peer:
    """One peer's rfc2136 output with what it has seen (address -> event time, µs)."""

    def __init__(self, server: Primary, state: Path, key: Path | None, **spec: object) -> None:
        state.mkdir(parents=True, exist_ok=True)
        self.spec = Rfc2136Output(
            server="127.0.0.1",
            zone=ZONE,
            port=server.port,
            reverse_zones=(REV,),
            tsig_key_file=key,
            **spec,  # type: ignore[arg-type]
        )
        self.state = state
        self.seen: dict[str, int] = {}
        self.token = ""
        self.n = 0

    def output(self) -> Rfc2136:
        return Rfc2136(self.spec, 300, True, self.state)

    def publish(
        self,
        records: list[Record],
        now: int = NOW,
        incremental: list[Record] | None = None,
        ready: threading.Barrier | None = None,
    ):  # type: ignore[no-untyped-def]
        """Publish `records` as the whole outcome (or, with `incremental`, as the changes
        from the last outcome: `incremental` holds the records before); with `ready`, wait
        there for the other peers once the note is read, then publish at the same moment."""
        out = self.output()
        serving = out.serving()
        self.n += 1
        token = f"x.{self.n}"
        if incremental is not None and serving.token == self.token and self.token:
            ch = Changes(self.token, token)
            old = {r.name: r for r in incremental}
            new = {r.name: r for r in records}
            for name in sorted(old.keys() | new.keys()):
                ch.note(old.get(name), new.get(name))
        else:
            ch = Changes("", token)
        seen = dict(self.seen)
        desired = Desired([], lambda: list(records), now, lambda ip: seen.get(ip, 0))
        if ready is not None:
            ready.wait(timeout=60)
        try:
            return out.publish(desired, ch)
        finally:
            self.token = token


@pytest.fixture(params=list(SERVERS))
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Primary]:
    key = tsig_key(tmp_path)
    cls = SERVERS[request.param]
    with cls(tmp_path / request.param, key) as srv:
        srv.key = key  # type: ignore[attr-defined]
        yield srv


@pytest.fixture(params=list(SERVERS))
def primary(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Primary]]:
    """Factory: a server of each kind whose forward zone also holds the `extra` records."""
    started: list[Primary] = []

    def start(*extra: str) -> Primary:
        key = tsig_key(tmp_path)
        cls = SERVERS[request.param]
        srv = cls(tmp_path / request.param, key, records=(*DEFAULT_RECORDS, *extra))
        srv.key = key  # type: ignore[attr-defined]
        started.append(srv)
        srv.start()
        return srv

    yield start
    for srv in started:
        srv.stop()


# Names a zone holds that no client may take: a wildcard, a delegation (its glue below it), a
# CNAME, a DNAME, and a name with a record only below it (an empty non-terminal).
ODD_RECORDS = (
    "* 300 IN A 192.0.2.99",
    "child 300 IN NS ns.child.lab.example.",
    "ns.child 300 IN A 192.0.2.53",
    "alias 300 IN CNAME www",
    "dn 300 IN DNAME other.example.",
    "b.ent 300 IN A 192.0.2.7",
)


def key_of(server: Primary) -> Path:
    return server.key.path  # type: ignore[attr-defined,no-any-return]


def output_name(server: Primary) -> str:
    return f"rfc2136 {ZONE}@127.0.0.1:{server.port}"


def test_a_ptr_and_a_marker_per_name_ttl_bounded_by_the_lease(
    server: Primary, tmp_path: Path
) -> None:
    peer = Peer(server, tmp_path / "a", key_of(server))
    peer.seen = {"192.0.2.100": 1_700_000_000_000_000, "192.0.2.101": 7}
    sent = peer.publish([rec("pc1", "192.0.2.100"), rec("pc2", "192.0.2.101", NOW + 100)])
    assert (sent.changed, sent.compiled, sent.names) == (True, True, 4)
    assert server.answer(f"pc1.{ZONE}", "A") == ("NOERROR", ["192.0.2.100"])
    assert server.answer(f"100.{REV}", "PTR") == ("NOERROR", [f"pc1.{ZONE}."])
    _rcode, txt = server.answer(f"pc1.{ZONE}", "TXT")
    assert parse_marker(txt[0].strip('"'), "leasedns") == (1_700_000_000_000_000, END)
    assert server.ttl(f"pc1.{ZONE}", "A") == 300
    assert server.ttl(f"pc2.{ZONE}", "A") == 100  # what is left of the lease
    # The note says what the zone holds: the next publish of the same outcome sends nothing.
    again = peer.publish([rec("pc1", "192.0.2.100"), rec("pc2", "192.0.2.101", NOW + 100)])
    assert (again.changed, again.compiled, again.settled, again.updates) == (False, False, True, 0)


def test_only_the_changes_are_sent_and_a_name_that_moves_never_disappears(
    server: Primary, tmp_path: Path
) -> None:
    peer = Peer(server, tmp_path / "a", key_of(server))
    many = [rec(f"pc{i}", f"192.0.2.{i}") for i in range(100, 150)]
    peer.seen = {r.ip: 1 for r in many}
    assert peer.publish(many).names == 100  # A and PTR each
    moved = [*many[1:], rec("pc100", "192.0.2.200")]
    peer.seen["192.0.2.200"] = 2
    stop, seen_rcodes = threading.Event(), set()

    def watch() -> None:
        while not stop.is_set():
            seen_rcodes.add(server.answer(f"pc100.{ZONE}", "A")[0])

    t = threading.Thread(target=watch)
    t.start()
    try:
        sent = peer.publish(moved, incremental=many)
    finally:
        stop.set()
        t.join()
    # pc100's A and TXT in one update, its old PTR out, the new one in: 3 names, 2 zones.
    assert (sent.names, sent.updates) == (3, 2)
    assert seen_rcodes == {"NOERROR"}
    assert server.answer(f"pc100.{ZONE}", "A") == ("NOERROR", ["192.0.2.200"])
    assert server.answer(f"100.{REV}", "PTR")[0] == "NXDOMAIN"
    assert server.answer(f"200.{REV}", "PTR") == ("NOERROR", [f"pc100.{ZONE}."])


def test_names_it_did_not_create_are_never_touched(server: Primary, tmp_path: Path) -> None:
    peer = Peer(server, tmp_path / "a", key_of(server))
    before = server.names()
    # `www` and `printer` were in the zone; `mail` holds only a TXT; `ns` is the server's.
    claims = [
        rec("www", "192.0.2.150"),
        rec("printer", "192.0.2.151"),
        rec("mail", "192.0.2.152"),
        rec("ns", "192.0.2.153"),
        rec("pc1", "192.0.2.154"),
    ]
    peer.seen = {r.ip: 1 for r in claims}
    sent = peer.publish(claims)
    assert sent.settled
    after = server.names()
    for r in claims[:4]:
        assert after[r.name] == before[r.name]
        assert server.answer(f"{r.ip.rsplit('.', 1)[1]}.{REV}", "PTR")[0] == "NXDOMAIN"
    # One line says how many names others hold, and by what.
    assert sent.problems == [
        f"{output_name(server)}: 4 names are held by records leasedns did not create "
        f"(not published): mail.{ZONE} (TXT records of another writer), ns.{ZONE} (A records "
        f"of another writer), printer.{ZONE} (A records of another writer), www.{ZONE} "
        "(A records of another writer)"
    ]
    assert server.answer(f"pc1.{ZONE}", "A") == ("NOERROR", ["192.0.2.154"])
    # A record someone adds by hand to a name leasedns owns makes it theirs: leasedns
    # then leaves it (its prerequisites fail, the marker no longer matches alone).
    server.nsupdate(f'update add pc1.{ZONE} 300 TXT "hand made"')
    peer.seen["192.0.2.160"] = 2
    sent = peer.publish([rec("pc1", "192.0.2.160")])
    assert server.answer(f"pc1.{ZONE}", "A") == ("NOERROR", ["192.0.2.154"])
    assert sent.problems == [
        f"{output_name(server)}: 1 name is held by records leasedns did not create "
        f"(not published): pc1.{ZONE} (records another writer added beside leasedns's)"
    ]


# --- the zone as it is ------------------------------------------------------------------------


def test_a_name_is_read_as_the_zone_holds_it_and_reading_changes_nothing(
    primary: Callable[..., Primary], tmp_path: Path
) -> None:
    """Only an authoritative answer's records owned by the name are data there; a wildcard's
    answer is not (whether the name exists is asked by a prerequisite-only update)."""
    srv = primary(*ODD_RECORDS)
    out = Peer(srv, tmp_path / "a", key_of(srv)).output()
    out.serving()
    serials = (srv.serial(ZONE), srv.serial(REV))
    names = ("pc1", "www", "mail", "child", "x.child", "ns.child", "alias", "x.dn", "ent")
    got = {n: out._read(f"{n}.{ZONE}") for n in names}
    assert got == {
        "pc1": None,  # only the wildcard answers for it
        "www": "A records of another writer",
        "mail": "TXT records of another writer",
        "child": DELEGATION,  # a referral
        "x.child": DELEGATION,
        "ns.child": DELEGATION,  # glue, below the delegation
        "alias": CNAME,
        # PowerDNS does not follow a DNAME unless dname-processing=yes: the name then does
        # not exist; BIND and Knot rewrite it.
        "x.dn": None if isinstance(srv, PowerDNS) else DNAME,
        "ent": None,  # no record of its own (PowerDNS answers it from the wildcard)
    }
    assert (srv.serial(ZONE), srv.serial(REV)) == serials


def test_names_held_by_a_delegation_a_cname_or_others_fail_no_other_name(
    primary: Callable[..., Primary], tmp_path: Path
) -> None:
    """Clients named like a delegation, a CNAME, a wildcard's sibling and a dozen static
    names, among forty others, in one message: the forty are published; the others are
    reported, in one bounded line, at every publish; a lost note is read back by AXFR, which
    shows what holds them, and nothing is sent for them."""
    statics = tuple(f"h{i} 300 IN A 192.0.2.{60 + i}" for i in range(10))
    srv = primary(*ODD_RECORDS, *statics)
    before = srv.names()
    peer = Peer(srv, tmp_path / "a", key_of(srv))
    clients = [rec(f"pc{i}", f"192.0.2.{100 + i}") for i in range(40)]
    held = [rec("child", "192.0.2.150"), rec("alias", "192.0.2.151"), rec("www", "192.0.2.152")]
    held += [rec(f"h{i}", f"192.0.2.{160 + i}") for i in range(10)]
    claims = [*clients[:20], *held, *clients[20:]]
    peer.seen = {r.ip: 1 for r in claims}
    sent = peer.publish(claims)
    assert sent.settled
    for r in clients:
        assert srv.answer(r.name, "A") == ("NOERROR", [r.ip])
        assert srv.answer(reverse(r.ip), "PTR") == ("NOERROR", [f"{r.name}."])
    after = srv.names()
    for r in held:
        assert after.get(r.name) == before.get(r.name)
        assert srv.answer(reverse(r.ip), "PTR")[0] == "NXDOMAIN"
    line = (
        f"{output_name(srv)}: 13 names are held by records leasedns did not create (not "
        f"published): alias.{ZONE} (a CNAME), child.{ZONE} (a delegation (NS)), h0.{ZONE} (A "
        f"records of another writer), h1.{ZONE} (A records of another writer), h2.{ZONE} (A "
        "records of another writer) and 8 more"
    )
    assert sent.problems == [line]
    # The next apply: a client comes, one leaves; the held names are still claimed.
    later = [*claims[1:], rec("pc99", "192.0.2.199")]
    peer.seen["192.0.2.199"] = 2
    sent = peer.publish(later, incremental=claims)
    assert (sent.settled, sent.problems) == (True, [line])
    assert srv.answer(f"pc99.{ZONE}", "A") == ("NOERROR", ["192.0.2.199"])
    assert srv.answer(f"pc0.{ZONE}", "A") == ("NOERROR", ["192.0.2.99"])  # the wildcard again
    assert srv.answer(reverse("192.0.2.100"), "PTR")[0] == "NXDOMAIN"
    # Its note lost: the zones read by AXFR say what holds each name; nothing is tried.
    peer.output().memo.unlink()
    again = peer.publish(later)
    assert (again.settled, again.updates, again.problems) == (True, 0, [line])


def test_a_zone_with_a_wildcard_publishes_every_name_but_the_colliding_one(
    primary: Callable[..., Primary], tmp_path: Path
) -> None:
    """`*` and `www` in the zone, a client calling itself www: the names sent with it are
    read back literally (the wildcard answers for them, but they do not exist), created,
    and published."""
    srv = primary("* 300 IN A 192.0.2.99")
    peer = Peer(srv, tmp_path / "a", key_of(srv))
    claims = [rec(f"pc{i}", f"192.0.2.{100 + i}") for i in range(5)] + [rec("www", "192.0.2.150")]
    peer.seen = {r.ip: 1 for r in claims}
    sent = peer.publish(claims)
    assert sent.settled
    for r in claims[:5]:
        assert srv.answer(r.name, "A") == ("NOERROR", [r.ip])
        _rcode, txt = srv.answer(r.name, "TXT")
        assert parse_marker(txt[0].strip('"'), "leasedns") == (1, END)
    assert srv.answer(f"www.{ZONE}", "A") == ("NOERROR", ["192.0.2.80"])
    assert sent.problems == [
        f"{output_name(srv)}: 1 name is held by records leasedns did not create (not "
        f"published): www.{ZONE} (A records of another writer)"
    ]


def test_two_writers_a_partner_newer_lease_is_never_undone_while_sync_lags(
    server: Primary, tmp_path: Path
) -> None:
    """A client leases .100 from peer A, then moves and leases .101 from peer B. A has not
    seen B's lease when its own ends: A must not delete or overwrite what B published."""
    key = key_of(server)
    a, b = Peer(server, tmp_path / "a", key), Peer(server, tmp_path / "b", key)
    old, new = rec("laptop", "192.0.2.100", NOW + 60), rec("laptop", "192.0.2.101")
    a.seen = {"192.0.2.100": 100}
    a.publish([old])
    b.seen = {"192.0.2.100": 100, "192.0.2.101": 200}  # B saw A's lease (synced) and its own
    assert b.publish([new]).settled
    assert server.answer(f"laptop.{ZONE}", "A") == ("NOERROR", ["192.0.2.101"])

    stop, rcodes = threading.Event(), set()

    def watch() -> None:
        while not stop.is_set():
            rcodes.add(tuple(server.answer(f"laptop.{ZONE}", "A")[1]) or "none")

    t = threading.Thread(target=watch)
    t.start()
    try:
        # A, before the sync: its lease ended (incremental: laptop removed).
        sent = a.publish([], now=NOW + 61, incremental=[old])
        assert sent.settled
        # A again, from scratch (its note lost): still only its own stale view.
        (a.output().memo).unlink()
        a.token = ""
        a.publish([old])
    finally:
        stop.set()
        t.join()
    assert rcodes == {("192.0.2.101",)}
    # A's old PTR, which B did not write, A removes as its lease ends.
    # After the sync A has seen B's lease; its truth is B's, and the name waits no longer.
    a.seen["192.0.2.101"] = 200
    assert a.publish([new]).settled
    assert server.answer(f"laptop.{ZONE}", "A") == ("NOERROR", ["192.0.2.101"])
    note = a.output()
    note.serving()
    assert note._deferred == set()


def test_a_peer_that_saw_the_newer_event_replaces_the_partner_record(
    server: Primary, tmp_path: Path
) -> None:
    key = key_of(server)
    a, b = Peer(server, tmp_path / "a", key), Peer(server, tmp_path / "b", key)
    b.seen = {"192.0.2.101": 200}
    b.publish([rec("laptop", "192.0.2.101")])
    a.seen = {"192.0.2.101": 200, "192.0.2.102": 300}  # the client came back to A
    sent = a.publish([rec("laptop", "192.0.2.102")])
    assert sent.settled
    assert server.answer(f"laptop.{ZONE}", "A") == ("NOERROR", ["192.0.2.102"])
    # B, lagging, wants its .101 record back (its note still says .101): it is A's now,
    # made from an event B has not seen; B leaves it.
    b.publish([rec("laptop", "192.0.2.101")])
    assert server.answer(f"laptop.{ZONE}", "A") == ("NOERROR", ["192.0.2.102"])
    # An expired partner record may be replaced by anyone.
    c = Peer(server, tmp_path / "c", key)
    c.seen = {"192.0.2.103": 1}
    a.seen["192.0.2.102"] = 300
    gone = rec("laptop", "192.0.2.102", NOW + 5)
    a.publish([gone])
    c.publish([rec("laptop", "192.0.2.103")], now=NOW + 10)
    assert server.answer(f"laptop.{ZONE}", "A") == ("NOERROR", ["192.0.2.103"])


def test_two_peers_publishing_at_the_same_instant_around_a_moving_client_leave_one_ptr(
    server: Primary, tmp_path: Path
) -> None:
    """Peer A renews a client's lease on .100 while peer B, which has not seen the renewal,
    gives the client .101; neither has seen the other's event, and both publish at the same
    instant. Whichever update the server takes first, the name keeps one address and one
    PTR points to it: a PTR is sent only once its name points to its address. The stale
    address stays (neither peer can judge the other's news) until the sync brings each
    peer the other's event and its next apply replaces it."""
    key = key_of(server)
    a, b = Peer(server, tmp_path / "a", key), Peer(server, tmp_path / "b", key)
    done: list[Record] = []  # the clients of the rounds before, settled

    def run(peer: Peer, records: list[Record], ready: threading.Barrier) -> None:
        try:
            results[peer.state.name] = peer.publish(records, ready=ready)
        except Exception as e:  # reported by the assertion below
            results[peer.state.name] = e

    for i in range(4):  # each order of the two peers' messages, likely
        name, old_ip, new_ip = f"laptop{i}", f"192.0.2.{100 + 2 * i}", f"192.0.2.{101 + 2 * i}"
        first = rec(name, old_ip)
        a.seen[old_ip] = b.seen[old_ip] = 100
        assert a.publish([*done, first]).settled and b.publish([*done, first]).settled
        renewed, moved = rec(name, old_ip, END + 600), rec(name, new_ip)
        a.seen[old_ip] = 150  # A's renewal, not synced yet
        b.seen[new_ip] = 200  # B's new lease, not synced yet
        ready = threading.Barrier(2)
        results: dict[str, object] = {}
        threads = [
            threading.Thread(target=run, args=(a, [*done, renewed], ready)),
            threading.Thread(target=run, args=(b, [*done, moved], ready)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(getattr(r, "settled", False) for r in results.values()), results
        (ip,) = server.answer(f"{name}.{ZONE}", "A")[1]
        ptrs = {p: server.answer(reverse(p), "PTR")[1] for p in (old_ip, new_ip)}
        assert ptrs == {p: [f"{name}.{ZONE}."] if p == ip else [] for p in ptrs}, (ip, ptrs)
        # The sync: each peer now has the other's event; the notify runs each one's apply.
        a.seen[new_ip], b.seen[old_ip] = 200, 150
        done.append(moved)
        assert a.publish(done).settled and b.publish(done).settled
        assert server.answer(f"{name}.{ZONE}", "A") == ("NOERROR", [new_ip])
        assert server.answer(reverse(new_ip), "PTR") == ("NOERROR", [f"{name}.{ZONE}."])
        assert server.answer(reverse(old_ip), "PTR")[0] == "NXDOMAIN"


def test_a_lost_note_reads_the_zones_back_without_sending_again(
    server: Primary, tmp_path: Path
) -> None:
    peer = Peer(server, tmp_path / "a", key_of(server))
    records = [rec(f"pc{i}", f"192.0.2.{i}") for i in range(100, 120)]
    peer.seen = {r.ip: 1 for r in records}
    peer.publish(records)
    peer.output().memo.unlink()
    out = peer.output()
    assert out.serving().token == ""
    assert sorted(r.name for r in out.held()) == sorted(r.name for r in records)
    again = peer.publish(records)
    assert (again.settled, again.compiled, again.updates) == (True, False, 0)


def test_big_outcomes_go_in_several_messages_under_64_kib(server: Primary, tmp_path: Path) -> None:
    peer = Peer(server, tmp_path / "a", key_of(server))
    records = [
        Record(f"{'h' * 50}{i}.{ZONE}", f"192.0.2.{i % 250 + 1}", END, False, False)
        for i in range(1500)
    ]
    peer.seen = {r.ip: 1 for r in records}
    sent = peer.publish(records)
    assert sent.settled and sent.names == 1500 and sent.updates >= 4
    assert len(server.names()) >= 1500


@pytest.mark.parametrize("cls", NAME_BY_NAME)
def test_no_transfer_allowed_reads_the_names_one_by_one(
    tmp_path: Path, cls: type[Bind | PowerDNS]
) -> None:
    key = tsig_key(tmp_path)
    with cls(tmp_path / "srv", key, axfr=False) as srv:
        peer = Peer(srv, tmp_path / "a", key.path)
        peer.seen = {"192.0.2.100": 1}
        peer.publish([rec("pc1", "192.0.2.100")])
        peer.output().memo.unlink()
        again = peer.publish([rec("pc1", "192.0.2.100")])
        assert (again.settled, again.compiled, again.updates) == (True, False, 0)


# --- self-repair ------------------------------------------------------------------------------


def test_a_server_that_lost_its_updates_is_repaired_by_the_next_publish(
    server: Primary, tmp_path: Path
) -> None:
    """BIND loses its journal and loads its zone file again (Knot: its journal; PowerDNS: the
    zones loaded again into its database): each zone's serial goes back, which the next
    publish sees in one SOA query per zone, and it sends again what the zones lost."""
    peer = Peer(server, tmp_path / "a", key_of(server))
    mine = [rec(f"pc{i}", f"192.0.2.{100 + i}") for i in range(3)]
    peer.seen = {r.ip: 1 for r in mine}
    peer.publish(mine)
    quiet = peer.publish(mine, incremental=mine)
    assert (quiet.settled, quiet.changed, quiet.compiled, quiet.updates) == (True, False, False, 0)
    server.lose_updates()
    assert server.answer(f"pc0.{ZONE}", "A")[0] == "NXDOMAIN"
    sent = peer.publish(mine, incremental=mine)  # nothing changed since: incremental
    assert (sent.settled, sent.restored, sent.names) == (True, 6, 6)
    assert sent.problems == [
        f"{output_name(server)}: the server had lost 6 names leasedns published (reloaded from "
        "its file?); restored"
    ]
    for r in mine:
        assert server.answer(r.name, "A") == ("NOERROR", [r.ip])
        assert server.answer(reverse(r.ip), "PTR") == ("NOERROR", [f"{r.name}."])


def test_a_reload_hidden_by_the_partner_updates_is_found_by_the_periodic_verification(
    server: Primary, tmp_path: Path
) -> None:
    """After the loss, the partner's updates move each zone's serial on past what this peer
    noted: the serial no longer tells. The verification (every `verify_secs`) reads the
    zones whole and restores what they lost."""
    key = key_of(server)
    a, b = Peer(server, tmp_path / "a", key, verify_secs=600), Peer(server, tmp_path / "b", key)
    mine = [rec(f"pc{i}", f"192.0.2.{100 + i}") for i in range(3)]
    a.seen = {r.ip: 1 for r in mine}
    a.publish(mine)
    noted = {z: server.serial(z) for z in (ZONE, REV)}
    server.lose_updates()
    theirs: list[Record] = []
    while any(_serial_before(server.serial(z), noted[z]) for z in noted):
        theirs.append(rec(f"b{len(theirs)}", f"192.0.2.{200 + len(theirs)}"))
        b.seen[theirs[-1].ip] = 5
        assert b.publish(theirs).settled
    hidden = a.publish(mine, now=NOW + 60, incremental=mine)
    assert (hidden.settled, hidden.updates) == (True, 0)
    assert server.answer(f"pc0.{ZONE}", "A")[0] == "NXDOMAIN"
    sent = a.publish(mine, now=NOW + 600, incremental=mine)
    assert (sent.settled, sent.restored) == (True, 6)
    assert f"{output_name(server)}: the server had lost 6 names" in sent.problems[0]
    for r in mine:
        assert server.answer(r.name, "A") == ("NOERROR", [r.ip])
    for r in theirs:  # the partner's names, which this peer has not seen, stay as they are
        assert server.answer(r.name, "A") == ("NOERROR", [r.ip])


def test_serials_compare_in_rfc1982_order() -> None:
    assert _serial_before(1, 2) and not _serial_before(2, 1) and not _serial_before(7, 7)
    assert _serial_before(1, 2026120601)  # BIND's count, reloaded, before PowerDNS's date
    assert _serial_before(2**32 - 5, 3) and not _serial_before(3, 2**32 - 5)  # wrapped


# --- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", NAME_BY_NAME)
def test_a_refused_update_fails_loudly_and_the_next_publish_sends_everything(
    tmp_path: Path, cls: type[Bind | PowerDNS]
) -> None:
    key = tsig_key(tmp_path)
    with cls(tmp_path / "srv", key, update=False) as srv:
        peer = Peer(srv, tmp_path / "a", key.path)
        peer.seen = {"192.0.2.100": 1}
        with pytest.raises(PublishError) as e:
            peer.publish([rec("pc1", "192.0.2.100")])
        assert str(e.value).startswith(f"rfc2136 {ZONE}@127.0.0.1:{srv.port}: the server REFUSED")
        assert peer.output().serving().token == ""


def test_a_server_down_then_back(server: Primary, tmp_path: Path) -> None:
    peer = Peer(server, tmp_path / "a", key_of(server))
    peer.seen = {"192.0.2.100": 1, "192.0.2.101": 1}
    peer.publish([rec("pc1", "192.0.2.100")])
    server.stop()
    with pytest.raises(PublishError) as e:
        peer.publish(
            [rec("pc1", "192.0.2.100"), rec("pc2", "192.0.2.101")],
            incremental=[rec("pc1", "192.0.2.100")],
        )
    assert "connection refused" in str(e.value)
    server.restart()
    sent = peer.publish([rec("pc1", "192.0.2.100"), rec("pc2", "192.0.2.101")])
    assert sent.settled and sent.names == 2
    assert server.answer(f"pc2.{ZONE}", "A") == ("NOERROR", ["192.0.2.101"])


def test_a_wrong_or_unknown_key_says_so(server: Primary, tmp_path: Path) -> None:
    for d in ("other", "unknown"):
        (tmp_path / d).mkdir()
    # PowerDNS (4.7) answers a message signed with a key it does not know, or whose signature
    # does not verify, with a bare NOTAUTH (REFUSED to an update) that carries no TSIG record,
    # so no BADKEY/BADSIG error reaches the client: leasedns can only say the answer was not
    # signed, and that the server does not know the key (or the zone).
    unsigned = r"|does not know the key \(its answer was not signed\)"
    pdns = unsigned if isinstance(server, PowerDNS) else ""
    other = tsig_key(tmp_path / "other")  # the same name, another secret
    peer = Peer(server, tmp_path / "a", other.path)
    peer.seen = {"192.0.2.100": 1}
    with pytest.raises(PublishError, match=r"BADSIG|BADKEY|NOTAUTH" + pdns):
        peer.publish([rec("pc1", "192.0.2.100")])
    unknown = tsig_key(tmp_path / "unknown", name="stranger")
    peer = Peer(server, tmp_path / "b", unknown.path)
    with pytest.raises(PublishError, match=r"BADKEY|NOTAUTH|REFUSED" + pdns):
        peer.publish([rec("pc1", "192.0.2.100")])
    assert server.answer(f"pc1.{ZONE}", "A")[0] == "NXDOMAIN"


def test_a_bad_key_file_names_file_and_line(server: Primary, tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text('key "leasedns" {\n\talgorithm hmac-sha256;\n\tsecret "not base64!";\n};\n')
    peer = Peer(server, tmp_path / "a", bad)
    with pytest.raises(PublishError) as e:
        peer.publish([rec("pc1", "192.0.2.100")])
    assert f"{bad}:3: key 'leasedns': the secret is not base64" in str(e.value)


def test_a_zone_the_server_does_not_serve(server: Primary, tmp_path: Path) -> None:
    peer = Peer(server, tmp_path / "a", key_of(server))
    peer.spec = Rfc2136Output(
        server="127.0.0.1", zone="other.example", port=server.port, tsig_key_file=key_of(server)
    )
    with pytest.raises(PublishError, match=r"the server does not serve zone other\.example"):
        peer.publish([Record("pc1.other.example", "192.0.2.100", END, False, False)])


def test_a_server_that_never_answers_times_out(tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    try:
        spec = Rfc2136Output(
            server="127.0.0.1", zone=ZONE, port=listener.getsockname()[1], timeout=0.5
        )
        out = Rfc2136(spec, 300, True, tmp_path)
        out.serving()
        t0 = time.monotonic()
        with pytest.raises(PublishError, match=r"no answer from 127.0.0.1 port \d+ within 0.5 s"):
            out.publish(
                Desired([], lambda: [rec("pc1", "192.0.2.100")], NOW, lambda ip: 1),
                Changes("", "t"),
            )
        assert time.monotonic() - t0 < 30
    finally:
        listener.close()


# --- apply, end to end ------------------------------------------------------------------------


def write_rfc2136_config(tmp: Path, srv: Primary, key: Path, **extra: object) -> config.Config:
    doc = {
        "peer": "peer-a",
        "state_dir": str(tmp / "state"),
        "domain": ZONE,
        "subnets": ["192.0.2.0/24"],
        "build": {"coalesce_secs": 0},
        "outputs": [
            {
                "type": "rfc2136",
                "server": "127.0.0.1",
                "port": srv.port,
                "reverse_zones": [REV],
                "tsig_key_file": str(key),
            }
        ],
        **extra,
    }
    path = tmp / "leasedns.yaml"
    path.write_text(yaml.safe_dump(doc))
    return config.load(str(path))


def test_apply_publishes_releases_and_expires_through_the_server(
    server: Primary, tmp_path: Path
) -> None:
    cfg = write_rfc2136_config(tmp_path, server, key_of(server))
    apply.ensure_dirs(cfg)
    hook(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", "pc1", "", "600")
    hook(cfg, "commit", "192.0.2.101", "2:0:0:0:0:2", "pc2", "", "2")
    hook(cfg, "commit", "192.0.2.102", "2:0:0:0:0:3", "www", "", "600")  # a server's name
    report = apply.run(cfg)
    assert report.ok, report.error
    assert report.outputs == {f"rfc2136 {ZONE}@127.0.0.1:{server.port}": "ok"}
    assert server.answer(f"pc1.{ZONE}", "A") == ("NOERROR", ["192.0.2.100"])
    assert server.answer(f"pc2.{ZONE}", "A") == ("NOERROR", ["192.0.2.101"])
    assert server.answer(f"www.{ZONE}", "A") == ("NOERROR", ["192.0.2.80"])
    assert (
        f"{output_name(server)}: 1 name is held by records leasedns did not create (not "
        f"published): www.{ZONE} (A records of another writer)"
    ) in report.problems
    hook(cfg, "release", "192.0.2.100", "2:0:0:0:0:1", "pc1", "", "")
    time.sleep(2.5)  # pc2's 2 s lease runs out
    report = apply.run(cfg)
    assert report.ok, report.error
    assert server.answer(f"pc1.{ZONE}", "A")[0] == "NXDOMAIN"
    assert server.answer(f"pc2.{ZONE}", "A")[0] == "NXDOMAIN"
    assert server.answer(f"101.{REV}", "PTR")[0] == "NXDOMAIN"
    assert server.answer(f"www.{ZONE}", "A") == ("NOERROR", ["192.0.2.80"])


def test_apply_with_the_server_down_fails_that_output_and_catches_up(
    server: Primary, tmp_path: Path
) -> None:
    hosts = tmp_path / "leasedns.hosts"
    cfg = write_rfc2136_config(tmp_path, server, key_of(server))
    doc = yaml.safe_load(Path(cfg.path).read_text())
    doc["outputs"].append({"type": "hosts", "path": str(hosts)})
    Path(cfg.path).write_text(yaml.safe_dump(doc))
    cfg = config.load(cfg.path)
    apply.ensure_dirs(cfg)
    server.stop()
    hook(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", "pc1", "", "600")
    report = apply.run(cfg)
    assert not report.ok
    name = f"rfc2136 {ZONE}@127.0.0.1:{server.port}"
    assert report.error.startswith(f"1 of 2 outputs failed to publish (published: hosts {hosts})")
    assert report.outputs[name].startswith(f"{name}: ") and report.outputs[f"hosts {hosts}"] == "ok"
    assert "192.0.2.100 pc1.lab.example" in hosts.read_text()
    server.restart()
    report = apply.run(cfg)
    assert report.ok, report.error
    assert server.answer(f"pc1.{ZONE}", "A") == ("NOERROR", ["192.0.2.100"])


def test_apply_a_client_named_like_a_delegation_stops_no_publishing(
    primary: Callable[..., Primary], tmp_path: Path
) -> None:
    """The zone delegates `child`; a client calls itself child. Every other name is
    published, later clients too, released ones are removed; the report says which name is
    held and by what, and the output is ok."""
    srv = primary(*ODD_RECORDS)
    cfg = write_rfc2136_config(tmp_path, srv, key_of(srv))
    apply.ensure_dirs(cfg)
    hook(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", "pc1", "", "600")
    hook(cfg, "commit", "192.0.2.101", "2:0:0:0:0:2", "child", "", "600")
    hook(cfg, "commit", "192.0.2.102", "2:0:0:0:0:3", "pc2", "", "600")
    line = (
        f"{output_name(srv)}: 1 name is held by records leasedns did not create (not "
        f"published): child.{ZONE} (a delegation (NS))"
    )
    report = apply.run(cfg)
    assert (report.ok, report.outputs) == (True, {output_name(srv): "ok"}), report.error
    assert report.output_notes == {output_name(srv): [line]}  # `status` shows it there
    for n, ip in (("pc1", "192.0.2.100"), ("pc2", "192.0.2.102")):
        assert srv.answer(f"{n}.{ZONE}", "A") == ("NOERROR", [ip])
    hook(cfg, "commit", "192.0.2.103", "2:0:0:0:0:4", "pc3", "", "600")
    hook(cfg, "release", "192.0.2.100", "2:0:0:0:0:1", "pc1", "", "")
    report = apply.run(cfg)
    assert (report.ok, report.outputs) == (True, {output_name(srv): "ok"}), report.error
    assert report.output_notes == {output_name(srv): [line]}
    assert srv.answer(f"pc3.{ZONE}", "A") == ("NOERROR", ["192.0.2.103"])
    assert srv.answer(f"pc1.{ZONE}", "A") == ("NOERROR", ["192.0.2.99"])  # the wildcard's
    assert srv.answer(reverse("192.0.2.100"), "PTR")[0] == "NXDOMAIN"
    assert srv.answer(reverse("192.0.2.101"), "PTR")[0] == "NXDOMAIN"


def test_apply_restores_what_the_server_lost_without_a_lease_file(
    server: Primary, tmp_path: Path
) -> None:
    cfg = write_rfc2136_config(tmp_path, server, key_of(server))
    apply.ensure_dirs(cfg)
    hook(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", "pc1", "", "600")
    hook(cfg, "commit", "192.0.2.101", "2:0:0:0:0:2", "pc2", "", "600")
    assert apply.run(cfg).ok
    quiet = apply.run(cfg)  # nothing to send: nothing compiled
    assert (quiet.ok, quiet.changed, quiet.compiled) == (True, False, False), quiet.error
    server.lose_updates()
    report = apply.run(cfg)
    assert (report.ok, report.changed, report.compiled) == (True, True, True), report.error
    assert (
        f"{output_name(server)}: the server had lost 4 names leasedns published (reloaded "
        "from its file?); restored"
    ) in report.problems
    assert server.answer(f"pc1.{ZONE}", "A") == ("NOERROR", ["192.0.2.100"])
    assert server.answer(reverse("192.0.2.101"), "PTR") == ("NOERROR", [f"pc2.{ZONE}."])


def test_apply_force_after_a_lost_partner_journal_brings_every_output_to_the_merge(
    server: Primary, tmp_path: Path
) -> None:
    """The partner's journal is lost here and `apply --force` accepts it: the hosts file
    drops the partner's names, and so does the zone (the outcome is final: no partner news
    is awaited for records made from events this peer no longer holds)."""
    hosts = tmp_path / "leasedns.hosts"
    cfg = write_rfc2136_config(tmp_path, server, key_of(server))
    doc = yaml.safe_load(Path(cfg.path).read_text())
    doc["outputs"].append({"type": "hosts", "path": str(hosts)})
    Path(cfg.path).write_text(yaml.safe_dump(doc))
    cfg = config.load(cfg.path)
    apply.ensure_dirs(cfg)
    hook(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", "mine1", "", "600")
    hook(cfg, "commit", "192.0.2.101", "2:0:0:0:0:2", "mine2", "", "600")
    t = int(time.time() * 1e6)
    theirs = [
        Event(
            Kind.COMMIT,
            t + i,
            f"192.0.2.{110 + i}",
            f"02:00:00:00:01:0{i}",
            f"b{i}",
            "",
            600,
            "peer-b",
        )
        for i in range(3)
    ]
    journal.append(cfg.journal_dir / "peer-b", theirs)
    assert apply.run(cfg).ok
    assert len(held_names(cfg, tmp_path)) == 5
    shutil.rmtree(cfg.journal_dir / "peer-b")
    assert not apply.run(cfg).ok  # the journal's loss is refused...
    report = apply.run(cfg, force=True)  # ...until accepted
    assert report.ok, report.error
    mine = [("192.0.2.100", f"mine1.{ZONE}"), ("192.0.2.101", f"mine2.{ZONE}")]
    assert [tuple(line.split()) for line in hosts.read_text().splitlines()[-2:]] == mine
    assert held_names(cfg, tmp_path) == [(n, ip) for ip, n in mine]
    for i in range(3):
        assert server.answer(reverse(f"192.0.2.{110 + i}"), "PTR")[0] == "NXDOMAIN"


def held_names(cfg: config.Config, tmp: Path) -> list[tuple[str, str]]:
    """(name, address) of every record the zones hold for leasedns, read by AXFR."""
    spec = cfg.outputs[0]
    assert isinstance(spec, Rfc2136Output)
    (tmp / "probe").mkdir(exist_ok=True)
    return [(r.name, r.ip) for r in Rfc2136(spec, cfg.ttl, cfg.reverse, tmp / "probe").held()]


@pytest.mark.parametrize("cls", NAME_BY_NAME)
def test_held_asks_the_server_by_axfr_or_name_by_name(
    tmp_path: Path, cls: type[Bind | PowerDNS]
) -> None:
    key = tsig_key(tmp_path)
    for axfr in (True, False):
        with cls(tmp_path / f"srv-{axfr}", key, axfr=axfr) as srv:
            peer = Peer(srv, tmp_path / f"a-{axfr}", key.path)
            peer.seen = {"192.0.2.100": 1, "192.0.2.101": 1}
            peer.publish([rec("pc1", "192.0.2.100"), rec("pc2", "192.0.2.101")])
            srv.nsupdate(f"update delete pc2.{ZONE} A")  # drift: someone took pc2's A away
            out = peer.output()
            out.serving()
            assert [(r.name, r.ip) for r in out.held()] == [(f"pc1.{ZONE}", "192.0.2.100")]


@pytest.mark.parametrize("algorithm", ["hmac-md5", "hmac-sha1", "hmac-sha512"])
def test_every_algorithm_tsig_keygen_writes_signs_updates(tmp_path: Path, algorithm: str) -> None:
    key = tsig_key(tmp_path, algorithm=algorithm)
    with Bind(tmp_path / "bind", key) as srv:
        peer = Peer(srv, tmp_path / "a", key.path)
        peer.seen = {"192.0.2.100": 1}
        assert peer.publish([rec("pc1", "192.0.2.100")]).settled
        assert srv.answer(f"pc1.{ZONE}", "A") == ("NOERROR", ["192.0.2.100"])


def test_a_name_that_is_a_zone_apex_is_refused_not_sent(tmp_path: Path) -> None:
    """A one-address reverse zone: its apex is the PTR name; a record named as the zone."""
    spec = Rfc2136Output("127.0.0.1", ZONE, reverse_zones=("100.2.0.192.in-addr.arpa",))
    out = Rfc2136(spec, 300, True, tmp_path)
    problems: list[str] = []
    got = out.entries(
        [],
        [rec("pc1", "192.0.2.100"), Record(ZONE, "192.0.2.7", END, True, False)],
        lambda ip: 1,
        problems,
    )
    assert list(got) == [f"pc1.{ZONE}"]
    assert problems == [
        f"{out.name}: no reverse zone covers 192.0.2.100; its PTR is not published",
        f"{out.name}: {ZONE} is not a name in zone {ZONE}",
    ]
