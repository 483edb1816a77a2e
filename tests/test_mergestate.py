"""The incremental merge: saved aggregates plus new journal lines == a merge of every line."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leasedns import journal
from leasedns.engine import cache as mergestate
from leasedns.errors import GuardError
from leasedns.journal.lines import from_line, to_line
from leasedns.model import Event, Kind, Settings, StaticHost, Statics
from leasedns.outputs.tinydns import render
from leasedns.sources import statics
from oracle import merge, resolve

T0 = 1_800_000_000
NOW = T0 + 1000  # after every event the tests below write
S = Settings(domain="lab.example", protected=frozenset({"www"}))
STATICS = Statics(hosts=(StaticHost("printer.lab.example", "192.0.2.50", "x:1"),))
PEERS = ("peer-a", "peer-b")

_event = st.builds(
    lambda k, ip, mac, name, t, secs, peer: Event(
        Kind(k),
        (T0 + t) * 1_000_000 + 7,
        f"192.0.2.{ip}",
        f"02:00:00:00:00:0{mac}",
        name,
        "",
        secs if k == "commit" else None,
        peer,
    ),
    st.sampled_from(["commit", "commit", "release", "expiry"]),
    st.integers(48, 54),
    st.integers(1, 3),
    st.sampled_from(["pc", "laptop", "www", "printer", "x" * 70, "Evil:1", ""]),
    # up to T0 + 120: some are ahead of "now" by more than the clock skew (held back)
    st.one_of(st.integers(0, 40), st.integers(0, 120)),
    st.sampled_from([10, 30, 600, None]),
    st.sampled_from(PEERS),
)
_append = st.tuples(st.just("append"), st.lists(_event, min_size=1, max_size=8))
_step = st.one_of(
    _append,
    _append,
    _append,
    _append,
    _append,  # mostly new events, as in life
    st.tuples(st.just("torn"), _event, st.integers(1, 60)),  # a line cut short (a crash)
    st.tuples(st.just("finish"), st.sampled_from(PEERS)),  # the cut line's rest arrives
    st.tuples(st.just("garbage"), st.sampled_from(PEERS)),
    st.tuples(st.just("truncate"), st.sampled_from(PEERS), st.integers(0, 400)),
    st.tuples(st.just("remove"), st.sampled_from(PEERS)),  # a segment or peer directory lost
    st.tuples(st.just("compact"), st.sampled_from(PEERS)),
    st.tuples(st.just("rsync"), st.sampled_from(PEERS)),  # replaced by a new inode, same bytes
    st.tuples(
        st.just("corrupt-state"),
    ),
)


def _last_segment(root: Path, peer: str) -> Path | None:
    segs = journal.segments(root / peer)
    return segs[-1] if segs else None


def _apply_step(root: Path, state_dir: Path, step: tuple, pending: dict[str, bytes]) -> None:  # type: ignore[type-arg]
    kind = step[0]
    if kind == "append":
        for e in step[1]:
            journal.append(root / e.peer, [e])
    elif kind == "torn":
        e, cut = step[1], step[2]
        line = to_line(e).encode()
        cut = min(cut, len(line) - 1)
        d = root / e.peer
        d.mkdir(parents=True, exist_ok=True)
        seg = _last_segment(root, e.peer) or d / journal.segment_name(1)
        with open(seg, "ab") as f:
            f.write(line[:cut])
        pending[e.peer] = line[cut:]
    elif kind == "finish":
        rest = pending.pop(step[1], None)
        seg = _last_segment(root, step[1])
        if rest is not None and seg is not None:
            with open(seg, "ab") as f:
                f.write(rest)
    elif kind == "garbage":
        seg = _last_segment(root, step[1])
        if seg is not None:
            with open(seg, "ab") as f:
                f.write(b'{"kind":"commit"}\nnot json\n\n')
    elif kind == "truncate":
        seg = _last_segment(root, step[1])
        if seg is not None:
            os.truncate(seg, min(step[2], seg.stat().st_size))
            pending.pop(step[1], None)
    elif kind == "remove":
        segs = journal.segments(root / step[1])
        if len(segs) > 1:
            segs[0].unlink()
        else:
            shutil.rmtree(root / step[1], ignore_errors=True)
        pending.pop(step[1], None)
    elif kind == "compact":
        if (root / step[1]).is_dir():
            journal.compact(root / step[1], (T0 + 20) * 1_000_000, 15 * 1_000_000)
            pending.pop(step[1], None)
    elif kind == "rsync":
        seg = _last_segment(root, step[1])
        if seg is not None:
            tmp = seg.with_name(".rsync.tmp")
            shutil.copyfile(seg, tmp)
            os.replace(tmp, seg)
    elif kind == "corrupt-state":
        p = state_dir / mergestate.STATE_FILE
        if p.exists():
            data = bytearray(p.read_bytes())
            data[len(data) // 2] ^= 0xFF
            p.write_bytes(bytes(data))


def _incremental(root: Path, state_dir: Path, now: int) -> bytes:
    state, _ = mergestate.refresh(root, mergestate.load(state_dir), S, now)
    result = resolve(state.aggregates, STATICS, S, now, state.verdicts)
    mergestate.save(state_dir, state)
    return render(STATICS, result.records, 300)


def _from_scratch(root: Path, now: int) -> tuple[bytes, int]:
    events = [e for pj in journal.read_all(root).values() for e in pj.events]
    return render(STATICS, merge(events, STATICS, S, now).records, 300), len(events)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(_step, min_size=1, max_size=4), st.sampled_from([0, 0, 3, 10, 40, -5])),
        min_size=2,
        max_size=6,
    ),
    st.integers(0, 50),
)
def test_incremental_build_is_byte_identical_to_a_merge_of_every_line(
    builds: list[tuple[list[tuple], int]], now: int
) -> None:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as tmp:
        root, state_dir = Path(tmp) / "journal", Path(tmp)
        root.mkdir()
        pending: dict[str, bytes] = {}
        for steps, step_secs in builds:
            for step in steps:
                _apply_step(root, state_dir, step, pending)
            now += step_secs  # time passes (held-back events come due), or the clock goes back
            got = _incremental(root, state_dir, T0 + now)
            want, count = _from_scratch(root, T0 + now)
            assert got == want
            assert mergestate.load(state_dir).events == count  # type: ignore[union-attr]


def _write(root: Path, peer: str, *events: Event) -> None:
    journal.append(root / peer, events)


def ev(ip: int, name: str, t: int = 0, peer: str = "peer-a") -> Event:
    return Event(
        Kind.COMMIT, (T0 + t) * 1_000_000, f"192.0.2.{ip}", "02:00:00:00:00:01", name, "", 600, peer
    )


def test_second_build_reads_only_the_new_lines(tmp_path: Path) -> None:
    root = tmp_path / "journal"
    _write(root, "peer-a", ev(1, "a"), ev(2, "b"))
    state, p = mergestate.refresh(root, None, S, now=NOW)
    assert p.rebuilt == "no saved merge state" and p.new_events == 2
    mergestate.save(tmp_path, state)
    _write(root, "peer-a", ev(3, "c"))
    state, p = mergestate.refresh(root, mergestate.load(tmp_path), S, now=NOW)
    assert (p.rebuilt, p.new_events, state.events) == ("", 1, 3)
    assert sorted(state.aggregates.latest) == ["192.0.2.1", "192.0.2.2", "192.0.2.3"]


def test_torn_tail_waits_until_its_line_is_whole(tmp_path: Path) -> None:
    root = tmp_path / "journal"
    _write(root, "peer-a", ev(1, "a"))
    line = to_line(ev(2, "b")).encode()
    seg = journal.segments(root / "peer-a")[0]
    with open(seg, "ab") as f:
        f.write(line[:20])
    state, p = mergestate.refresh(root, None, S, now=NOW)
    assert (p.torn, state.events) == (1, 1)
    with open(seg, "ab") as f:
        f.write(line[20:])
    state, p = mergestate.refresh(root, state, S, now=NOW)
    assert (p.rebuilt, p.new_events, p.torn) == ("", 1, 0)
    assert "192.0.2.2" in state.aggregates.latest


@pytest.mark.parametrize("damage", ["peer-dir", "segment", "shrink", "rewrite", "state"])
def test_lost_or_changed_input_rebuilds_from_scratch(tmp_path: Path, damage: str) -> None:
    root = tmp_path / "journal"
    _write(root, "peer-a", ev(1, "a"), ev(2, "b"))
    _write(root, "peer-b", ev(3, "c", peer="peer-b"))
    saved = mergestate.refresh(root, None, S, now=NOW)[0]
    mergestate.save(tmp_path, saved)
    saved.close()  # as apply does: the last close folds the WAL into the database file
    seg = journal.segments(root / "peer-b")[0]
    if damage == "peer-dir":
        shutil.rmtree(root / "peer-b")
    elif damage == "segment":
        seg.rename(seg.with_name(journal.segment_name(2)))
    elif damage == "shrink":
        os.truncate(seg, 10)
    elif damage == "rewrite":  # same size, other bytes
        seg.write_bytes(to_line(ev(4, "d", peer="peer-b")).encode())
    else:
        (tmp_path / mergestate.STATE_FILE).write_bytes(b"leasedns merge state\nold")
    state, p = mergestate.refresh(root, mergestate.load(tmp_path), S, now=NOW)
    assert p.rebuilt
    want = [e for pj in journal.read_all(root).values() for e in pj.events]
    assert state.events == len(want)
    assert sorted(state.aggregates.latest) == sorted({e.ip for e in want})


def test_problem_lines_are_reported_with_their_line_number_once(tmp_path: Path) -> None:
    root = tmp_path / "journal"
    _write(root, "peer-a", ev(1, "a"))
    seg = journal.segments(root / "peer-a")[0]
    with open(seg, "ab") as f:
        f.write(b"not json\n")
    state, p = mergestate.refresh(root, None, S, now=NOW)
    assert [x.split(": ", 1)[0] for x in p.problems] == [f"{seg}:2"]
    _write(root, "peer-a", ev(2, "b"))
    with open(seg, "ab") as f:
        f.write(b"[]\n")
    state, p = mergestate.refresh(root, state, S, now=NOW)
    assert [x.split(": ", 1)[0] for x in p.problems] == [f"{seg}:4"]


def test_verdicts_are_dropped_when_domain_or_policy_change(tmp_path: Path) -> None:
    root = tmp_path / "journal"
    _write(root, "peer-a", ev(1, "a"))
    state, _ = mergestate.refresh(root, None, S, now=NOW)
    state.verdicts["a"] = ("a", "")
    state, _ = mergestate.refresh(root, state, S, now=NOW)
    assert state.verdicts == {"a": ("a", "")}
    state, _ = mergestate.refresh(root, state, Settings(domain="other.example"), now=NOW)
    assert state.verdicts == {}


_line = st.one_of(
    _event.map(lambda e: to_line(e).rstrip("\n")),
    st.sampled_from(
        [
            '{"kind":"commit"}',
            "not json",
            "",
            " ",
            "\r",
            "[1]",
            "5",
            '{"a":',
            '"x"',
            '{"kind":"commit","time":"2027-01-15T08:00:00.000007Z","ip":"192.0.2.1",'
            '"mac":"2:0:0:0:0:1","name":"n","host":"","secs":5}  ',
        ]
    ),
    st.text(max_size=12),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_line, max_size=12), st.booleans())
def test_segment_parser_agrees_with_from_line_per_line(lines: list[str], torn: bool) -> None:
    data = "\n".join(lines).encode("utf-8", "surrogateescape") + (b"" if torn else b"\n")
    pj = journal.PeerJournal("peer-a")
    journal.parse_segment(data, "seg", "peer-a", pj)
    want, problems = [], []
    raw_lines = data.split(b"\n")
    raw_lines.pop()
    for no, raw in enumerate(raw_lines, 1):
        if raw:
            try:
                want.append(from_line(raw.decode("utf-8", "surrogateescape"), "peer-a"))
            except Exception as e:
                problems.append(f"seg:{no}: {e}; line skipped")
    assert pj.events == want and pj.problems == problems


def _no_compile(argv, **kw):  # type: ignore[no-untyped-def]
    return subprocess.CompletedProcess(argv, 0, b"", b"")


def test_apply_build_without_journals_is_incremental_and_guarded(tmp_path: Path) -> None:
    from helpers import write_config
    from leasedns import config
    from leasedns.commands import apply
    from leasedns.engine.resolve import Update
    from leasedns.engine.state import State

    cfg = config.load(str(write_config(tmp_path)))
    apply.ensure_dirs(cfg)
    root = cfg.journal_dir
    _write(root, "peer-a", *(ev(100 + i, f"pc{i}", t=i) for i in range(12)))
    now = T0 + 30
    static = statics.load(cfg)

    def build(report: apply.Report) -> tuple[State, Update]:
        with State.open(cfg, now) as state:
            return state, apply.build(cfg, state, static, report, runner=_no_compile)

    state, first = build(apply.Report())
    assert first.dynamic == 12 and (cfg.state_dir / mergestate.STATE_FILE).exists()
    assert state.health.rebuilt == "no saved merge state"
    _write(root, "peer-b", ev(200, "late", t=20, peer="peer-b"))
    report = apply.Report()
    state, _ = build(report)
    assert state.health.rebuilt == ""  # incremental: only peer-b's new line was read
    full = merge(
        [e for pj in journal.read_all(root).values() for e in pj.events],
        static,
        Settings.from_config(cfg),
        now,
    )
    data = (cfg.tinydns_root / "data").read_bytes()
    assert data == render(static, full.records, cfg.ttl) and report.events == 13
    shutil.rmtree(root / "peer-a")  # a lost journal: rebuilt from scratch, so the guard sees it
    with pytest.raises(GuardError, match="refusing to publish"):
        build(apply.Report())


def test_the_old_marshalled_state_file_is_removed_and_the_build_is_cold(tmp_path: Path) -> None:
    root = tmp_path / "journal"
    _write(root, "peer-a", ev(1, "a"))
    old = tmp_path / mergestate.OLD_STATE_FILE
    old.write_bytes(b"leasedns merge state\n3/0.1.0/3.11/4\n")
    assert mergestate.load(tmp_path) is None and not old.exists()
    state, p = mergestate.refresh(root, None, S, now=NOW)
    assert p.rebuilt == "no saved merge state" and state.events == 1


@pytest.mark.parametrize("table", ["latest", "winner"])
def test_a_damaged_table_found_mid_build_means_a_cold_build_not_a_failure(
    tmp_path: Path, table: str
) -> None:
    """SQLite finds a damaged page only when a build reads it: `latest` while folding new
    lines in (refresh), `winner` while resolving (the state's retry)."""
    import sqlite3

    from helpers import write_config
    from leasedns import config
    from leasedns.commands import apply

    cfg = config.load(str(write_config(tmp_path)))
    apply.ensure_dirs(cfg)
    now = int(time.time())
    _write(
        cfg.journal_dir, "peer-a", *(ev(100 + i, f"pc{i}", t=now - T0 - 60 + i) for i in range(5))
    )
    assert apply.run(cfg, runner=_no_compile).ok
    db = sqlite3.connect(cfg.state_dir / mergestate.STATE_FILE)
    (root,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()
    (page,) = db.execute("PRAGMA page_size").fetchone()
    db.close()
    with open(cfg.state_dir / mergestate.STATE_FILE, "r+b") as f:
        f.seek((root - 1) * page)
        f.write(b"\xa5" * page)  # header and size intact: load() cannot tell
    assert mergestate.load(cfg.state_dir) is not None
    journal.append(
        cfg.journal_dir / "peer-a",
        [
            Event(
                Kind.COMMIT,
                now * 1_000_000,
                "192.0.2.200",
                "02:00:00:00:00:02",
                "late",
                "",
                600,
                "peer-a",
            )
        ],
    )
    report = apply.run(cfg, runner=_no_compile)
    assert report.ok, report.error
    data = (cfg.tinydns_root / "data").read_bytes()
    assert b"=late.lab.example:192.0.2.200:" in data
    assert all(f"=pc{i}.lab.example:192.0.2.{100 + i}:".encode() in data for i in range(5))
    # the state was rebuilt whole and saved again: the next build is incremental
    state = mergestate.load(cfg.state_dir)
    assert state is not None and state.resolved is not None and state.events == 6
    state.close()


def test_a_change_in_the_middle_of_a_large_segment_rebuilds(tmp_path: Path) -> None:
    """Bytes changed far from both ends of a segment read before (same size, mtime set back):
    the fingerprint covers every consumed byte, not only the first and last 4 KiB."""
    root = tmp_path / "journal"
    _write(root, "peer-a", *(ev(1 + i % 200, f"pc{i:03d}", t=i) for i in range(300)))
    seg = journal.segments(root / "peer-a")[0]
    assert seg.stat().st_size > 3 * 8192
    state, _ = mergestate.refresh(root, None, S, now=NOW)
    mergestate.save(tmp_path, state)
    state.close()
    data = seg.read_bytes()
    at = data.index(b"pc150")
    before = seg.stat()
    seg.write_bytes(data[:at] + b"px150" + data[at + 5 :])
    os.utime(seg, ns=(before.st_atime_ns, before.st_mtime_ns))
    state, p = mergestate.refresh(root, mergestate.load(tmp_path), S, now=NOW)
    assert p.rebuilt == f"{seg}: no longer holds the lines read before"
    live = T0 + 400  # every lease still running
    got = render(STATICS, resolve(state.aggregates, STATICS, S, live, state.verdicts).records, 300)
    assert got == _from_scratch(root, live)[0] and b"px150" in got


def test_an_unchanged_segment_keeps_its_mark_and_a_touched_one_is_checked_again(
    tmp_path: Path,
) -> None:
    root = tmp_path / "journal"
    _write(root, "peer-a", ev(1, "a"), ev(2, "b"))
    state, _ = mergestate.refresh(root, None, S, now=NOW)
    seg = journal.segments(root / "peer-a")[0]
    mark = state.marks["peer-a"][seg.name]
    st = seg.stat()
    assert mark.stat == (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    state, p = mergestate.refresh(root, state, S, now=NOW)
    assert (p.rebuilt, p.new_events, state.marks["peer-a"][seg.name]) == ("", 0, mark)
    os.utime(seg)  # touched, same bytes: read again, found the same, remembered
    state, p = mergestate.refresh(root, state, S, now=NOW)
    assert p.rebuilt == "" and state.marks["peer-a"][seg.name].stat != mark.stat


def test_appends_roll_to_a_new_segment_and_end_a_torn_line_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal, "ROLL_BYTES", 1000)
    d = tmp_path / "journal" / "peer-a"
    for i in range(30):
        _write(tmp_path / "journal", "peer-a", ev(100 + i, f"pc{i}", t=i))
    segs = journal.segments(d)
    assert len(segs) > 3 and all(s.stat().st_size >= 1000 for s in segs[:-1])
    with open(segs[-1], "ab") as f:  # a crash mid-line, then the segment fills up
        f.write(b'{"kind":"commit"' + b" " * 1000)
    _write(tmp_path / "journal", "peer-a", ev(200, "after"))
    assert journal.segments(d)[-2].read_bytes().endswith(b" \n")
    pj = journal.read_peer(d)
    assert len(pj.events) == 31 and len(pj.problems) == 1 and pj.torn == 0


def test_a_state_made_for_another_peer_is_thrown_away(tmp_path: Path) -> None:
    root = tmp_path / "journal"
    _write(root, "peer-a", ev(1, "a"))
    state, _ = mergestate.refresh(root, None, S, now=NOW)
    mergestate.save(tmp_path, state, owner="peer peer-b, journals /elsewhere, clock skew 30 s")
    state.close()
    assert mergestate.load(tmp_path, "peer peer-b, journals /elsewhere, clock skew 30 s")
    assert mergestate.load(tmp_path, "peer peer-a, journals /here, clock skew 30 s") is None
    assert not (tmp_path / mergestate.STATE_FILE).exists()


def test_events_from_the_future_wait_for_their_time(tmp_path: Path) -> None:
    """A commit dated years ahead does not pin its address, and releases dated years ahead
    do not take a peer's names away (nor does the guard count them as explained) until then."""
    from helpers import write_config
    from leasedns import config
    from leasedns.commands import apply, status

    cfg = config.load(str(write_config(tmp_path)))
    apply.ensure_dirs(cfg)
    now = int(time.time())
    years = 10 * 365 * 86400

    def commit(ip: int, name: str, t: int, mac: int = 1) -> Event:
        return Event(
            Kind.COMMIT,
            t * 1_000_000,
            f"192.0.2.{ip}",
            f"02:00:00:00:00:{mac:02x}",
            name,
            "",
            0xFFFFFFFF,
            "peer-b",
        )

    names = [commit(100 + i, f"pc{i}", now - 100 + i) for i in range(20)]
    _write(cfg.journal_dir, "peer-b", *names)
    assert apply.run(cfg, runner=_no_compile).ok
    releases = [
        Event(Kind.RELEASE, (now + years) * 1_000_000, e.ip, e.mac, "", "", None, "peer-b")
        for e in names
    ]
    _write(
        cfg.journal_dir,
        "peer-b",
        *releases,
        commit(100, "thief", now + years, mac=2),
        commit(150, "from-2036", now + years),
    )
    report = apply.run(cfg, runner=_no_compile)
    assert report.ok, report.error
    data = (cfg.tinydns_root / "data").read_bytes()
    assert all(f"=pc{i}.lab.example:192.0.2.{100 + i}:".encode() in data for i in range(20))
    assert b"thief" not in data and b"from-2036" not in data
    assert report.held_back == 22 and report.held_until.startswith(str(time.gmtime(now + years)[0]))
    st = status.gather(cfg)
    assert any(
        "22 journal event(s) dated ahead of the clock are held back" in p for p in st.problems
    )
    # the full merge (show, a cold build) agrees: they are not in effect yet
    events = [e for pj in journal.read_all(cfg.journal_dir).values() for e in pj.events]
    full = merge(events, statics.load(cfg), Settings.from_config(cfg), now + 60)
    assert len([r for r in full.records if not r.static]) == 20
    # when their time comes, they count: the releases end the names, the commits win
    later = merge(events, statics.load(cfg), Settings.from_config(cfg), now + years)
    assert sorted(r.name for r in later.records if not r.static) == [
        "from-2036.lab.example",
        "thief.lab.example",
    ]
    state, p = mergestate.refresh(
        cfg.journal_dir, mergestate.load(cfg.state_dir), Settings.from_config(cfg), now + years
    )
    assert p.due == 22 and mergestate.held_back(state) == (0, None)
    assert state.aggregates.latest["192.0.2.100"][4] == "thief"
    state.close()
