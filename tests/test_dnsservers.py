"""The real BIND, Knot and PowerDNS primaries of tests/dnsservers.py do what the rfc2136
output's tests rely on, and conf/named-leasedns.conf and conf/knot-leasedns.conf are accepted
by the real named-checkconf and knotc, and work: a server running them takes leasedns's
signed updates and AXFR."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from dnsservers import Bind, Key, Knot, PowerDNS, parse_key_file, tsig_key, zone_file
from helpers import ROOT, tool

pytestmark = pytest.mark.integration

CONF = ROOT / "conf"
Primary = Bind | Knot | PowerDNS
SERVERS = [
    pytest.param(Bind, id="bind"),
    pytest.param(Knot, id="knot"),
    pytest.param(PowerDNS, id="powerdns"),
]
DEFAULT_NAMES = {
    "mail.lab.example": ['TXT "v=spf1 -all"'],
    "ns.lab.example": ["A 127.0.0.1"],
    "printer.lab.example": ["A 192.0.2.5"],
    "www.lab.example": ["A 192.0.2.80"],
}
ADD_H1 = (
    "update add h1.lab.example 60 A 192.0.2.101\n"
    'update add h1.lab.example 60 TXT "leasedns"\n'
    "send\n"
    "update add 101.2.0.192.in-addr.arpa 60 PTR h1.lab.example.\n"
)


@pytest.mark.parametrize("algorithm", ["hmac-sha256", "hmac-sha512"])
def test_tsig_key_parses_what_tsig_keygen_writes(tmp_path: Path, algorithm: str) -> None:
    key = tsig_key(tmp_path, algorithm=algorithm)
    assert (key.name, key.algorithm, key.path) == ("leasedns", algorithm, tmp_path / "leasedns.key")
    assert f'secret "{key.secret}";' in key.path.read_text()
    assert len(key.tsig().secret) == {"hmac-sha256": 32, "hmac-sha512": 64}[algorithm]
    assert parse_key_file(key.path) == key


def test_parse_key_file_names_the_file_it_cannot_read(tmp_path: Path) -> None:
    bad = tmp_path / "bad.key"
    bad.write_text("secret nothing;\n")
    with pytest.raises(ValueError, match=r"bad\.key: not a tsig-keygen key file"):
        parse_key_file(bad)


@pytest.mark.parametrize("cls", SERVERS)
def test_server_serves_updates_and_keeps_them_over_a_restart(
    tmp_path: Path, cls: type[Primary]
) -> None:
    key = tsig_key(tmp_path)
    with cls(tmp_path, key) as server:
        assert server.address == "127.0.0.1"
        rcode, soa = server.answer("lab.example", "SOA")
        assert rcode == "NOERROR"
        assert soa[0].startswith("ns.lab.example. hostmaster.lab.example. ")
        assert server.answer("www.lab.example", "A") == ("NOERROR", ["192.0.2.80"])
        assert server.answer("h1.lab.example", "A") == ("NXDOMAIN", [])
        assert server.ttl("h1.lab.example", "A") is None
        assert server.names() == DEFAULT_NAMES

        server.nsupdate(ADD_H1)
        assert server.answer("h1.lab.example", "A") == ("NOERROR", ["192.0.2.101"])
        assert server.ttl("h1.lab.example", "A") == 60
        assert server.answer("101.2.0.192.in-addr.arpa", "PTR") == (
            "NOERROR",
            ["h1.lab.example."],
        )
        want = {**DEFAULT_NAMES, "h1.lab.example": ["A 192.0.2.101", 'TXT "leasedns"']}
        assert server.names() == want
        assert server.names("2.0.192.in-addr.arpa") == {
            "101.2.0.192.in-addr.arpa": ["PTR h1.lab.example."]
        }

        port = server.port
        server.restart()
        assert server.port == port
        assert server.names() == want
        assert server.answer("101.2.0.192.in-addr.arpa", "PTR") == (
            "NOERROR",
            ["h1.lab.example."],
        )
    assert server.proc is not None
    assert server.proc.poll() is not None  # stopped by the context manager


@pytest.mark.parametrize("cls", SERVERS)
def test_server_without_update_refuses_the_key(tmp_path: Path, cls: type[Primary]) -> None:
    with cls(tmp_path, tsig_key(tmp_path), update=False) as server:
        with pytest.raises(RuntimeError, match=f"update failed: {server.denied}"):
            server.nsupdate("update add h1.lab.example 60 A 192.0.2.101")
        assert server.answer("h1.lab.example", "A") == ("NXDOMAIN", [])
        assert server.names() == DEFAULT_NAMES  # AXFR is still allowed


@pytest.mark.parametrize("cls", SERVERS)
def test_server_without_axfr_refuses_the_transfer(tmp_path: Path, cls: type[Primary]) -> None:
    import dns.exception

    with cls(tmp_path, tsig_key(tmp_path), axfr=False) as server:
        server.nsupdate("update add h1.lab.example 60 A 192.0.2.101")
        assert server.answer("h1.lab.example", "A") == ("NOERROR", ["192.0.2.101"])
        with pytest.raises(dns.exception.DNSException):
            server.names()


@pytest.mark.parametrize("cls", SERVERS)
def test_server_that_cannot_start_says_why(tmp_path: Path, cls: type[Primary]) -> None:
    server = cls(tmp_path, tsig_key(tmp_path), records=["www 300 IN A not-an-address"])
    server.start_timeout = 2  # the zone never loads: no need to wait the default 10 s
    with pytest.raises(RuntimeError, match=r"(exited|did not serve).*server\.log") as e:
        server.start()
    server.stop()
    assert server.proc is not None
    assert server.proc.poll() is not None
    assert "lab.example.zone" in str(e.value)  # the log tail names the broken zone file


# --- the conf examples --------------------------------------------------------------------


def bind_example(tmp: Path) -> tuple[str, Key]:
    """conf/named-leasedns.conf with its paths in tmp, the key and zone files it names there."""
    (tmp / "etc").mkdir()
    (tmp / "named" / "zones").mkdir(parents=True)
    key = tsig_key(tmp / "etc")
    text = (CONF / "named-leasedns.conf").read_text()
    assert "/etc/leasedns/leasedns.key" in text and "/var/lib/bind/db." in text
    text = text.replace("/etc/leasedns/", f"{tmp}/etc/").replace(
        "/var/lib/bind/db.", f"{tmp}/named/zones/"
    )
    return text, key


def knot_example(tmp: Path, key: Key) -> str:
    """conf/knot-leasedns.conf with its zone files in tmp and the placeholder secret replaced."""
    text = (CONF / "knot-leasedns.conf").read_text()
    assert "/var/lib/knot/" in text
    text = text.replace("/var/lib/knot/", f"{tmp}/knotd/zones/")
    placeholder = "UEFTVEUtVEhFLVNFQ1JFVC1GUk9NLWxlYXNlZG5zLmtleQ=="
    assert f"secret: {placeholder}" in text
    return text.replace(placeholder, key.secret)


def named_checkconf(text: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    """named-checkconf -z: the syntax, the include, and the zone files load."""
    f = tmp / "named-example.conf"
    f.write_text(text)
    return subprocess.run(
        [tool("named-checkconf"), "-z", str(f)], capture_output=True, text=True, timeout=30
    )


def knotc_conf_check(text: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    f = tmp / "knot-example.conf"
    f.write_text(text)
    return subprocess.run(
        [tool("knotc"), "-c", str(f), "conf-check"], capture_output=True, text=True, timeout=30
    )


class ExampleBind(Bind):
    """named with our options and, for key and zones, the conf example as it is shipped."""

    def __init__(self, tmp: Path, key: Key, example: str) -> None:
        super().__init__(tmp, key)
        self.example = example

    def _zone_path(self, zone: str) -> Path:
        return self.dir / "zones" / zone  # the example's /var/lib/bind/db.ZONE

    def zones_conf(self) -> str:
        return self.example


class ExampleKnot(Knot):
    """knotd with our server section and, for key, acl and zones, the conf example."""

    def __init__(self, tmp: Path, key: Key, example: str) -> None:
        super().__init__(tmp, key)
        self.example = example

    def zones_conf(self) -> str:
        return self.example


def test_named_example_passes_named_checkconf(tmp_path: Path) -> None:
    text, _ = bind_example(tmp_path)
    for zone in ("lab.example", "2.0.192.in-addr.arpa"):
        ns_address = ["ns 300 IN A 127.0.0.1"] if zone == "lab.example" else []
        (tmp_path / "named" / "zones" / zone).write_text(
            zone_file(zone, ["@ IN NS ns.lab.example.", *ns_address])
        )
    p = named_checkconf(text, tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "zone lab.example/IN: loaded serial 1" in p.stdout
    assert "zone 2.0.192.in-addr.arpa/IN: loaded serial 1" in p.stdout

    broken = named_checkconf(text.replace("zonesub ANY;", "zonesub ANY", 1), tmp_path)
    assert broken.returncode != 0
    assert "named-example.conf" in broken.stdout + broken.stderr


def test_knot_example_passes_knotc_conf_check(tmp_path: Path) -> None:
    text = knot_example(tmp_path, tsig_key(tmp_path))
    p = knotc_conf_check(text, tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Configuration is valid" in p.stdout + p.stderr

    broken = knotc_conf_check(text.replace("[update, transfer]", "[update, transferr]"), tmp_path)
    assert broken.returncode != 0
    assert "transferr" in broken.stdout + broken.stderr


@pytest.mark.parametrize("which", ["bind", "knot"])
def test_conf_example_takes_signed_updates_and_axfr(tmp_path: Path, which: str) -> None:
    server: Bind | Knot
    if which == "bind":
        text, key = bind_example(tmp_path)
        server = ExampleBind(tmp_path, key, text)
    else:
        key = tsig_key(tmp_path)
        server = ExampleKnot(tmp_path, key, knot_example(tmp_path, key))
    with server:
        server.nsupdate(ADD_H1)
        assert server.names()["h1.lab.example"] == ["A 192.0.2.101", 'TXT "leasedns"']
        assert server.names("2.0.192.in-addr.arpa") == {
            "101.2.0.192.in-addr.arpa": ["PTR h1.lab.example."]
        }
