"""A build after a compaction follows it (the survivors are events it already folded in)
instead of reading every journal line again; anything it cannot trust rebuilds."""

from __future__ import annotations

import functools
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import write_config
from leasedns import config, journal
from leasedns.commands import apply
from leasedns.engine import cache
from leasedns.journal import inbox
from leasedns.journal import sync as syncing
from leasedns.model import Event, Kind, Settings

T0 = 1_800_000_000
US = 1_000_000
SKEW = 30
KEEP = 600 + 3600  # longest lease + grace
S = Settings(domain="lab.example")


def ev(ip: int, name: str, t: float, peer: str = "peer-a", kind: str = "commit") -> Event:
    return Event(
        Kind(kind),
        int((T0 + t) * US),
        f"192.0.2.{ip}",
        f"02:00:00:00:00:{ip:02x}",
        name if kind == "commit" else "",
        "",
        600 if kind == "commit" else None,
        peer,
    )


def history(peer: str = "peer-a") -> list[Event]:
    """Renewals (each superseding the one before), a release, and events of the last moments."""
    evs = [ev(ip, f"{peer}-{ip}", t, peer) for ip in range(10, 20) for t in range(-300, 0, 60)]
    evs.append(ev(15, "", -30.5, peer, "release"))
    evs.append(ev(21, f"{peer}-new", -5, peer))  # recent: supersedes nothing yet
    return evs


def build(root: Path, state_dir: Path, now: int) -> cache.Progress:
    state, progress = cache.refresh(root, cache.load(state_dir), S, now)
    cache.save(state_dir, state)
    state.close()
    return progress


def cold(root: Path, now: int) -> cache.MergeState:
    state, progress = cache.refresh(root, None, S, now)
    assert progress.rebuilt == "no saved merge state"
    return state


def same_as_cold(root: Path, state_dir: Path, now: int) -> None:
    """The state kept equals a cold build's: the same aggregates, pending events, counts."""
    kept, want = cache.load(state_dir), cold(root, now)
    assert kept is not None
    latest = dict(kept.aggregates.latest.items())
    assert latest == dict(want.aggregates.latest)
    # releases older than their address's commit can never end anything (pruned when saved)
    assert _pruned(dict(kept.aggregates.ends.items()), latest) == _pruned(
        dict(want.aggregates.ends), latest
    )
    assert set(kept.pending) == set(want.pending)
    assert kept.events == want.events
    kept.close()


def _pruned(ends: dict[tuple[str, str], int], latest: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {k: t for k, t in ends.items() if k[0] not in latest or t >= latest[k[0]][0]}


def setup(tmp_path: Path) -> tuple[Path, Path]:
    root, state_dir = tmp_path / "journal", tmp_path / "state"
    state_dir.mkdir()
    journal.append(root / "peer-a", history("peer-a"))
    journal.append(root / "peer-b", history("peer-b"))
    assert build(root, state_dir, T0).rebuilt == "no saved merge state"
    return root, state_dir


def compact(root: Path, state_dir: Path | None, now: int = T0) -> journal.Compaction:
    done = journal.compact(
        root / "peer-a",
        now * US,
        KEEP * US,
        SKEW * US,
        None if state_dir is None else lambda c: cache.note_compaction(state_dir, c),
    )
    assert done.after <= done.before
    return done


def test_the_build_after_a_compaction_follows_it_and_equals_a_cold_build(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root, state_dir = setup(tmp_path)
    done = compact(root, state_dir)
    assert [p.name for p in journal.segments(root / "peer-a")] == [done.segment]
    caplog.set_level(logging.INFO, "leasedns.mergestate")
    p = build(root, state_dir, T0 + 1)
    assert (p.rebuilt, p.new_events, p.new_bytes) == ("", 0, 0)
    assert len(p.followed) == 1 and done.segment in p.followed[0]
    assert "followed a compaction" in caplog.text
    kept = cache.load(state_dir)
    assert kept is not None
    mark = kept.marks["peer-a"][done.segment]
    assert (mark.consumed, mark.events) == (done.written.size, done.after)  # type: ignore[union-attr]
    kept.close()
    same_as_cold(root, state_dir, T0 + 1)
    # and from there on incremental as ever: new lines, a second compaction
    journal.append(root / "peer-a", [ev(12, "again", 0.5)])
    p = build(root, state_dir, T0 + 2)
    assert (p.rebuilt, p.new_events, p.followed) == ("", 1, [])
    compact(root, state_dir, T0 + 100)
    p = build(root, state_dir, T0 + 101)
    assert p.rebuilt == "" and len(p.followed) == 1
    same_as_cold(root, state_dir, T0 + 101)


def test_a_compaction_cut_short_and_two_in_a_row_are_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, state_dir = setup(tmp_path)
    monkeypatch.setattr(journal, "ROLL_BYTES", 1)  # the next append starts a segment
    journal.append(root / "peer-a", [ev(30, "x", -100)])
    assert build(root, state_dir, T0).rebuilt == ""
    old = journal.segments(root / "peer-a")
    assert len(old) == 2
    kept = [(p, p.read_bytes()) for p in old]
    compact(root, state_dir)
    for p, data in kept[:1]:  # as if it crashed before removing the last old segment
        p.write_bytes(data)
    p = build(root, state_dir, T0 + 1)
    assert p.rebuilt == "" and p.followed
    same_as_cold(root, state_dir, T0 + 1)
    # two compactions before the next build: the notes are followed one after the other
    compact(root, state_dir, T0 + 50)
    compact(root, state_dir, T0 + 120)
    journal.append(root / "peer-a", [ev(31, "y", 60)])
    p = build(root, state_dir, T0 + 121)
    assert (p.rebuilt, len(p.followed), p.new_events) == ("", 2, 1)
    same_as_cold(root, state_dir, T0 + 121)


def _notes(state_dir: Path) -> dict[str, Any]:
    return json.loads((state_dir / cache.NOTES_FILE).read_text())  # type: ignore[no-any-return]


def _forge(state_dir: Path, change: Any) -> None:
    doc = _notes(state_dir)
    for notes in doc["notes"].values():
        change(notes[-1])
    (state_dir / cache.NOTES_FILE).write_text(json.dumps(doc))


def _flip(piece: list[Any]) -> None:
    piece[3] = ("0" if piece[3][0] != "0" else "1") + piece[3][1:]


@pytest.mark.parametrize(
    "case",
    [
        "no note",
        "a note in the journal directory",
        "replaced digest",
        "replaced size",
        "written digest",
        "written bytes changed",
        "written cut short",
        "note unreadable",
        "note of another directory",
        "appended after the build",
        "compacted ahead of the clock",
    ],
)
def test_what_cannot_be_trusted_rebuilds_from_every_line(tmp_path: Path, case: str) -> None:
    root, state_dir = setup(tmp_path)
    now = T0 + 1
    if case == "appended after the build":  # an event the state never read, compacted
        journal.append(root / "peer-a", [ev(40, "unseen", -90)])
    if case in ("no note", "a note in the journal directory"):
        done = compact(root, None)
        if case == "a note in the journal directory":
            other = tmp_path / "other"
            other.mkdir()
            cache.note_compaction(other, done)
            for d in (root, root / "peer-a"):
                shutil.copy(other / cache.NOTES_FILE, d / cache.NOTES_FILE)
    elif case == "compacted ahead of the clock":
        compact(root, state_dir, T0 + 2 * SKEW + 10)
    else:
        done = compact(root, state_dir)
    seg = root / "peer-a" / done.segment if case != "compacted ahead of the clock" else None
    if case == "replaced digest":
        _forge(state_dir, lambda n: [_flip(p) for p in n["replaced"].values()])
    elif case == "replaced size":
        _forge(state_dir, lambda n: [p.__setitem__(0, p[0] - 1) for p in n["replaced"].values()])
    elif case == "written digest":
        _forge(state_dir, lambda n: [_flip(p) for p in n["written"].values()])
    elif case == "written bytes changed":
        assert seg is not None
        data = bytearray(seg.read_bytes())
        data[10:13] = b"999" if data[10:13] != b"999" else b"888"
        seg.write_bytes(bytes(data))
    elif case == "written cut short":
        assert seg is not None
        seg.write_bytes(seg.read_bytes()[:-1])
    elif case == "note unreadable":
        (state_dir / cache.NOTES_FILE).write_text("{not json")
    elif case == "note of another directory":
        doc = _notes(state_dir)
        doc["notes"] = {str(tmp_path / "elsewhere" / "peer-a"): v for v in doc["notes"].values()}
        (state_dir / cache.NOTES_FILE).write_text(json.dumps(doc))
    p = build(root, state_dir, now)
    assert p.rebuilt.startswith(str(root / "peer-a")), p.rebuilt  # gone, shrank or changed
    assert p.followed == []
    same_as_cold(root, state_dir, now)


def test_survivors_drop_only_what_an_event_in_effect_supersedes() -> None:
    e1, e2 = ev(10, "old", -100), ev(10, "new", 10)  # e2: ahead of the compacting clock
    keep = journal.survivors([e1, e2], T0 * US, KEEP * US, SKEW * US)
    assert keep == [e1, e2]  # e2 is not in effect on a peer whose clock is behind
    assert journal.survivors([e1, e2], (T0 + 10) * US, KEEP * US, SKEW * US) == [e2]
    e3 = ev(10, "newer", -1)  # up to now: in effect on every peer within the skew
    assert journal.survivors([e1, e3], T0 * US, KEEP * US, SKEW * US) == [e3]


def _cfg(tmp_path: Path, peer: str, name: str) -> config.Config:
    base = tmp_path / name
    base.mkdir()
    cfg = config.load(
        str(
            write_config(
                base,
                peer=peer,
                journal={"max_lease_secs": 600, "compact_grace_secs": 3600},
                build={"coalesce_secs": 0, "clock_skew_secs": SKEW},
            )
        )
    )
    apply.ensure_dirs(cfg)
    return cfg


def _push(a: config.Config, b: config.Config) -> None:
    """What `sync` leaves in b's inbox: a copy of a's journal directory."""
    box = b.journal_dir / f".incoming-{a.peer}" / a.peer
    shutil.rmtree(box, ignore_errors=True)
    shutil.copytree(a.journal_dir / a.peer, box, ignore=shutil.ignore_patterns(".lock"))


def test_a_partner_whose_clock_is_behind_follows_the_compaction_as_a_cold_build(
    tmp_path: Path,
) -> None:
    """peer-a compacts at T0; peer-b's clock is 25 s behind (within the 30 s skew). An event
    peer-a dated 10 s ahead is still held back on peer-b: what it superseded stays."""
    a, b = _cfg(tmp_path, "peer-a", "host-a"), _cfg(tmp_path, "peer-b", "host-b")
    evs = [
        ev(10, "held", -100),
        ev(10, "ahead", 10),  # ahead of peer-a's clock: pending on peer-b until T0 + 10 - 30 + 25
        *(ev(11, f"r{t}", t) for t in range(-600, -60, 60)),  # renewals: the old ones go
    ]
    journal.append(a.journal_dir / "peer-a", evs, owner="a" * 32)
    settings = Settings.from_config(b)
    b_now = T0 - 25

    def b_build(now: int) -> cache.Progress:
        state, progress = cache.refresh(b.journal_dir, cache.load(b.state_dir), settings, now)
        cache.save(b.state_dir, state)
        state.close()
        return progress

    _push(a, b)
    assert inbox.receive(b, b_now * US).adopted == ["peer-a"]
    assert b_build(b_now).rebuilt == "no saved merge state"
    journal.compact(
        a.journal_dir / "peer-a",
        T0 * US,
        (600 + 3600) * US,
        SKEW * US,
        lambda c: cache.note_compaction(a.state_dir, c),
    )
    names = {e.client_name for e in journal.read_peer(a.journal_dir / "peer-a").events}
    assert "held" in names and "r-540" not in names  # kept: superseded only by an event ahead
    _push(a, b)
    note = functools.partial(cache.note, b.state_dir)  # as apply passes it
    assert inbox.receive(b, b_now * US + 1, note).adopted == ["peer-a"]
    assert (b.state_dir / cache.NOTES_FILE).exists()
    p = b_build(b_now + 1)
    assert p.rebuilt == "" and p.followed and p.new_events == 0
    kept = cache.load(b.state_dir)
    assert kept is not None and kept.aggregates.latest["192.0.2.10"][4] == "held"
    kept.close()
    want = cache.refresh(b.journal_dir, None, settings, b_now + 1)[0]
    assert want.aggregates.latest["192.0.2.10"][4] == "held"  # "ahead" still held back
    same_as_cold_cfg(b, settings, b_now + 1)
    # once "ahead" is in effect on peer-b, both publish it
    p = b_build(T0 + 15 - SKEW + 25)
    assert p.rebuilt == "" and p.due == 1
    same_as_cold_cfg(b, settings, T0 + 15 - SKEW + 25)


def same_as_cold_cfg(cfg: config.Config, settings: Settings, now: int) -> None:
    kept = cache.load(cfg.state_dir)
    want = cache.refresh(cfg.journal_dir, None, settings, now)[0]
    assert kept is not None
    assert dict(kept.aggregates.latest.items()) == dict(want.aggregates.latest)
    assert set(kept.pending) == set(want.pending) and kept.events == want.events
    kept.close()


# --- end to end: apply on both peers, real rsync ------------------------------------------


def _refreshes(monkeypatch: pytest.MonkeyPatch) -> list[cache.Progress]:
    """Every cache.refresh's progress from here on."""
    seen: list[cache.Progress] = []
    real = cache.refresh

    def spy(*args: Any, **kwargs: Any) -> tuple[cache.MergeState, cache.Progress]:
        state, progress = real(*args, **kwargs)
        seen.append(progress)
        return state, progress

    monkeypatch.setattr(cache, "refresh", spy)
    return seen


def _cold_data(cfg: config.Config, tmp_path: Path, name: str) -> bytes:
    """The data a cold build of the same journals publishes (in a copy of the state)."""
    copy = tmp_path / name
    shutil.copytree(cfg.state_dir, copy / "state", symlinks=True)
    for inbox_dir in (copy / "state" / "journal").glob(".incoming-*"):
        shutil.rmtree(inbox_dir)  # nothing new to take: the journals as they are
    (copy / "root").mkdir()
    cache.discard(copy / "state")
    (copy / "state" / cache.NOTES_FILE).unlink(missing_ok=True)
    c2 = config.load(
        str(
            write_config(
                copy,
                peer=cfg.peer,
                journal={"max_lease_secs": cfg.max_lease_secs, "compact_grace_secs": 60},
            )
        )
    )
    r = apply.run(c2)
    assert r.ok, r.error
    return (c2.tinydns_root / "data").read_bytes()


@pytest.mark.integration
def test_apply_after_compacting_follows_on_the_owner_and_on_its_partner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_inbox import data, pair

    a, b = pair(tmp_path, journal={"max_lease_secs": 600, "compact_grace_secs": 60})
    now_us = time.time_ns() // 1000
    evs = [
        Event(
            Kind.COMMIT,
            now_us - 90 * US + r * 1000,
            f"192.0.2.{50 + r % 20}",
            f"02:00:00:00:00:{50 + r % 20:02x}",
            f"pc{r % 20}",
            "",
            600,
            "peer-a",
        )
        for r in range(1500)
    ]
    journal.append(a.journal_dir / "peer-a", evs)
    bee = Event(Kind.COMMIT, now_us, "192.0.2.80", "02:00:00:00:00:80", "bee", "", 600, "peer-b")
    journal.append(b.journal_dir / "peer-b", [bee])
    assert syncing.run(a)[0].ok
    assert apply.run(b).adopted == "peer-a"  # cold: no state yet; a's journal as written
    ra = apply.run(a)  # cold too; then compacts, and pushes the compacted journal
    assert ra.compacted == "1500 -> 20 events" and ra.synced == "peer-b: ok"

    seen = _refreshes(monkeypatch)
    rb = apply.run(b)
    assert rb.ok and rb.adopted == "peer-a" and rb.inbox_refused == []
    assert seen and all(p.rebuilt == "" for p in seen), [p.rebuilt for p in seen]
    assert any(p.followed for p in seen)
    assert [p.name for p in journal.segments(b.journal_dir / "peer-a")] == [
        p.name for p in journal.segments(a.journal_dir / "peer-a")
    ]
    assert data(b) == _cold_data(b, tmp_path, "cold-b")

    seen.clear()
    ra = apply.run(a)
    assert ra.ok and seen and all(p.rebuilt == "" for p in seen), [p.rebuilt for p in seen]
    assert any(p.followed for p in seen)
    assert data(a) == _cold_data(a, tmp_path, "cold-a")
    assert data(a) == data(b)


_event = st.builds(
    lambda kind, ip, mac, t, peer: Event(
        Kind(kind),
        T0 * US + t,
        f"192.0.2.{ip}",
        f"02:00:00:00:00:0{mac}",
        "pc" if kind == "commit" else "",
        "",
        600 if kind == "commit" else None,
        peer,
    ),
    st.sampled_from(["commit", "commit", "release"]),
    st.integers(1, 3),
    st.integers(1, 2),
    st.integers(-90 * US, 90 * US),
    st.sampled_from(["peer-a", "peer-b"]),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_event, max_size=20),
    st.lists(_event, max_size=5),
    st.integers(-40, 40),
    st.integers(-40, 40),
    st.integers(-SKEW, 60),
)
def test_following_a_compaction_equals_a_cold_build_whenever_it_is_followed(
    before: list[Event], after: list[Event], built: int, compacted: int, later: int
) -> None:
    """A build at T0 + `built`, peer-a compacted at T0 + `compacted` (its clock), events
    appended, the next build `later` s after the compaction (a clock up to the skew behind):
    followed whenever the compaction is not past that build's horizon, and then the state
    is a cold build's. Nothing ages out here (a long keep): what it takes to age out is the
    leases' business, not the clocks'."""
    with tempfile.TemporaryDirectory() as tmp:
        root, state_dir = Path(tmp) / "journal", Path(tmp) / "state"
        state_dir.mkdir()
        for e in before:
            journal.append(root / e.peer, [e])
        build(root, state_dir, T0 + built)
        if (root / "peer-a").is_dir():
            journal.compact(
                root / "peer-a",
                (T0 + compacted) * US,
                10**15,
                SKEW * US,
                lambda c: cache.note_compaction(state_dir, c),
            )
        for e in after:
            journal.append(root / e.peer, [e])
        now = T0 + compacted + later
        p = build(root, state_dir, now)
        if p.rebuilt == "":
            same_as_cold(root, state_dir, now)
        elif before and "peer-a" in {e.peer for e in before}:
            assert "the clock went back" in p.rebuilt or "ahead of this build's clock" in p.rebuilt
