"""The rfc2136 output against real primaries (BIND 9, Knot DNS and PowerDNS Authoritative on
127.0.0.1): records and their markers, only the changes sent, names it did not create left
alone, two peers writing one zone while their sync lags, and every way the server can fail."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dnsservers import Bind, Knot, PowerDNS, tsig_key
from helpers import hook
from leasedns import config
from leasedns.commands import apply
from leasedns.config import Rfc2136Output
from leasedns.errors import PublishError
from leasedns.model import Changes, Desired, Record
from leasedns.outputs.rfc2136 import Rfc2136, parse_marker

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
        self, records: list[Record], now: int = NOW, incremental: list[Record] | None = None
    ):  # type: ignore[no-untyped-def]
        """Publish `records` as the whole outcome (or, with `incremental`, as the changes
        from the last outcome: `incremental` holds the records before)."""
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
        desired = Desired([], lambda: list(records), now, lambda ip: self.seen.get(ip, 0))
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


def key_of(server: Primary) -> Path:
    return server.key.path  # type: ignore[attr-defined,no-any-return]


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
        assert any(
            f"{r.name} is held by records leasedns did not create" in p for p in sent.problems
        )
    assert server.answer(f"pc1.{ZONE}", "A") == ("NOERROR", ["192.0.2.154"])
    # A record someone adds by hand to a name leasedns owns makes it theirs: leasedns
    # then leaves it (its prerequisites fail, the marker no longer matches alone).
    server.nsupdate(f'update add pc1.{ZONE} 300 TXT "hand made"')
    peer.seen["192.0.2.160"] = 2
    sent = peer.publish([rec("pc1", "192.0.2.160")])
    assert server.answer(f"pc1.{ZONE}", "A") == ("NOERROR", ["192.0.2.154"])
    assert any(f"pc1.{ZONE} is held by records" in p for p in sent.problems)


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
    assert any("www.lab.example is held by records" in p for p in report.problems)
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
