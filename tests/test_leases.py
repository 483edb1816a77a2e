"""Tests for leasedns.leases: exact values from fixtures, damage, and fast == general path."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leasedns.sources.dhcpd.leases import (
    Lease,
    _parse_region,
    live_leases,
    parse_leases,
    read_leases,
)

DATA = Path(__file__).parent / "data" / "leases"


def ts(s: str) -> int:
    """'2024/05/01 10:00:00' (UTC) -> unix seconds."""
    y, mo, d, h, mi, sec = (int(x) for x in s.replace("/", " ").replace(":", " ").split())
    return calendar.timegm((y, mo, d, h, mi, sec, 0, 0, 0))


def load(name: str):
    return read_leases(str(DATA / name))


def test_freed_after_active_last_block_wins():
    lf = load("freed-after-active.leases")
    by_ip = {x.ip: x for x in lf.leases}
    assert by_ip["192.0.2.10"].state == "free"
    assert by_ip["192.0.2.10"].ends == ts("2024/05/01 11:00:00")
    assert by_ip["192.0.2.10"].line == 22
    assert by_ip["192.0.2.10"].client_hostname is None
    assert [x.ip for x in live_leases([lf], ts("2024/05/01 12:00:00"))] == ["192.0.2.11"]
    assert lf.problems == ()


def test_cut_mid_block_keeps_blocks_before_and_after():
    lf = load("cut-mid-block.leases")
    assert [x.ip for x in lf.leases] == ["192.0.2.20", "192.0.2.22"]
    path = str(DATA / "cut-mid-block.leases")
    assert [str(p) for p in lf.problems] == [
        f"{path}:7: lease 192.0.2.21: block is not closed (cut off?); skipped",
        f"{path}:22: lease 192.0.2.23: unterminated string (cut off?); skipped",
    ]


def test_two_peers_most_recently_started_wins():
    a, b = load("two-peers-a.leases"), load("two-peers-b.leases")
    now = ts("2024/05/01 13:00:00")
    for files in ([a, b], [b, a]):
        live = live_leases(files, now)
        assert [(x.ip, x.mac) for x in live] == [
            ("192.0.2.30", "02:00:00:00:00:bb"),
            ("192.0.2.31", "02:00:00:00:00:31"),
        ]
    # after B's lease ends nothing is live for .30, even though A's older one says active
    assert [x.ip for x in live_leases([a, b], ts("2024/05/02 00:00:01"))] == []


def test_release_beats_active_with_same_start_across_files():
    active = parse_leases(
        "lease 192.0.2.9 {\n  starts 3 2024/05/01 10:00:00;\n"
        "  ends 3 2024/05/01 22:00:00;\n  binding state active;\n}\n",
        "a",
    )
    freed = parse_leases(
        "lease 192.0.2.9 {\n  starts 3 2024/05/01 10:00:00;\n"
        "  ends 3 2024/05/01 11:00:00;\n  binding state free;\n}\n",
        "b",
    )
    assert live_leases([active, freed], ts("2024/05/01 12:00:00")) == []
    assert live_leases([freed, active], ts("2024/05/01 12:00:00")) == []


def test_omapi_hosts_last_block_wins_and_deleted_kept():
    lf = load("omapi-host-deleted.leases")
    assert [(h.name, h.mac, h.fixed_addresses, h.deleted, h.dynamic, h.line) for h in lf.hosts] == [
        ("scanner", "02:00:00:00:00:a2", ("192.0.2.51", "192.0.2.52"), False, True, 6),
        ("printer", None, (), True, True, 11),
    ]
    assert lf.leases == () and lf.problems == ()


def test_escapes_uid_hostname_set_and_epoch():
    lf = load("escapes.leases")
    a, b = lf.leases
    assert a.uid == b"\x01\x02\x00\x00\x00\x00@"
    assert a.client_hostname == 'café \\ "q"'
    assert a.set_vars == (("leasedns-name", 'say "hi"'),)
    assert a.ends is None
    assert b.starts == 1714557600 and b.ends == 1714600800
    assert b.uid == b"\x01\x02\x00\x00\x00\x00\x41"
    assert b.client_hostname == "bad\udcffbyte"
    assert b.client_hostname.encode("utf-8", "surrogateescape") == b"bad\xffbyte"


def test_failover_state_and_times():
    lf = load("failover-state.leases")
    (fs,) = lf.failover_states
    assert (fs.peer, fs.my_state, fs.my_since, fs.partner_state, fs.mclt, fs.line) == (
        "dhcp-failover",
        "communications-interrupted",
        ts("2024/05/01 11:00:00"),
        "normal",
        None,
        16,
    )
    (x,) = lf.leases
    assert (x.state, x.tstp, x.tsfp, x.atsfp, x.cltt) == (
        "backup",
        ts("2024/05/01 22:00:00"),
        ts("2024/05/01 22:00:00"),
        ts("2024/05/01 22:00:00"),
        ts("2024/05/01 10:00:00"),
    )


def test_dhcpv6_blocks_skipped_and_counted():
    lf = load("dhcpv6.leases")
    assert lf.ia_blocks == 2
    assert [x.ip for x in lf.leases] == ["192.0.2.70"]
    assert lf.problems == ()


def test_real_dhcpd_file():
    lf = load("real-dhcpd-4.4.3.leases")
    (x,) = lf.leases
    assert x.ip == "192.0.2.100" and x.state == "active" and x.line == 43
    assert x.mac == "02:00:00:00:00:0a" and x.client_hostname == "client1"
    assert x.set_vars == (("leasedns-mac", "2:0:0:0:0:a"), ("leasedns-name", "client1"))
    assert x.ends - x.starts == 600
    assert lf.problems == ()


def test_bad_values_are_problems_not_exceptions():
    text = (
        "lease 192.0.2.1 {\n  starts 3 2024/02/30 10:00:00;\n  binding state active;\n}\n"
        "lease 192.0.2.2 {\n  hardware ethernet zz:00;\n  binding state active;\n}\n"
        "lease 192.0.2.3 {\n  binding state free;\n}\n"
        "bogus 1;\n}\n"
    )
    lf = parse_leases(text, "f")
    assert [x.ip for x in lf.leases] == ["192.0.2.3"]
    assert [str(p) for p in lf.problems] == [
        "f:2: no such time 2024/02/30 10:00; lease skipped".replace(
            "no such", "lease 192.0.2.1: starts: no such"
        ),
        "f:6: lease 192.0.2.2: hardware: 'zz:00' is neither a quoted string nor "
        "colon-separated hex; lease skipped",
        "f:12: unknown top-level statement 'bogus'; skipped",
        "f:13: unexpected '}' at top level; skipped",
    ]


def test_mac_normalised_in_general_path():
    lf = parse_leases(
        "lease 192.0.2.5 {\n  binding state active;\n  hardware ethernet 2:0:A:0:0:1;\n}\n", "f"
    )
    assert lf.leases[0].mac == "02:00:0a:00:00:01"


# --- the fast path and the general path read the same block the same way ----------------


def _general(text: str, path: str):
    """Parse with the general tokenizer only (no fast regex)."""
    from leasedns.sources.dhcpd.leases import _Acc, _finish

    acc = _Acc("\n" + text, path)
    _parse_region(acc, 1, len(text) + 1)
    return _finish(acc)


_names = st.text(st.characters(min_codepoint=0, max_codepoint=255), max_size=12)


def _quote(raw: bytes) -> str:
    out = []
    for c in raw:
        ch = chr(c)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= c < 127:
            out.append(ch)
        else:
            out.append(f"\\{c:03o}")
    return "".join(out)


@st.composite
def lease_blocks(draw):
    i = draw(st.integers(1, 254))
    t = draw(st.integers(1_600_000_000, 1_900_000_000))
    state = draw(st.sampled_from(["active", "free", "backup", "abandoned"]))
    import time as _t

    def when(x: int) -> str:
        g = _t.gmtime(x)
        return _t.strftime("%w %Y/%m/%d %H:%M:%S", g)

    lines = [
        f"lease 192.0.2.{i} {{",
        f"  starts {when(t)};",
        "  ends never;" if draw(st.booleans()) else f"  ends {when(t + 600)};",
        f"  cltt {when(t)};",
        f"  binding state {state};",
    ]
    if state == "active":
        lines.append("  next binding state free;")
    lines.append(f"  hardware ethernet 02:00:00:00:00:{i:02x};")
    uid = draw(st.binary(max_size=8))
    if uid:
        lines.append(f'  uid "{_quote(uid)}";')
    for k in range(draw(st.integers(0, 2))):
        lines.append(f'  set v{k} = "{_quote(draw(st.binary(max_size=6)))}";')
    name = draw(st.binary(max_size=10))
    if name:
        lines.append(f'  client-hostname "{_quote(name)}";')
    if draw(st.booleans()):
        lines += ["  on expiry {", '    execute ("/x", "expiry", "}");', "  }"]
    lines.append("}")
    return "\n".join(lines) + "\n"


@settings(max_examples=200, deadline=None)
@given(st.lists(lease_blocks(), min_size=1, max_size=5))
def test_fast_path_equals_general_path(blocks):
    text = "".join(blocks)
    fast, general = parse_leases(text, "p"), _general(text, "p")
    assert fast.leases == general.leases
    assert fast.problems == () and general.problems == ()


@settings(max_examples=300, deadline=None)
@given(st.lists(lease_blocks(), min_size=2, max_size=5), st.data())
def test_damage_never_raises_and_earlier_blocks_survive(blocks, data):
    text = "".join(blocks)
    cut = data.draw(st.integers(len(blocks[0]), len(text)))
    junk = data.draw(st.text(st.sampled_from('{};"#\n abc'), max_size=8))
    damaged = text[:cut] + junk + text[cut:] if data.draw(st.booleans()) else text[:cut] + junk
    lf = parse_leases(damaged, "p")
    whole = parse_leases(text, "p")
    first = whole.leases[0] if whole.leases[0].ip == blocks[0].split()[1] else None
    # the first block ends before the damage starts, so it (or a later block for the same
    # address) is still there
    assert any(x.ip == blocks[0].split()[1] for x in lf.leases) or first is None
    for p in lf.problems:
        assert p.path == "p" and 1 <= p.line <= damaged.count("\n") + 1


@pytest.mark.parametrize(
    "date", ["2024/5/010", "02024/5/01", "20245/1/01", "2024//0501", "2024/02/30", "0000/01/01"]
)
def test_fast_path_equals_general_path_on_odd_dates(date):
    # 10 characters of digits and slashes, but not dhcpd's YYYY/MM/DD: both paths refuse
    text = f"lease 192.0.2.1 {{\n  starts 3 {date} 10:00:00;\n  binding state free;\n}}\n"
    fast, general = parse_leases(text, "p"), _general(text, "p")
    assert fast.leases == general.leases == ()
    assert [str(p) for p in fast.problems] == [str(p) for p in general.problems]
    assert len(fast.problems) == 1


def test_read_in_chunks_equals_whole(tmp_path, monkeypatch):
    import leasedns.sources.dhcpd.leases as mod

    text = (DATA / "real-dhcpd-4.4.3.leases").read_text("latin-1")
    text += (DATA / "cut-mid-block.leases").read_text("latin-1")
    p = tmp_path / "x.leases"
    p.write_text(text, "latin-1")
    monkeypatch.setattr(mod, "_CHUNK", 7)
    chunked, whole = read_leases(str(p)), parse_leases(text, str(p))
    assert chunked.leases == whole.leases and len(chunked.leases) == 3
    # ParseError is an exception: compare the messages, not the objects
    assert [str(e) for e in chunked.problems] == [str(e) for e in whole.problems]
    assert [e.line for e in whole.problems] == [75, 90]


def test_lease_is_immutable():
    (x,) = parse_leases("lease 192.0.2.1 {\n  binding state free;\n}\n", "f").leases
    assert isinstance(x, Lease)
    try:
        x.state = "active"  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("Lease is mutable")


# --- what dhcpd reads beyond its own layout (server/confpars.c, parse_lease_declaration) -------

NOW = ts("2024/05/01 13:00:00")


def test_no_binding_state_active_while_ends_is_ahead():
    lf = load("no-binding-state.leases")
    assert lf.problems == ()
    by_ip = {x.ip: x for x in lf.leases}
    assert [(x.ip, x.state, x.ends) for x in lf.leases] == [
        ("192.0.2.80", "active", ts("2024/05/01 22:00:00")),
        ("192.0.2.81", "active", ts("2024/05/01 12:00:00")),
        ("192.0.2.82", "active", None),
        ("192.0.2.83", "free", None),  # no `ends`: dhcpd's ends is 0, so free
    ]
    assert by_ip["192.0.2.80"].next_state is None and by_ip["192.0.2.80"].line == 4
    # live while ends is ahead, then not, as dhcpd would have it free
    assert [x.client_hostname for x in live_leases([lf], NOW)] == ["still-on", "forever"]
    assert [x.ip for x in live_leases([lf], ts("2024/05/01 11:00:00"))] == [
        "192.0.2.80",
        "192.0.2.81",
        "192.0.2.82",
    ]


def test_bare_abandoned_is_a_binding_state_and_the_last_one_wins():
    lf = load("bare-abandoned.leases")
    assert lf.problems == ()
    assert [(x.ip, x.state, x.abandoned) for x in lf.leases] == [
        ("192.0.2.84", "abandoned", True),
        ("192.0.2.85", "abandoned", True),  # `binding state active;` then `abandoned;`
        ("192.0.2.86", "active", False),  # `abandoned;` then `binding state active;`
    ]
    assert [x.ip for x in live_leases([lf], NOW)] == ["192.0.2.86"]


def test_bootp_and_reserved_are_active():
    lf = load("bootp.leases")
    assert lf.problems == ()
    assert [(x.ip, x.state, x.next_state) for x in lf.leases] == [
        ("192.0.2.87", "active", "active"),
        ("192.0.2.88", "active", None),
    ]
    assert [x.ip for x in live_leases([lf], NOW)] == ["192.0.2.87", "192.0.2.88"]


def test_zone_offset_after_the_time_is_added():
    lf = load("zone-offset.leases")
    assert lf.problems == ()
    (x,) = lf.leases
    assert x.starts == ts("2024/05/01 11:00:00")
    assert x.ends == ts("2024/05/01 20:00:00")
    assert x.cltt == ts("2024/05/01 10:00:00")
    assert [y.ip for y in live_leases([lf], NOW)] == ["192.0.2.89"]


@pytest.mark.parametrize("offset", ["+3600", "36OO", "1 2", "99999999999", "-"])
def test_zone_offset_that_is_no_number_is_a_problem(offset):
    text = (
        f"lease 192.0.2.1 {{\n  starts 3 2024/05/01 10:00:00 {offset};\n  binding state free;\n}}\n"
    )
    lf = parse_leases(text, "f")
    assert lf.leases == ()
    assert [p.line for p in lf.problems] == [2]
    assert "lease 192.0.2.1: starts: bad time" in str(lf.problems[0])


def test_unquoted_client_hostname_is_kept():
    lf = load("unquoted-hostname.leases")
    assert lf.problems == ()
    assert [(x.ip, x.client_hostname) for x in lf.leases] == [
        ("192.0.2.90", "host16"),
        ("192.0.2.91", "host17.example.org."),
    ]


def test_unquoted_client_hostname_that_is_no_host_name_is_a_problem():
    text = "lease 192.0.2.1 {\n  binding state free;\n  client-hostname a/b;\n}\n"
    lf = parse_leases(text, "f")
    assert [(x.ip, x.client_hostname) for x in lf.leases] == [("192.0.2.1", None)]
    assert [str(p) for p in lf.problems] == [
        "f:3: lease 192.0.2.1: statement 'client-hostname a/b' not understood; ignored"
    ]


def test_unknown_binding_state_drops_the_block_as_dhcpd_does():
    lf = load("unknown-binding-state.leases")
    path = str(DATA / "unknown-binding-state.leases")
    (x,) = lf.leases
    assert (x.state, x.client_hostname, x.line) == ("active", "kept", 3)
    assert [str(p) for p in lf.problems] == [
        f"{path}:13: lease 192.0.2.92: binding: no binding state 'dormant' "
        "(dhcpd knows abandoned, active, backup, bootp, expired, free, released, reserved, "
        "reset); lease skipped"
    ]


def test_leases_command_shows_a_block_without_binding_state_and_exits_0():
    """`leasedns leases` said "no 'binding state'" and exited 1 on such a file."""
    import argparse
    import io
    import json

    from leasedns.commands import leases as cmd_leases

    ap = argparse.ArgumentParser()
    cmd_leases.add_parser(ap.add_subparsers())
    args = ap.parse_args(["leases", "--json", str(DATA / "no-binding-state.leases")])
    out, err = io.StringIO(), io.StringIO()
    assert cmd_leases.run(args, out, err, now=NOW) == 0
    assert err.getvalue() == ""
    assert [(x["ip"], x["state"]) for x in map(json.loads, out.getvalue().splitlines())] == [
        ("192.0.2.80", "active"),
        ("192.0.2.82", "active"),
    ]
