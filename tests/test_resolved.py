"""The incremental resolve: a saved outcome brought up to date == a full merge and render."""

from __future__ import annotations

import ipaddress
import sqlite3
import subprocess
import tempfile
from collections.abc import Collection
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leasedns import journal
from leasedns.commands.apply import changes_for
from leasedns.engine import cache as mergestate
from leasedns.engine import guard
from leasedns.engine import resolve as resolved
from leasedns.engine.guard import changes_between
from leasedns.engine.resolve import dynamic_records
from leasedns.engine.state import State
from leasedns.errors import GuardError
from leasedns.model import (
    Changes,
    ConflictPolicy,
    Event,
    Kind,
    NamePolicy,
    Settings,
    StaticHost,
    Statics,
)
from leasedns.outputs.tinydns import Tinydns, render, served_records
from oracle import merge
from test_mergestate import PEERS, T0, _apply_step

TTL = 300
STATICS = (
    Statics(hosts=(StaticHost("printer.lab.example", "192.0.2.50", "x:1"),)),
    Statics(
        names=frozenset({"laptop.lab.example"}),
        ptr_ips=frozenset({"192.0.2.49"}),
        hosts=(StaticHost("printer.lab.example", "192.0.2.50", "x:1"),),
        data_files=(("static", "+laptop.lab.example:192.0.2.9:300\n"),),
    ),
    Statics(),
)
SETTINGS = (
    Settings(domain="lab.example", protected=frozenset({"www"})),
    Settings(
        domain="lab.example", protected=frozenset({"www"}), conflict_policy=ConflictPolicy.FIRST
    ),
    Settings(
        domain="lab.example",
        protected=frozenset({"www", "pc"}),
        reverse=False,
        subnets=(ipaddress.IPv4Network("192.0.2.48/30"),),
    ),
    Settings(
        domain="lab.example",
        name_policy=NamePolicy.STRICT,
        conflict_policy=ConflictPolicy.FIRST,
        default_lease_secs=20,
        clock_skew_secs=5,  # more events held back, and a change of skew on the way
    ),
)

_event = st.builds(
    lambda k, ip, mac, name, host, t, secs, since, peer: Event(
        Kind(k),
        (T0 + t) * 1_000_000 + 7,
        f"192.0.2.{ip}",
        f"02:00:00:00:00:0{mac}",
        name,
        host,
        secs if k == "commit" else None,
        peer,
        since_us=None if since is None or k != "commit" else (T0 + t - since) * 1_000_000,
    ),
    st.sampled_from(["commit", "commit", "commit", "release", "expiry"]),
    st.integers(48, 54),
    st.integers(1, 3),
    st.sampled_from(["pc", "PC", "laptop", "www", "printer", "x" * 70, "Evil:1", "a_b", ""]),
    st.sampled_from(["", "", "", "pc"]),
    st.integers(0, 60),
    st.sampled_from([10, 30, 600, None]),
    st.sampled_from([None, None, 5, 50]),
    st.sampled_from(PEERS),
)
_append = st.tuples(st.just("append"), st.lists(_event, min_size=1, max_size=6))
_step = st.one_of(
    _append,
    _append,
    _append,
    _append,
    _append,
    _append,
    st.tuples(st.just("truncate"), st.sampled_from(PEERS), st.integers(0, 400)),
    st.tuples(st.just("remove"), st.sampled_from(PEERS)),
    st.tuples(st.just("compact"), st.sampled_from(PEERS)),
    st.tuples(
        st.just("corrupt-state"),
    ),
)
_append_only = st.tuples(st.just("append"), st.lists(_event, min_size=1, max_size=6))
# One build: what happened to the journals since, the clock's step, and now and then other
# statics or settings (a full resolve), as (which, index).
_build = st.tuples(
    st.one_of(st.lists(_append_only, max_size=3), st.lists(_step, max_size=3)),
    st.sampled_from([0, 0, 1, 3, 7, 15, 40, -5]),
    st.one_of(
        st.just(None),
        st.just(None),
        st.just(None),
        st.just(None),
        st.tuples(st.just("statics"), st.integers(0, len(STATICS) - 1)),
        st.tuples(st.just("settings"), st.integers(0, len(SETTINGS) - 1)),
    ),
)


def _guard_decision(changes: Changes, known: Collection[str], now: int) -> str:
    try:
        guard.check(changes, known, now, 0.3, 1)
    except GuardError as e:
        return str(e)
    return "ok"


def _no_compile(argv, **kw):  # type: ignore[no-untyped-def]
    return subprocess.CompletedProcess(argv, 0, b"", b"")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_build, min_size=2, max_size=10),
    st.integers(0, 30),
    st.integers(0, len(STATICS) - 1),
    st.integers(0, len(SETTINGS) - 1),
)
def test_incremental_resolve_is_byte_identical_to_a_full_merge(
    builds: list[tuple], start: int, si: int, se: int
) -> None:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as tmp:
        root, state_dir, out = Path(tmp) / "journal", Path(tmp), Path(tmp) / "tinydns"
        root.mkdir()
        out.mkdir()
        now = T0 + start
        data = b""  # what the data file holds (nothing yet)
        for steps, step_secs, change in builds:
            if change is not None:
                si, se = (change[1], se) if change[0] == "statics" else (si, change[1])
            statics, s = STATICS[si], SETTINGS[se]
            for step in steps:
                _apply_step(root, state_dir, step, {})
            now += step_secs
            # the incremental path, as apply runs it: the engine's changes, guarded, applied
            # by the tinydns output to the data it wrote last
            state = State(root, state_dir, s, now)  # closed at the end of the step
            up = state.advance(statics)
            agg = state.cache.aggregates
            output = Tinydns(out, "tinydns-data", TTL, statics, state_dir, _no_compile)
            served = output.serving()
            desired = state.desired(up, statics)
            changes = changes_for(served, up, desired, now)
            got = _guard_decision(changes, state.known_ips, now)
            # from scratch
            events = [e for pj in journal.read_all(root).values() for e in pj.events]
            full = merge(events, statics, s, now)
            want = render(statics, full.records, TTL)
            # reconcile's view of the same state (published read from the outcome and the
            # rivals, not the winner table) is the full merge's
            from leasedns.commands.reconcile import merged_from

            merged = merged_from(up.resolved, agg)
            assert merged.published == full.published
            assert set(merged.live) == {b.ip for b in full.bindings}
            assert up.dynamic == sum(1 for r in full.records if not r.static)
            assert up.bindings == len(full.bindings)
            assert up.bindings - up.dynamic == len(full.refusals)
            # the refusals of every binding's commit are the ones a full merge lists
            commits = [b.commit for b in full.bindings]
            assert state.fresh_refusals(up, commits) == list(full.refusals)
            # the guard decides alike on the engine's changes and on the full merge against
            # what the data file holds
            reference = changes_between(served_records(data), full.records, "", now)
            assert got == _guard_decision(reference, full.known_ips, now)
            if got == "ok":
                output.publish(desired, changes)
                data = (out / "data").read_bytes()
                assert data == want
            state.close()


def _ev(ip: int, name: str, t: int, secs: int = 600, mac: int = 1) -> Event:
    return Event(
        Kind.COMMIT,
        (T0 + t) * 1_000_000,
        f"192.0.2.{ip}",
        f"02:00:00:00:00:0{mac}",
        name,
        "",
        secs,
        "peer-a",
    )


def _build(root: Path, state_dir: Path, statics: Statics, s: Settings, now: int) -> resolved.Update:
    with State(root, state_dir, s, now) as state:
        return state.advance(statics)


def test_steady_state_recomputes_only_what_changed(tmp_path: Path) -> None:
    root = tmp_path / "journal"
    s, statics = SETTINGS[0], STATICS[0]
    journal.append(root / "peer-a", [_ev(100 + i, f"pc{i}", i) for i in range(50)])
    first = _build(root, tmp_path, statics, s, T0 + 60)
    assert first.full == "no saved resolve"
    journal.append(root / "peer-a", [_ev(200, "newcomer", 61)])
    second = _build(root, tmp_path, statics, s, T0 + 61)
    assert second.full == "" and second.dirty == {"192.0.2.200"}
    assert second.changes.before == 50 and second.changes.base == first.changes.token
    assert [r.name for r in second.changes.added] == ["newcomer.lab.example"]
    assert not second.changes.removed and not second.changes.changed
    # the first binding (started T0, 600 s) runs out at T0 + 600
    third = _build(root, tmp_path, statics, s, T0 + 600)
    assert third.full == "" and third.dirty == {"192.0.2.100"} and third.dynamic == 50
    other = Statics(names=frozenset({"pc3.lab.example"}))
    assert (
        _build(root, tmp_path, other, s, T0 + 600).full == "static data or merge settings changed"
    )
    assert _build(root, tmp_path, other, SETTINGS[1], T0 + 600).full
    assert _build(root, tmp_path, other, SETTINGS[1], T0 + 590).full == "the clock went back"


@pytest.mark.parametrize("damage", ["truncated", "extended", "header", "version"])
def test_a_damaged_saved_outcome_means_a_full_resolve(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "journal"
    journal.append(root / "peer-a", [_ev(100, "pc", 0)])
    _build(root, tmp_path, STATICS[0], SETTINGS[0], T0 + 1)
    p = tmp_path / mergestate.STATE_FILE
    data = p.read_bytes()
    if damage == "truncated":
        p.write_bytes(data[:-7])
    elif damage == "extended":
        p.write_bytes(data + b"garbage")
    elif damage == "header":
        p.write_bytes(b"x" * 100 + data[100:])
    else:
        db = sqlite3.connect(p)
        db.execute("UPDATE meta SET value = 'another' WHERE key = 'stamp'")
        db.commit()
        db.close()
    assert mergestate.load(tmp_path) is None
    assert not p.exists()  # thrown away, so the next save starts a new file
    up = _build(root, tmp_path, STATICS[0], SETTINGS[0], T0 + 1)
    assert up.full == "no saved resolve"
    got = dynamic_records(up.resolved, STATICS[0], SETTINGS[0])
    assert [(r.name, r.ip) for r in got] == [("pc.lab.example", "192.0.2.100")]
    assert mergestate.load(tmp_path) is not None
