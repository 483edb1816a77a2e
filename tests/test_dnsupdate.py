"""UPDATE messages written as bytes read back by dnspython as the same prerequisites and
updates; the size limit; names that do not fit DNS."""

from __future__ import annotations

import dns.message
import dns.tsig
import dns.update
import pytest

from leasedns.outputs import dnsupdate
from leasedns.outputs.dnsupdate import BadName, Records, Update

MARK = "leasedns owner=leasedns t=5 end=1800000000"


def sections(wire: bytes, keyring: dict | None = None) -> tuple[list[str], list[str]]:  # type: ignore[type-arg]
    msg = dns.message.from_wire(wire, keyring=keyring)
    assert isinstance(msg, dns.update.UpdateMessage)
    assert [z.to_text() for z in msg.zone] == ["lab.example. IN SOA"]

    def lines(rrsets) -> list[str]:  # type: ignore[no-untyped-def]
        return [ln for r in rrsets for ln in r.to_text().splitlines()]

    return lines(msg.prerequisite), lines(msg.update)


def test_a_create_a_replace_and_a_delete_read_back_as_written() -> None:
    msg = Update("lab.example")
    assert msg.add("pc1.lab.example", None, Records("A", "192.0.2.100", MARK), 300)
    old = Records("A", "192.0.2.101", MARK)
    assert msg.add("pc2.lab.example", old, Records("A", "192.0.2.102", MARK.replace("5", "6")), 60)
    assert msg.add("pc3.lab.example", old, None, 0)
    wire, mac = msg.wire()
    assert mac == b""
    pre, upd = sections(wire)
    assert pre == [
        "pc1.lab.example. NONE ANY",
        "pc2.lab.example. 0 IN A 192.0.2.101",
        f'pc2.lab.example. 0 IN TXT "{MARK}"',
        "pc3.lab.example. 0 IN A 192.0.2.101",
        f'pc3.lab.example. 0 IN TXT "{MARK}"',
    ]
    assert upd == [
        "pc1.lab.example. 300 IN A 192.0.2.100",
        f'pc1.lab.example. 300 IN TXT "{MARK}"',
        "pc2.lab.example. ANY A",
        "pc2.lab.example. ANY TXT",
        "pc2.lab.example. 60 IN A 192.0.2.102",
        'pc2.lab.example. 60 IN TXT "leasedns owner=leasedns t=6 end=1800000000"',
        "pc3.lab.example. ANY A",
        "pc3.lab.example. ANY TXT",
    ]


def test_a_question_whether_a_name_is_in_use_changes_nothing() -> None:
    msg = Update("lab.example")
    msg.require_in_use("www.lab.example")
    pre, upd = sections(msg.wire()[0])
    assert (pre, upd) == (["www.lab.example. ANY ANY"], [])
    with pytest.raises(BadName):
        msg.require_in_use("www.other.example")


def test_ptr_records_and_a_signature_dnspython_verifies() -> None:
    key = dns.tsig.Key("leasedns.", b"0123456789abcdef", "hmac-sha256.")
    msg = Update("2.0.192.in-addr.arpa")
    msg.add("100.2.0.192.in-addr.arpa", None, Records("PTR", "pc1.lab.example", MARK), 300)
    wire, mac = msg.wire(key)
    assert len(mac) == 32
    got = dns.message.from_wire(wire, keyring={key.name: key})
    assert got.had_tsig and got.id == msg.id
    assert next(r.to_text() for r in got.update).startswith(
        "100.2.0.192.in-addr.arpa. 300 IN PTR pc1.lab.example."
    )
    bad = dns.tsig.Key("leasedns.", b"another secret!!", "hmac-sha256.")
    with pytest.raises(dns.tsig.BadSignature):
        dns.message.from_wire(wire, keyring={bad.name: bad})


def test_a_message_stops_at_its_limit_and_one_name_always_fits() -> None:
    msg = Update("lab.example", limit=1000)
    n = 0
    while msg.add(f"pc{n}.lab.example", None, Records("A", "192.0.2.1", MARK), 300):
        n += 1
    assert 5 < n < 20 and msg.names == n and msg.size() <= 1000
    assert len(msg.wire()[0]) == msg.size()
    tiny = Update("lab.example", limit=10)
    assert tiny.add("pc1.lab.example", None, Records("A", "192.0.2.1", MARK), 300)
    assert not tiny.add("pc2.lab.example", None, Records("A", "192.0.2.1", MARK), 300)


def test_pointers_stop_where_they_cannot_reach_and_the_message_still_reads() -> None:
    msg = Update("lab.example", limit=dnsupdate.MAX_WIRE - dnsupdate.TSIG_ROOM)
    old = Records("A", "192.0.2.1", MARK)
    n = 0
    while msg.add(f"host-{n:05d}.lab.example", old, Records("A", "192.0.2.2", MARK), 300):
        n += 1
    assert msg.size() > 0x4000
    pre, upd = sections(msg.wire()[0])
    assert len(pre) == 2 * n and len(upd) == 4 * n
    assert upd[-1].startswith(f"host-{n - 1:05d}.lab.example. 300 IN TXT")


@pytest.mark.parametrize(
    "name", ["x" * 64 + ".lab.example", ".".join(["a" * 60] * 5) + ".lab.example", "pc1.other"]
)
def test_names_that_do_not_fit_are_refused(name: str) -> None:
    with pytest.raises(BadName):
        Update("lab.example").add(name, None, Records("A", "192.0.2.1", MARK), 300)
