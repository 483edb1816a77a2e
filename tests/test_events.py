"""Event validation and normalisation, and the journal line form."""

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leasedns import model as events
from leasedns.errors import EventError
from leasedns.journal import lines
from leasedns.journal.lines import from_line, to_line
from leasedns.model import Event, Kind, format_time, ip_key, ip_keys, parse_time
from leasedns.sources.hook import make_event


def test_make_event_normalises_mac_and_keeps_raw_name() -> None:
    e = make_event(["commit", "192.0.2.7", "2:0:0:0:1:A", "Evil\nName", "", "600"], 5, "peer-a")
    assert e == Event(
        Kind.COMMIT, 5, "192.0.2.7", "02:00:00:00:01:0a", "Evil\nName", "", 600, "peer-a", "hook"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["bogus", "192.0.2.7", "2:0:0:0:0:1", "", "", ""],
            "unknown event 'bogus'; expected commit, release or expiry",
        ),
        (
            ["commit", "192.0.2.300", "2:0:0:0:0:1", "", "", ""],
            "IP '192.0.2.300' is not an IPv4 address",
        ),
        (
            ["commit", "192.0.2.07", "2:0:0:0:0:1", "", "", ""],
            "IP '192.0.2.07' is not an IPv4 address",
        ),
        (
            ["commit", "192.0.2.7", "2:0:0:0:1", "", "", ""],
            "MAC '2:0:0:0:1' is not six hex octets like 02:00:5e:00:53:01",
        ),
        (
            ["commit", "192.0.2.7", "2:0:0:0:0:1", "", "", "-5"],
            "lease length '-5' is not a number of seconds",
        ),
        (
            ["commit", "192.0.2.7", "2:0:0:0:0:1", "", "", "99999999999"],
            "lease length '99999999999' is not a number of seconds",
        ),
        (
            ["commit", "192.0.2.7"],
            "expected 6 arguments (EVENT IP MAC CLIENT-NAME HOST-DECL-NAME LEASE-SECS), got 2",
        ),
    ],
)
def test_invalid_events_say_why(args: list[str], message: str) -> None:
    with pytest.raises(EventError) as info:
        make_event(args, 0, "peer-a")
    assert str(info.value) == message


def test_expiry_without_mac_names_the_snippet_fix() -> None:
    with pytest.raises(EventError, match="leasedns-mac saved in on commit"):
        make_event(["expiry", "192.0.2.7", "", "", "", ""], 0, "peer-a")


def test_journal_line_round_trip_keeps_hostile_bytes() -> None:
    raw = b"x\xff:\n\\".decode("utf-8", "surrogateescape")
    e = make_event(
        [b"commit", b"192.0.2.7", b"2:0:0:0:0:1", raw.encode("utf-8", "surrogateescape"), b"", b""],
        1_700_000_000_123_456,
        "peer-b",
    )
    line = to_line(e)
    assert line.count("\n") == 1 and line.endswith("\n")
    assert from_line(line, "peer-b") == e


def test_time_is_utc_iso_with_microseconds() -> None:
    assert format_time(1_700_000_000_123_456) == "2023-11-14T22:13:20.123456Z"
    assert parse_time("2023-11-14T22:13:20.123456Z") == 1_700_000_000_123_456
    assert parse_time("2023-11-14T23:13:20.123456+01:00") == 1_700_000_000_123_456


def test_damaged_journal_line_is_an_event_error() -> None:
    with pytest.raises(EventError):
        from_line('{"kind":"commit","time":"x"}', "p")


@pytest.mark.parametrize(
    "text",
    [
        "2023-11-14T22:13:20.123456Z",
        "2023-11-14T22:13:60.123456Z",
        "2023-11-14T22:13:5x.123456Z",
        "2023-02-30T22:13:20.123456Z",
        "2023-11-14T22:13:20.12345\u0666Z",
        "2023-11-14T24:13:20.123456Z",
        "2023-11-14T22:13:20.123456+00:00",
        "0001-01-01T00:00:00.000000Z",
        "2023-11-14T22:13:20.1234567",
    ],
)
def test_fast_time_parsing_agrees_with_datetime(text: str) -> None:
    def outcome(f):  # type: ignore[no-untyped-def]
        try:
            return f(text)
        except ValueError as e:
            return str(e)

    assert outcome(parse_time) == outcome(events._parse_time)


@pytest.mark.parametrize(
    "ip",
    [
        "192.0.2.7",
        "192.0.2.07",
        "192.0.2",
        "192.0.2.7 ",
        "0x7f.0.0.1",
        "256.0.0.1",
        "192.0.2.7\x00",
        "é",
        "0.0.0.0",
        "255.255.255.255",
    ],
)
@pytest.mark.parametrize(
    "mac",
    [
        "02:00:00:00:00:01",
        "2:0:0:0:0:1",
        "02:00:00:00:00:01\n",
        "02:00:00:00:00:0A",
        "02-00-00-00-00-01",
        "zz",
    ],
)
def test_fast_address_checks_agree_with_the_normalisers(ip: str, mac: str) -> None:
    def outcome(f, raw):  # type: ignore[no-untyped-def]
        try:
            return f(raw)
        except EventError as e:
            return str(e)

    assert outcome(events.canonical_ip, ip) == outcome(events.normalise_ip, ip)
    assert outcome(events.canonical_mac, mac) == outcome(events.normalise_mac, mac)


def test_rows_round_trip_events_and_order_like_keys() -> None:
    a = Event(Kind.COMMIT, 5, "192.0.2.7", "02:00:00:00:00:01", "pc", "", None, "peer-a")
    b = Event(Kind.RELEASE, 5, "192.0.2.7", "02:00:00:00:00:01", "", "", 600, "peer-b", "record")
    for e in (a, b):
        assert events.event_of(events.row_of(e)) == e
        row = events.row_of(e)
        assert row[:9] + row[10:] == e.key()


# --- every journal field is validated on read ------------------------------------------------

GOOD = {
    "kind": "commit",
    "time": "2026-11-30T19:12:33.123456Z",
    "ip": "192.0.2.7",
    "mac": "02:00:00:00:00:01",
    "name": "pc",
    "host": "",
    "secs": 600,
    "peer": "peer-b",
    "src": "hook",
}


def _row(**fields: object) -> tuple[object, ...]:
    return lines.row_from_json({**GOOD, **fields}, "peer-b")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"src": 7}, "src 7 is not a source like hook, record or reconcile"),
        ({"src": None}, "src None is not a source like hook, record or reconcile"),
        ({"src": ["x"]}, "src (a JSON array) is not a source like hook, record or reconcile"),
        ({"src": "Hook Me"}, "src 'Hook Me' is not a source like hook, record or reconcile"),
        ({"secs": 2**63}, f"secs {2**63} is not a lease length (null or 0..4294967295 seconds)"),
        ({"secs": 2**32}, "secs 4294967296 is not a lease length"),
        ({"secs": -1}, "secs -1 is not a lease length"),
        ({"secs": True}, "secs True is not a lease length"),
        ({"secs": 600.0}, "secs 600.0 is not a lease length"),
        ({"secs": "600"}, "secs '600' is not a lease length"),
        (
            {"time": "0001-01-01T00:00:00Z"},
            "time: '0001-01-01T00:00:00Z' is outside 1970-01-01T00:00:00Z .. 2100-01-01T00:00:00Z",
        ),
        ({"time": "9999-12-31T23:59:59Z"}, "time: '9999-12-31T23:59:59Z' is outside"),
        ({"time": "9999-12-31T23:59:59.000000Z"}, "time: '9999-12-31T23:59:59.000000Z' is outside"),
        ({"time": "1969-12-31T23:59:59.999999Z"}, "time: '1969-12-31T23:59:59.999999Z' is outside"),
        ({"time": "2100-01-01T00:00:00.000000Z"}, "time: '2100-01-01T00:00:00.000000Z' is outside"),
        ({"time": "2026-11-30T19:12:33"}, "time: '2026-11-30T19:12:33' has no zone"),
        ({"time": 1_700_000_000}, "time 1700000000 is not a string"),
        ({"time": "x" * 10_000_000}, "time 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'... "),
        (
            {"since": "2026-11-30T19:12:34.000000Z"},
            "since 2026-11-30T19:12:34.000000Z is after the event's time 2026-11-30T19:12:33",
        ),
        ({"since": "1960-01-01T00:00:00Z"}, "since: '1960-01-01T00:00:00Z' is outside"),
        ({"since": 5}, "since 5 is not a string"),
        ({"ip": "1.2.3.04"}, "IP '1.2.3.04' is not an IPv4 address"),
        ({"ip": 16909060}, "ip 16909060 is not a string"),
        ({"ip": "1" * 1_000_000}, "IP '1111111111111111111111111111111111111111'... "),
        ({"mac": "02:00:00:00:00"}, "MAC '02:00:00:00:00' is not six hex octets"),
        ({"mac": None}, "mac None is not a string"),
        ({"name": "x" * 10_000_000}, "name is 10000000 characters long; at most 1024"),
        ({"host": {"a": 1}}, "host (a JSON object) is not a string"),
        ({"kind": "renew"}, "kind 'renew' is not commit, release or expiry"),
        ({"kind": ["commit"]}, "kind (a JSON array) is not commit, release or expiry"),
        (
            {"peer": "peer-a"},
            "the line says peer 'peer-a' but is in the journal of 'peer-b' "
            "(a moved or forged journal?)",
        ),
        ({"peer": 7}, "the line says peer 7 but is in the journal of 'peer-b'"),
    ],
)
def test_every_journal_field_is_checked_on_read(fields: dict[str, object], message: str) -> None:
    with pytest.raises(EventError) as info:
        _row(**fields)
    assert str(info.value).startswith(message)
    assert len(str(info.value)) < 200  # a 10 MB field is not copied into the message


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('["commit"]', "not a journal event: a JSON array, not an object"),
        ("7", "not a journal event: a JSON number, not an object"),
        ('"commit"', "not a journal event: a JSON string, not an object"),
        ("null", "not a journal event: a JSON null, not an object"),
        ('{"kind":"commit"}', "not a journal event: no 'time' field"),
    ],
)
def test_a_line_that_is_no_object_is_an_event_error(line: str, message: str) -> None:
    with pytest.raises(EventError) as info:
        from_line(line, "peer-b")
    assert str(info.value) == message


def test_valid_lines_pass_with_their_optional_fields() -> None:
    base = _row()
    assert base[6:11] == (600, "peer-b", "hook", False, base[0])
    assert _row(secs=None)[6] == -1 and _row(secs=None)[9] is True
    assert _row(secs=0xFFFFFFFF)[6] == 0xFFFFFFFF
    assert _row(src="dhcp-v2")[8] == "dhcp-v2"  # a source a newer partner may add
    assert _row(mac="2:0:0:0:0:1")[3] == "02:00:00:00:00:01"
    assert _row(since="2026-11-30T19:12:33.123456Z")[10] == base[0]
    assert _row(since="2026-11-30T19:00:00+00:00")[10] == base[0] - 753_123_456
    assert _row(time="2099-12-31T23:59:59.999999Z")[0] == events.MAX_TIME_US - 1
    assert _row(time="1970-01-01T00:00:00.000000Z")[0] == events.MIN_TIME_US == 0
    d = dict(GOOD)
    del d["peer"], d["src"]
    assert lines.row_from_json(d, "peer-b")[7:9] == ("peer-b", "hook")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)
_field_values = {
    "kind": st.sampled_from(["commit", "release", "expiry", "renew"]),
    "time": st.sampled_from(
        ["2026-11-30T19:12:33.123456Z", "0001-01-01T00:00:00Z", "2100-01-01T00:00:00Z"]
    ),
    "since": st.sampled_from(["2026-11-30T19:12:33.000000Z", "2026-11-30T19:12:34.000000Z"]),
    "secs": st.integers(min_value=-(2**70), max_value=2**70),
    "peer": st.sampled_from(["peer-b", "peer-a"]),
    "src": st.sampled_from(["hook", "x", "record", "A"]),
}


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([*GOOD, "since"]),
        st.one_of(_json, *_field_values.values()),
        max_size=10,
    ),
    st.booleans(),
)
def test_no_json_value_in_any_field_escapes_as_anything_but_an_event_error(
    changes: dict[str, object], drop: bool
) -> None:
    d = {**GOOD, **changes}
    if drop and changes:
        del d[next(iter(changes))]
    try:
        r = lines.row_from_json(d, "peer-b")
    except EventError as e:
        assert str(e) != "not a journal event"  # every refusal says why
        return
    # What passes is an event make_event could have made: it orders, stores and shows.
    e = events.event_of(r)
    assert from_line(to_line(e), "peer-b") == e
    assert events.MIN_TIME_US <= e.since <= e.time_us < events.MAX_TIME_US
    assert e.lease_secs is None or (type(e.lease_secs) is int and 0 <= e.lease_secs < 2**32)
    assert all(type(v) is str for v in (e.ip, e.mac, e.client_name, e.host_decl, e.source))
    assert r < (r[0] + 1, *r[1:]) and sorted([r, events.row_of(e)])  # compares with any row


@pytest.mark.parametrize(
    "us", [0, -1, -(2**63), 2**63, 10**30, -(10**30), 253_402_300_800_000_000, 2**1000]
)
def test_format_time_never_raises(us: int) -> None:
    text = format_time(us)
    assert text.endswith("Z") or text == f"invalid-time({us})"


def test_format_time_shows_the_window_it_keeps() -> None:
    assert format_time(events.MAX_TIME_US - 1) == "2099-12-31T23:59:59.999999Z"
    assert format_time(253_402_300_800_000_000) == "invalid-time(253402300800000000)"


@pytest.mark.parametrize("us", [-1, events.MAX_TIME_US, 2**63])
def test_make_event_refuses_a_time_outside_the_window(us: int) -> None:
    with pytest.raises(EventError) as info:
        make_event(["commit", "192.0.2.7", "2:0:0:0:0:1", "", "", ""], us, "peer-a")
    assert str(info.value) == (
        f"event time {format_time(us)} is outside "
        "1970-01-01T00:00:00Z .. 2100-01-01T00:00:00Z; is the clock set?"
    )


def test_ip_key_is_the_address_as_a_number() -> None:
    ips = ["192.0.2.10", "192.0.2.9", "10.0.0.1", "255.255.255.255", "0.0.0.0", "192.0.10.2"]
    assert [ip_key(ip) for ip in ips] == [int(ipaddress.IPv4Address(ip)) for ip in ips]
    assert sorted(ips, key=ip_key) == [
        "0.0.0.0",
        "10.0.0.1",
        "192.0.2.9",
        "192.0.2.10",
        "192.0.10.2",
        "255.255.255.255",
    ]
    assert ip_keys(iter(ips)) == [ip_key(ip) for ip in ips]
