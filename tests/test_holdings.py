"""A journal that vanished, emptied or went back refuses the build until it is back or forced."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from helpers import tool, write_config
from leasedns import config, journal
from leasedns.cli import main
from leasedns.commands import apply, status
from leasedns.journal import holdings
from leasedns.journal.holdings import Holding
from leasedns.model import Event, Kind

NOW_US = (int(time.time()) - 3600) * 1_000_000  # an hour ago: in effect now


def test_growth_rolling_and_compaction_are_not_regressions() -> None:
    before = {"a": Holding(((1, 100), (2, 50)))}
    assert holdings.regressions(before, {"a": Holding(((1, 100), (2, 80)))}) == {}
    assert holdings.regressions(before, {"a": Holding(((1, 100), (2, 50), (3, 9)))}) == {}
    assert holdings.regressions(before, {"a": Holding(((3, 40),))}) == {}  # compacted
    assert holdings.regressions({"a": Holding(())}, {}) == {}  # held nothing, lost nothing


@pytest.mark.parametrize(
    ("now", "says"),
    [
        ({}, "journal directory is gone"),
        ({"a": Holding(())}, "journal is empty"),
        ({"a": Holding(((1, 0),))}, "journal is empty"),
        ({"a": Holding(((1, 100),))}, "went back to 100 bytes in 1 segment up to events-00000001"),
        ({"a": Holding(((1, 100), (2, 20)))}, "events-00000002.jsonl shrank from 50 to 20 bytes"),
        ({"a": Holding(((2, 50),))}, "events-00000001.jsonl is gone with no newer segment"),
    ],
)
def test_losses_are_named(now: dict[str, Holding], says: str) -> None:
    before = {"a": Holding(((1, 100), (2, 50))), "b": Holding(((1, 10),))}
    now = {**now, "b": Holding(((1, 10),))}
    lost = holdings.regressions(before, now)
    assert list(lost) == ["a"]
    assert says in lost["a"]


def test_saved_holdings_round_trip_and_damage_is_forgotten(tmp_path: Path) -> None:
    held = {"a": Holding(((1, 100), (7, 3))), "b": Holding(())}
    holdings.save(tmp_path, held)
    assert holdings.load(tmp_path) == held
    (tmp_path / holdings.HOLDINGS_FILE).write_text('{"peers": {"a": [[1, "x"]]}}')
    assert holdings.load(tmp_path) is None
    assert holdings.load(tmp_path / "none") is None


# --- apply and status, with the real tinydns-data ------------------------------------------


def _commits(peer: str, base: int, n: int) -> list[Event]:
    return [
        Event(
            Kind.COMMIT,
            NOW_US + i,
            f"192.0.2.{base + i}",
            f"02:00:00:00:{base:02x}:{i:02x}",
            f"{peer}-{base + i}",
            "",
            2**32 - 1,  # infinite: the names stay live whatever the time
            peer,
        )
        for i in range(n)
    ]


@pytest.fixture
def pair(tmp_path: Path) -> config.Config:
    """Peer A holding its own 10 names and a copy of B's 10: a balanced pair."""
    tool("tinydns-data")
    cfg = config.load(str(write_config(tmp_path)))
    apply.ensure_dirs(cfg)
    journal.append(cfg.journal_dir / "peer-a", _commits("peer-a", 10, 10))
    journal.append(cfg.journal_dir / "peer-b", _commits("peer-b", 100, 10))
    first = apply.run(cfg)
    assert (first.ok, first.dynamic) == (True, 20)
    return cfg


def _names(cfg: config.Config) -> set[str]:
    data = (cfg.tinydns_root / "data").read_text()
    return {line[1:].split(".")[0] for line in data.splitlines() if line.startswith("=peer-")}


def _status(cfg: config.Config) -> status.Status:
    return status.gather(cfg)


def test_partner_journal_deleted_refuses_until_back_or_forced(pair: config.Config) -> None:
    cfg = pair
    copy = cfg.journal_dir / "peer-b"
    shutil.move(copy, cfg.state_dir / "saved-b")
    report = apply.run(cfg)
    assert not report.ok
    assert "peer peer-b" in report.error and "journal directory is gone" in report.error
    assert "apply --force" in report.error
    assert len(_names(cfg)) == 20  # the old data keeps serving
    st = _status(cfg)
    assert st.level == 2
    assert any("journal peer-b" in c for c in st.critical)
    assert "LOST what the last build read" in status.as_text(cfg, st)
    # The journal comes back: the next build goes through.
    shutil.move(cfg.state_dir / "saved-b", copy)
    assert apply.run(cfg).ok
    assert _status(cfg).critical == []


def test_forced_build_accepts_the_loss(pair: config.Config) -> None:
    cfg = pair
    shutil.rmtree(cfg.journal_dir / "peer-b")
    assert main(["-c", cfg.path, "-q", "apply"]) == 1
    assert main(["-c", cfg.path, "-q", "apply", "--force"]) == 0
    assert _names(cfg) == {f"peer-a-{i}" for i in range(10, 20)}
    assert apply.run(cfg).ok  # the forced build is the new floor
    assert _status(cfg).critical == []


def test_renamed_segment_counts_as_gone(pair: config.Config) -> None:
    cfg = pair
    seg = journal.segments(cfg.journal_dir / "peer-b")[0]
    seg.rename(seg.with_name("events-1.jsonl"))
    report = apply.run(cfg)
    assert not report.ok and "journal is empty" in report.error
    assert len(_names(cfg)) == 20


def test_older_copy_of_a_partner_journal_is_refused(pair: config.Config) -> None:
    cfg = pair
    peer_b = cfg.journal_dir / "peer-b"
    older = peer_b.parent / "older-b"
    shutil.copytree(peer_b, older)
    journal.append(peer_b, _commits("peer-b", 150, 3))
    assert apply.run(cfg).dynamic == 23
    shutil.rmtree(peer_b)
    older.rename(peer_b)  # the copy from before the last three events
    report = apply.run(cfg)
    assert not report.ok and "shrank" in report.error
    assert len(_names(cfg)) == 23


def test_own_journal_restored_from_a_backup_is_refused(pair: config.Config) -> None:
    cfg = pair
    own = cfg.journal_dir / "peer-a"
    backup = cfg.state_dir / "backup-a"
    shutil.copytree(own, backup)
    journal.compact(own, NOW_US, 10**15)  # a compaction since the backup: events-00000002
    assert apply.run(cfg).ok
    shutil.rmtree(own)
    backup.rename(own)
    report = apply.run(cfg)
    assert not report.ok and "went back" in report.error and "peer peer-a" in report.error


def test_status_counts_a_torn_last_line_left_unfinished(pair: config.Config) -> None:
    cfg = pair
    seg = journal.segments(cfg.journal_dir / "peer-b")[-1]
    with seg.open("ab") as f:
        f.write(b'{"kind":"commit","ti')
    assert not any("torn" in p for p in _status(cfg).problems)  # a write may be in progress
    old = seg.stat().st_mtime - 2 * status.TORN_WARN_SECS
    os.utime(seg, (old, old))
    st = _status(cfg)
    assert st.level == 1
    assert any("journal peer-b: 1 segment(s) end in a torn line" in p for p in st.problems)
