"""Event validation and normalisation, and the journal line form."""

import pytest

from leasedns import events
from leasedns.errors import EventError
from leasedns.events import Event, Kind, format_time, from_line, make_event, parse_time, to_line


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
