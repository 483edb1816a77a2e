"""Signed journal lines (lines.to_line with a key, signing.journal_key): readers that do not
know `sig` take the line alike; only the key's holder makes a valid one; nothing else does."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leasedns.errors import LeasednsError
from leasedns.journal import signing
from leasedns.journal.lines import (
    LONGEST_LINE,
    MAX_LINE_CHARS,
    SIG,
    from_line,
    row_from_json,
    signed_by,
    signed_events,
    to_line,
)
from leasedns.model import INFINITE_LEASE, MAX_NAME_BYTES, Event, Kind

KEY = bytes(range(32))
US = 1_000_000

# Names as clients send them: any code point, lone surrogates (undecodable bytes) included.
names = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)


@st.composite
def events(draw: st.DrawFn) -> Event:
    t = draw(st.integers(0, 4_000_000_000)) * US + draw(st.integers(0, US - 1))
    since = draw(st.one_of(st.none(), st.integers(0, t)))
    return Event(
        draw(st.sampled_from(list(Kind))),
        t,
        f"10.{draw(st.integers(0, 255))}.{draw(st.integers(0, 255))}.{draw(st.integers(0, 255))}",
        ":".join(f"{draw(st.integers(0, 255)):02x}" for _ in range(6)),
        draw(names),
        draw(names),
        draw(st.one_of(st.none(), st.integers(0, INFINITE_LEASE))),
        draw(st.sampled_from(["peer-a", "b_2", "P"])),
        draw(st.sampled_from(["hook", "record", "reconcile", "x-new"])),
        since,
    )


@given(events())
def test_a_signed_line_reads_as_the_same_event_and_carries_its_mac(e: Event) -> None:
    plain, signed = to_line(e), to_line(e, KEY)
    d = json.loads(signed)
    # A reader that knows nothing of `sig` (any version: unknown fields were always ignored)
    # takes the line as the event it was.
    assert row_from_json(d, e.peer) == row_from_json(json.loads(plain), e.peer)
    assert from_line(signed, e.peer) == e
    assert (
        list(d) == sorted(d)
        and json.dumps(d, sort_keys=True, separators=(",", ":")) + "\n" == signed
    )
    assert {k: v for k, v in d.items() if k != SIG} == json.loads(plain)
    assert signed_by(d, from_line(signed, e.peer), KEY)
    assert not signed_by(d, e, bytes(32))  # another installation's key
    assert not signed_by(json.loads(plain), e, KEY)  # unsigned (before signing)
    assert signed_events(signed, e.peer, KEY) == {e}


@given(events(), st.sampled_from(["time", "ip", "mac", "name", "host", "secs", "kind", "since"]))
def test_a_changed_field_breaks_the_signature(e: Event, field: str) -> None:
    d = json.loads(to_line(e, KEY))
    d[field] = {
        "time": "2099-01-01T00:00:00.000000Z",
        "ip": "10.255.255.254",
        "mac": "0e:00:00:00:00:01",
        "name": d["name"] + "x",
        "host": d["host"] + "x",
        "secs": 7 if d["secs"] != 7 else 8,
        "kind": "expiry" if d["kind"] != "expiry" else "commit",
        "since": "1970-01-01T00:00:00.000001Z",
    }[field]
    line = json.dumps(d, sort_keys=True, separators=(",", ":")) + "\n"
    changed = from_line(line, e.peer)
    assert changed != e
    assert not signed_by(d, changed, KEY)
    assert signed_events(line, e.peer, KEY) == set()


def test_the_longest_line_is_within_the_line_bound() -> None:
    """The bound readers apply before parsing (lines.MAX_LINE_CHARS) is above anything
    leasedns writes: names of 1,024 characters outside the BMP, every field at its longest."""
    big = "\U0001f600" * MAX_NAME_BYTES
    e = Event(
        Kind.COMMIT,
        4_102_444_799 * US,
        "255.255.255.255",
        "ff:ff:ff:ff:ff:ff",
        big,
        big,
        INFINITE_LEASE,
        "p" * 63,
        "a" * 32,
        1,
    )
    assert len(to_line(e, KEY)) <= LONGEST_LINE <= MAX_LINE_CHARS // 2


def test_the_key_is_made_once_and_kept(tmp_path: Path) -> None:
    key = signing.journal_key(tmp_path)
    path = tmp_path / signing.KEY_FILE
    assert len(key) == 32 and stat.S_IMODE(os.stat(path).st_mode) == 0o640
    assert signing.journal_key(tmp_path) == key
    assert signing.journal_key(tmp_path / "other") != key
    path.write_text("damaged\n")
    with pytest.raises(LeasednsError, match=r"not a journal key .* put back the one from"):
        signing.journal_key(tmp_path)
