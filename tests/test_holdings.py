"""A journal that vanished, emptied or went back refuses the build until it is back or forced."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from helpers import tool, write_config
from leasedns import config, journal
from leasedns.cli import main
from leasedns.commands import apply, reconcile, status
from leasedns.journal import holdings
from leasedns.journal.holdings import Holding
from leasedns.model import Event, Kind
from leasedns.sources import statics

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


def test_saved_holdings_round_trip_and_damage_is_a_lost_floor(tmp_path: Path) -> None:
    held = {"a": Holding(((1, 100), (7, 3))), "b": Holding(())}
    assert holdings.save(tmp_path, held) == ""
    assert holdings.load(tmp_path) == held
    assert holdings.floor(tmp_path, "a build was published") == holdings.Floor(held)
    (tmp_path / holdings.HOLDINGS_FILE).write_text('{"peers": {"a": [[1, "x"]]}}')
    with pytest.raises(holdings.HoldingsError, match="is damaged"):
        holdings.load(tmp_path)
    # Damage is a lost floor even where nothing says a build was published: only a published
    # build writes the file.
    lost = holdings.floor(tmp_path, "").lost
    assert lost.startswith(f"{tmp_path / holdings.HOLDINGS_FILE} is damaged (ValueError")
    assert holdings.load(tmp_path / "none") is None
    assert holdings.floor(tmp_path / "none", "") == holdings.Floor(None)  # fresh: no bar
    lost = holdings.floor(tmp_path / "none", "last-build.json records a good build").lost
    assert "journals.json is missing (deleted?), although last-build.json records" in lost


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


# --- the floor itself lost: journals.json deleted, unreadable or damaged --------------------


def _lose_the_floor(cfg: config.Config, how: str) -> str:
    """Lose journals.json as `how` says; what the refusal says of it."""
    path = cfg.state_dir / holdings.HOLDINGS_FILE
    path.unlink()
    if how == "unreadable":
        # A file apply cannot open (as root, a root-owned 0600 file would not do): a link
        # to itself.
        path.symlink_to(path.name)
        return f"{path} cannot be read (Too many levels of symbolic links"
    if how == "damaged":
        path.write_text('{"peers": {"peer-a": [[1, 20')
        return f"{path} is damaged (JSONDecodeError"
    return f"{path} is missing (deleted?), although {cfg.state_dir / apply.LAST_BUILD} records"


def _lose_40_percent_of_peer_b(cfg: config.Config) -> None:
    """Peer B's journal loses 4 of its 10 events: 20 % of the names, under the names guard's
    50 %, so only the journals' floor can tell."""
    (seg,) = journal.segments(cfg.journal_dir / "peer-b")
    lines = seg.read_bytes().splitlines(keepends=True)
    seg.write_bytes(b"".join(lines[:6]))


@pytest.mark.parametrize("how", ["deleted", "unreadable", "damaged"])
def test_a_lost_floor_still_refuses_a_partner_journal_that_lost_40_percent(
    pair: config.Config, how: str
) -> None:
    cfg = pair
    _lose_40_percent_of_peer_b(cfg)
    report = apply.run(cfg)  # with the floor: refused by it
    assert not report.ok and "events-00000001.jsonl shrank from" in report.error
    said = _lose_the_floor(cfg, how)
    report = apply.run(cfg)
    assert not report.ok
    assert report.error.startswith(f"refusing to publish: {said}")
    assert "Put the file back" in report.error
    assert "if every peer's journal is complete, run `leasedns apply --force`" in report.error
    assert len(_names(cfg)) == 20  # the old data keeps serving
    st = _status(cfg)
    assert st.level == 2
    assert any(c.startswith(said) and "apply refuses to publish" in c for c in st.critical)
    # The operator accepts the journals as they are: published, and the floor again.
    assert main(["-c", cfg.path, "-q", "apply", "--force"]) == 0
    assert len(_names(cfg)) == 16
    assert holdings.load(cfg.state_dir) == holdings.survey(cfg.journal_dir)
    assert apply.run(cfg).ok
    assert _status(cfg).critical == []


def test_a_fresh_state_directory_publishes_without_a_floor(tmp_path: Path) -> None:
    tool("tinydns-data")
    cfg = config.load(str(write_config(tmp_path, tinydns={"data_program": "/nonexistent"})))
    apply.ensure_dirs(cfg)
    journal.append(cfg.journal_dir / "peer-b", _commits("peer-b", 100, 10))
    assert not apply.run(cfg).ok  # a failed first build publishes nothing: still fresh
    cfg = dataclasses.replace(cfg, tinydns_data=tool("tinydns-data"))
    first = apply.run(cfg)
    assert (first.ok, first.dynamic) == (True, 10)
    assert holdings.load(cfg.state_dir) == holdings.survey(cfg.journal_dir)


def test_a_crash_between_the_first_publish_and_its_floor_is_no_lost_floor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool("tinydns-data")
    cfg = config.load(str(write_config(tmp_path)))
    apply.ensure_dirs(cfg)
    journal.append(cfg.journal_dir / "peer-b", _commits("peer-b", 100, 10))
    save = holdings.save

    def killed_after_publishing(state_dir: Path, held: holdings.Holdings) -> str:
        if held:  # the floor of the published build: the process dies first
            raise KeyboardInterrupt
        return save(state_dir, held)

    monkeypatch.setattr(holdings, "save", killed_after_publishing)
    with pytest.raises(KeyboardInterrupt):
        apply.run(cfg)
    assert len(_names(cfg)) == 10  # published
    monkeypatch.setattr(holdings, "save", save)
    assert apply.run(cfg).ok
    assert _status(cfg).critical == []


def test_reconcile_repairs_no_output_past_the_journals_guard(
    pair: config.Config, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = pair
    _lose_40_percent_of_peer_b(cfg)
    _lose_the_floor(cfg, "deleted")
    capsys.readouterr()
    assert main(["-c", cfg.path, "reconcile", "--fix", "--json"]) == 2
    drift = json.loads(capsys.readouterr().out)
    assert drift["repaired"] == []
    (refused,) = [p for p in drift["problems"] if p.startswith("outputs not repaired: ")]
    assert "refusing to publish: " in refused and "journals.json is missing" in refused
    assert "`leasedns reconcile --force`" in refused
    assert len(_names(cfg)) == 20  # neither the build nor the repair published the loss
    # The repair alone (reconcile's last step) refuses too.
    repaired, problems = reconcile.repair(cfg, statics.load(cfg), force=False)
    assert (repaired, problems) == ([], [refused])
