"""Name takeover, end to end: the real hook -> apply -> real tinydns-data, answers from tinydns-get.

A DHCP client chooses its own name. None of these names may take a record that is not its own:
a dhcpd.conf fixed-address host's name, a protected name, the zone apex, a name the static data
defines (NS host, `=`, `+`, `C` lines), a name a live client holds under `conflict: first`, or a
PTR for any address other than its own lease's. Each test checks the exact DNS answer and the
refusal reason `leasedns show --json` gives.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import HOOK, tool, write_config
from leasedns import config
from leasedns.commands import apply

pytestmark = pytest.mark.integration

EXTRA_STATIC = (
    "=mail.lab.example:192.0.2.25:300\n"
    "+web.lab.example:192.0.2.80:300\n"
    "Cftp.lab.example:web.lab.example:300\n"
)
DHCPD_CONF = """\
subnet 192.0.2.0 netmask 255.255.255.0 {
  range 192.0.2.100 192.0.2.199;
}
host printer {
  hardware ethernet 02:00:00:00:99:01;
  fixed-address 192.0.2.50;
}
"""


def setup(tmp: Path, **extra: object) -> config.Config:
    tool("tinydns-data")
    extra_static = tmp / "extra.data"
    extra_static.write_text(EXTRA_STATIC)
    conf = tmp / "dhcpd.conf"
    conf.write_text(DHCPD_CONF)
    opts: dict[str, object] = {
        "subnets": ["192.0.2.0/24"],
        "names": {"protected": ["www"]},
        "dhcpd": {"conf": str(conf)},
        "tinydns": {"static": [str(tmp / "static.data"), str(extra_static)]},
    }
    opts.update(extra)
    cfg = config.load(str(write_config(tmp, **opts)))
    apply.ensure_dirs(cfg)
    return cfg


def fire(cfg: config.Config, *args: str) -> None:
    """The real hook, as dhcpd runs it (no apply of its own: the test runs apply)."""
    env = {"PATH": "/usr/bin:/bin", "LEASEDNS_SPOOL": str(cfg.spool_dir), "LEASEDNS_NO_APPLY": "1"}
    p = subprocess.run(
        [str(HOOK), *args], env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=10
    )
    assert p.returncode == 0 and p.stderr == b"", p.stderr


def build(cfg: config.Config) -> None:
    report = apply.run(cfg)
    assert report.ok, report.error
    root = cfg.tinydns_root
    assert (root / "data.cdb").stat().st_mtime_ns >= (root / "data").stat().st_mtime_ns
    assert report.rejected == 0


def ask(cfg: config.Config, qtype: str, name: str) -> tuple[str, list[str]]:
    """(rcode, answers as 'TYPE value') from tinydns-get on the compiled data.cdb."""
    p = subprocess.run(
        [tool("tinydns-get"), qtype, name],
        cwd=cfg.tinydns_root,
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    lines = p.stdout.splitlines()
    if len(lines) < 2:
        return "not authoritative", []  # tinydns would not answer at all
    status = lines[1]
    rcode = "nxdomain" if "nxdomain" in status else "noerror" if "noerror" in status else status
    answers = sorted(" ".join(line.split()[3:]) for line in lines if line.startswith("answer: "))
    return rcode, answers


def a(cfg: config.Config, name: str) -> tuple[str, list[str]]:
    return ask(cfg, "a", name)


def ptr(cfg: config.Config, ip: str) -> tuple[str, list[str]]:
    return ask(cfg, "ptr", ipaddress.IPv4Address(ip).reverse_pointer)


def show(cfg: config.Config) -> dict[str, dict[str, object]]:
    """`leasedns -c CFG show --json`, one row per address."""
    leasedns = str(Path(sys.executable).with_name("leasedns"))
    p = subprocess.run(
        [leasedns, "-c", str(cfg.path), "show", "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={**os.environ, "PATH": os.environ["PATH"] + ":/usr/sbin"},
    )
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    return {str(r["ip"]): r for r in rows}


def dynamic_lines(cfg: config.Config) -> list[str]:
    data = (cfg.tinydns_root / "data").read_text()
    return data.split("# leasedns: dynamic bindings", 1)[1].splitlines()[1:]


NXDOMAIN: tuple[str, list[str]] = ("nxdomain", [])


# (a) ------------------------------------------------------------------------------------------


def test_client_cannot_take_a_fixed_address_hosts_name(tmp_path: Path) -> None:
    cfg = setup(tmp_path)
    fire(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", "printer", "", "600")
    fire(cfg, "commit", "192.0.2.101", "2:0:0:0:0:2", "PRINTER.lab.example.", "", "600")
    fire(cfg, "commit", "192.0.2.102", "2:0:0:0:0:3", "laptop", "printer", "600")  # host-decl
    # a client that leases the fixed address itself does not rename it
    fire(cfg, "commit", "192.0.2.50", "2:0:0:0:0:4", "evil", "", "600")
    build(cfg)

    assert a(cfg, "printer.lab.example") == ("noerror", ["A 192.0.2.50"])
    assert ptr(cfg, "192.0.2.50") == ("noerror", ["PTR printer.lab.example"])
    assert a(cfg, "evil.lab.example") == NXDOMAIN
    assert a(cfg, "laptop.lab.example") == NXDOMAIN  # it asked for printer via host-decl
    for ip in ("192.0.2.100", "192.0.2.101", "192.0.2.102"):
        assert ptr(cfg, ip) == NXDOMAIN
    rows = show(cfg)
    for ip in ("192.0.2.100", "192.0.2.101", "192.0.2.102"):
        assert rows[ip]["published"] is False
        assert rows[ip]["note"] == (
            "name printer.lab.example belongs to static data or a dhcpd.conf host"
        )
    assert rows["192.0.2.50"]["note"] == (
        "192.0.2.50 is a fixed address; its name comes from dhcpd.conf"
    )
    assert dynamic_lines(cfg) == []


# (b) ------------------------------------------------------------------------------------------


def test_client_cannot_take_a_protected_name(tmp_path: Path) -> None:
    cfg = setup(tmp_path)
    fire(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", "www", "", "600")
    fire(cfg, "commit", "192.0.2.101", "2:0:0:0:0:2", "WWW.Lab.Example.", "", "600")
    fire(cfg, "commit", "192.0.2.102", "2:0:0:0:0:3", "w_w_w", "", "600")  # sanitized: w-w-w
    build(cfg)

    assert a(cfg, "www.lab.example") == NXDOMAIN
    assert ptr(cfg, "192.0.2.100") == NXDOMAIN and ptr(cfg, "192.0.2.101") == NXDOMAIN
    assert a(cfg, "w-w-w.lab.example") == ("noerror", ["A 192.0.2.102"])  # a different name
    rows = show(cfg)
    for ip in ("192.0.2.100", "192.0.2.101"):
        assert (rows[ip]["published"], rows[ip]["note"]) == (
            False,
            "name www.lab.example is protected",
        )


# (c) ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lab.example", "lab.example.", "LAB.EXAMPLE", "Lab.Example.."])
def test_client_cannot_take_the_zone_apex(tmp_path: Path, name: str) -> None:
    cfg = setup(tmp_path)
    fire(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", name, "", "600")
    build(cfg)

    assert a(cfg, "lab.example") == ("noerror", [])  # SOA/NS only: no A at the apex
    assert a(cfg, "lab.lab.example") == NXDOMAIN  # nor is it cut to its first label
    assert ptr(cfg, "192.0.2.100") == NXDOMAIN
    row = show(cfg)["192.0.2.100"]
    assert row["published"] is False
    assert row["note"] == f"name {name!r} is the zone apex"
    assert dynamic_lines(cfg) == []


# (d) ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "owner", "answer"),
    [
        ("ns", "ns.lab.example", ["A 127.53.0.1"]),  # NS host of the `.` line
        ("NS.lab.example.", "ns.lab.example", ["A 127.53.0.1"]),
        ("mail", "mail.lab.example", ["A 192.0.2.25"]),  # `=` line
        ("web", "web.lab.example", ["A 192.0.2.80"]),  # `+` line
        ("ftp", "ftp.lab.example", ["CNAME web.lab.example"]),  # `C` line
    ],
)
def test_client_cannot_take_a_name_of_the_static_data(
    tmp_path: Path, name: str, owner: str, answer: list[str]
) -> None:
    cfg = setup(tmp_path)
    fire(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", name, "", "600")
    build(cfg)

    assert a(cfg, owner) == ("noerror", answer)
    assert ptr(cfg, "192.0.2.100") == NXDOMAIN
    row = show(cfg)["192.0.2.100"]
    assert (row["published"], row["note"]) == (
        False,
        f"name {owner} belongs to static data or a dhcpd.conf host",
    )
    assert dynamic_lines(cfg) == []


# (e) ------------------------------------------------------------------------------------------


def test_first_policy_keeps_a_live_owners_name_until_it_releases(tmp_path: Path) -> None:
    cfg = setup(tmp_path, names={"protected": ["www"], "conflict": "first"})
    fire(cfg, "commit", "192.0.2.101", "2:0:0:0:0:1", "desk", "", "600")
    build(cfg)
    fire(cfg, "commit", "192.0.2.102", "2:0:0:0:0:2", "Desk", "", "600")  # a later claimant
    build(cfg)

    assert a(cfg, "desk.lab.example") == ("noerror", ["A 192.0.2.101"])
    assert ptr(cfg, "192.0.2.101") == ("noerror", ["PTR desk.lab.example"])
    assert ptr(cfg, "192.0.2.102") == NXDOMAIN
    rows = show(cfg)
    assert rows["192.0.2.101"]["published"] is True and rows["192.0.2.101"]["note"] == ""
    assert (rows["192.0.2.102"]["published"], rows["192.0.2.102"]["note"]) == (
        False,
        "name desk.lab.example is held by 192.0.2.101 (first policy)",
    )

    # It releases: the second claimant gets the name on the next build.
    fire(cfg, "release", "192.0.2.101", "2:0:0:0:0:1", "desk", "", "")
    build(cfg)
    assert a(cfg, "desk.lab.example") == ("noerror", ["A 192.0.2.102"])
    assert ptr(cfg, "192.0.2.102") == ("noerror", ["PTR desk.lab.example"])
    assert ptr(cfg, "192.0.2.101") == NXDOMAIN
    rows = show(cfg)
    assert "192.0.2.101" not in rows
    assert rows["192.0.2.102"]["published"] is True and rows["192.0.2.102"]["note"] == ""


# (f) ------------------------------------------------------------------------------------------


def test_a_client_gets_a_ptr_only_for_its_own_lease(tmp_path: Path) -> None:
    cfg = setup(tmp_path)
    fire(cfg, "commit", "192.0.2.103", "2:0:0:0:0:3", "1.2.0.192.in-addr.arpa", "", "600")
    fire(cfg, "commit", "192.0.2.104", "2:0:0:0:0:4", "evil.2.0.192.in-addr.arpa.", "", "600")
    fire(cfg, "commit", "192.0.2.105", "2:0:0:0:0:5", "x", "7.2.0.192.in-addr.arpa", "600")
    fire(
        cfg,
        "commit",
        "192.0.2.106",
        "2:0:0:0:0:6",
        "a:192.0.2.9\n^9.2.0.192.in-addr.arpa:evil.lab.example",
        "",
        "600",
    )
    fire(cfg, "commit", "198.51.100.7", "2:0:0:0:0:7", "outsider", "", "600")
    build(cfg)

    # What the names became: their first label, at the client's own address.
    assert a(cfg, "1.lab.example") == ("noerror", ["A 192.0.2.103"])
    assert a(cfg, "evil.lab.example") == ("noerror", ["A 192.0.2.104"])
    assert a(cfg, "7.lab.example") == ("noerror", ["A 192.0.2.105"])
    assert a(cfg, "a192.lab.example") == ("noerror", ["A 192.0.2.106"])
    assert ptr(cfg, "192.0.2.103") == ("noerror", ["PTR 1.lab.example"])
    assert ptr(cfg, "192.0.2.104") == ("noerror", ["PTR evil.lab.example"])
    assert ptr(cfg, "192.0.2.105") == ("noerror", ["PTR 7.lab.example"])
    assert ptr(cfg, "192.0.2.106") == ("noerror", ["PTR a192.lab.example"])
    # The reverse names they sent answer nothing.
    for name in (
        "1.2.0.192.in-addr.arpa",
        "evil.2.0.192.in-addr.arpa",
        "7.2.0.192.in-addr.arpa",
        "9.2.0.192.in-addr.arpa",
    ):
        assert ask(cfg, "ptr", name) == NXDOMAIN, name
        assert ask(cfg, "a", name) == NXDOMAIN, name

    # Over the whole reverse zone, exactly the leased and static addresses have a PTR.
    expected = {
        "192.0.2.25": "mail.lab.example",
        "192.0.2.50": "printer.lab.example",
        "192.0.2.103": "1.lab.example",
        "192.0.2.104": "evil.lab.example",
        "192.0.2.105": "7.lab.example",
        "192.0.2.106": "a192.lab.example",
    }
    found = {}
    for n in range(256):
        ip = f"192.0.2.{n}"
        rcode, answers = ptr(cfg, ip)
        if answers:
            (found[ip],) = (x.removeprefix("PTR ") for x in answers)
        else:
            assert rcode == "nxdomain", ip
    assert found == expected

    # Outside the subnets: neither A nor PTR, and show says why.
    assert a(cfg, "outsider.lab.example") == NXDOMAIN
    assert ptr(cfg, "198.51.100.7") == ("not authoritative", [])
    assert "198.51.100.7" not in (cfg.tinydns_root / "data").read_text()
    row = show(cfg)["198.51.100.7"]
    assert (row["published"], row["note"]) == (
        False,
        "198.51.100.7 is outside the configured subnets",
    )
    assert [line.split(":")[1] for line in dynamic_lines(cfg)] == [
        "192.0.2.103",
        "192.0.2.105",
        "192.0.2.106",
        "192.0.2.104",
    ]  # sorted by name
    assert all(line.startswith("=") for line in dynamic_lines(cfg))


def test_first_policy_owner_keeps_its_name_across_a_renewal(tmp_path: Path) -> None:
    """dhcpd renews a lease with a new commit (new start) at half the lease: the first owner
    stays the live owner all along and must keep its name under `conflict: first`."""
    cfg = setup(tmp_path, names={"protected": ["www"], "conflict": "first"})
    fire(cfg, "commit", "192.0.2.101", "2:0:0:0:0:1", "desk", "", "600")
    build(cfg)
    fire(cfg, "commit", "192.0.2.102", "2:0:0:0:0:2", "desk", "", "600")
    build(cfg)
    assert a(cfg, "desk.lab.example") == ("noerror", ["A 192.0.2.101"])
    fire(cfg, "commit", "192.0.2.101", "2:0:0:0:0:1", "desk", "", "600")  # the renewal
    build(cfg)

    assert a(cfg, "desk.lab.example") == ("noerror", ["A 192.0.2.101"])
    assert ptr(cfg, "192.0.2.102") == NXDOMAIN
    assert show(cfg)["192.0.2.102"]["note"] == (
        "name desk.lab.example is held by 192.0.2.101 (first policy)"
    )
