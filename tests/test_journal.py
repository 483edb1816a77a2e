"""journal.survivors: compaction keeps every event that can still change the merge."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leasedns.journal import (
    OWNER,
    OwnerError,
    append,
    claim,
    peers,
    read_owner,
    segments,
    survivors,
)
from leasedns.model import INFINITE_LEASE, Event, Kind, Settings, Statics, valid_peer
from oracle import merge

T0 = 1_800_000_000
US = 1_000_000
KEEP = 100  # the longest lease (60 s) plus a grace
S = Settings(domain="lab.example", default_lease_secs=60)


def _ev(kind: str, ip: int, mac: int, t: int, secs: int | None = 60, name: str = "pc") -> Event:
    return Event(
        Kind(kind),
        (T0 + t) * US,
        f"192.0.2.{ip}",
        f"02:00:00:00:00:0{mac}",
        name if kind == "commit" else "",
        "",
        secs if kind == "commit" else None,
        "peer-a",
    )


def test_an_infinite_lease_and_the_release_that_ended_it_never_age_out() -> None:
    bootp = _ev("commit", 1, 1, 0, INFINITE_LEASE, "printer")
    ended = _ev("commit", 2, 2, 0, INFINITE_LEASE, "scanner")
    release = _ev("release", 2, 2, 5)
    old = _ev("commit", 3, 3, 0, 60, "laptop")
    later = 10 * KEEP
    assert survivors([bootp, ended, release, old], (T0 + later) * US, KEEP * US) == [
        bootp,
        ended,
        release,
    ]
    names = [r.name for r in merge([bootp, ended, release], Statics(), S, T0 + later).records]
    assert names == ["printer.lab.example"]


def test_a_later_finite_commit_still_supersedes_an_infinite_one() -> None:
    bootp = _ev("commit", 1, 1, 0, INFINITE_LEASE, "printer")
    dhcp = _ev("commit", 1, 1, 10, 60, "printer")
    assert survivors([bootp, dhcp], (T0 + 10 * KEEP) * US, KEEP * US) == []


_event = st.builds(
    _ev,
    st.sampled_from(["commit", "commit", "release", "expiry"]),
    st.integers(1, 4),
    st.integers(1, 2),
    st.integers(0, 300),
    st.sampled_from([10, 60, None, INFINITE_LEASE]),
    st.sampled_from(["a", "b", "c"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_event, max_size=14), st.integers(0, 400), st.integers(0, 400))
def test_compaction_never_changes_what_is_published_from_then_on(
    events: list[Event], compact_at: int, later: int
) -> None:
    kept = survivors(events, (T0 + compact_at) * US, KEEP * US)
    assert set(kept) <= set(events)
    now = T0 + compact_at + later
    want = merge(events, Statics(), S, now)
    got = merge(kept, Statics(), S, now)
    assert got.records == want.records


def test_a_journal_directory_is_written_by_one_installation_only(tmp_path: Path) -> None:
    peer_dir = tmp_path / "journal" / "peer-a"
    ev = _ev("commit", 1, 1, 0)
    assert append(peer_dir, [ev], owner="a" * 32) == 1
    assert read_owner(peer_dir) == "a" * 32
    assert (peer_dir / OWNER).stat().st_mode & 0o777 == 0o640
    before = [p.read_bytes() for p in segments(peer_dir)]
    with pytest.raises(OwnerError) as info:
        append(peer_dir, [_ev("commit", 2, 2, 1)], owner="b" * 32)
    msg = str(info.value)
    assert "a" * 32 in msg and "b" * 32 in msg and str(peer_dir) in msg
    assert "another leasedns installation writes journal/peer-a" in msg
    assert [p.read_bytes() for p in segments(peer_dir)] == before  # nothing written
    claim(peer_dir, "a" * 32)  # its own: fine
    assert append(peer_dir, [_ev("commit", 2, 2, 1)], owner="a" * 32) == 1


def test_journal_readers_and_config_share_one_peer_name_rule(tmp_path: Path) -> None:
    for name in (".hidden", ".incoming-peer-a", "a.b", "peer-a", "peer_b", "x"):
        (tmp_path / name).mkdir()
    assert peers(tmp_path) == ["peer-a", "peer_b", "x"]
    assert not valid_peer("peer-a\n") and not valid_peer("")
