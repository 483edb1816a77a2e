"""Tests for leasedns.dhcpdconf: hosts anywhere, includes, fixed-address problems, names."""

from __future__ import annotations

from pathlib import Path

import pytest

from leasedns.errors import ParseError
from leasedns.sources.dhcpd.conf import HostDecl, parse_conf, publish_name, read_conf

DATA = Path(__file__).parent / "data" / "dhcpdconf"


def test_nested_hosts_and_include():
    path = str(DATA / "nested-with-include.conf")
    res = read_conf(path)
    assert [
        (h.decl_name, h.macs, h.addresses, h.host_name, h.ddns_hostname) for h in res.hosts
    ] == [
        ("gw", ("02:00:00:00:00:01",), ("192.0.2.1",), None, None),
        ("printer", ("02:00:00:00:00:0a",), ("192.0.2.50", "192.0.2.51"), "prn", None),
        ("nas", ("02:00:00:00:00:0b",), ("192.0.2.52",), None, "storage"),
        ("cam", ("02:00:00:00:00:0c",), ("192.0.2.53",), None, "camera"),
        ("from-include", ("02:00:00:00:00:0d",), ("192.0.2.54",), None, None),
    ]
    assert res.hosts[1].where == f"{path}:14"
    assert res.hosts[4].where == f"{DATA / 'included-hosts.conf'}:2"
    assert res.problems == (
        f'{path}:31: fixed-address "www.example.com" is a DNS name; leasedns does not '
        "resolve it, use an address",
    )


def test_include_loop_is_an_error():
    files = {"/etc/a.conf": 'include "b.conf";\n', "/etc/b.conf": '\ninclude "a.conf";\n'}
    with pytest.raises(ParseError) as e:
        parse_conf(files["/etc/a.conf"], "/etc/a.conf", loader=files.__getitem__)
    assert str(e.value) == (
        "/etc/b.conf:2: include loop: /etc/a.conf -> /etc/b.conf -> /etc/a.conf; remove one include"
    )


def test_unreadable_include_names_the_line():
    def loader(p: str) -> str:
        raise FileNotFoundError(2, "No such file or directory", p)

    with pytest.raises(ParseError) as e:
        parse_conf('# x\ninclude "missing.conf";\n', "/etc/dhcp/dhcpd.conf", loader=loader)
    assert str(e.value) == (
        '/etc/dhcp/dhcpd.conf:2: include "missing.conf": cannot read '
        "/etc/dhcp/missing.conf: No such file or directory; fix the path"
    )


def test_unclosed_brace_raises():
    with pytest.raises(ParseError) as e:
        parse_conf("group {\n  host a {\n    fixed-address 192.0.2.1;\n  }\n", "d.conf")
    assert str(e.value) == "d.conf:4: a '{' is not closed at the end of the file; add the '}'"


def test_missing_semicolon_raises():
    with pytest.raises(ParseError) as e:
        parse_conf("host a {\n  fixed-address 192.0.2.1\n}\n", "d.conf")
    assert str(e.value) == (
        "d.conf:2: host a: statement 'fixed-address' is missing its ';'; add it"
    )


def test_unknown_blocks_with_braces_in_strings_are_skipped():
    text = (
        'class "x" { match if substring(option vendor-class-identifier, 0, 4) = "}{";\n}\n'
        'on commit { execute("/bin/true", "{"); }\n'
        'host "quoted name" { hardware ethernet 2:0:0:0:0:E; fixed-address 192.0.2.9; }\n'
    )
    res = parse_conf(text, "d.conf")
    assert [(h.decl_name, h.macs, h.addresses) for h in res.hosts] == [
        ("quoted name", ("02:00:00:00:00:0e",), ("192.0.2.9",))
    ]


def test_publish_name_order():
    h = HostDecl("decl", (), ("192.0.2.1",), "hn", "dd", "f:1")
    assert publish_name(h) == "dd"
    assert publish_name(h, ["host-name", "declaration"]) == "hn"
    assert publish_name(h, ["declaration"]) == "decl"
    bare = HostDecl("decl", (), (), None, None, "f:1")
    assert publish_name(bare, ["ddns-hostname", "host-name"]) is None
    with pytest.raises(ValueError):
        publish_name(bare, ["nickname"])


def test_includes_are_read_up_to_a_total_cap():
    # Each file includes the next twice: 16 levels read the last file 2**15 times (200 MiB).
    # No loop, so the loop check never fires; the cap on all the bytes read stops it.
    files = {
        f"/etc/d{i}.conf": "#" * 6000 + f'\ninclude "d{i + 1}.conf";\ninclude "d{i + 1}.conf";\n'
        for i in range(16)
    }
    files["/etc/d16.conf"] = HOST_TEXT
    read: list[str] = []

    def loader(p: str) -> str:
        read.append(p)
        return files[p]

    with pytest.raises(ParseError) as e:
        parse_conf(files["/etc/d0.conf"], "/etc/d0.conf", loader=loader, limit=1 << 20)
    assert "dhcpd.conf and its includes are more than 1 MiB together (at /etc/d" in str(e.value)
    assert str(e.value).endswith("; include each file once")
    # Stopped at the cap (the main text counts too; the file that crossed it is read whole).
    assert sum(len(files[p]) for p in read) <= (1 << 20) + len(files["/etc/d1.conf"])


HOST_TEXT = "host gw {\n  hardware ethernet 02:00:00:00:00:01;\n  fixed-address 192.0.2.1;\n}\n"
