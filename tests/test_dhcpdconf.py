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
