"""Replication never loses what the receiver holds: real rsync between two installations."""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from helpers import HOOK, tool, write_config
from leasedns import config, journal
from leasedns.cli import main
from leasedns.commands import apply, status
from leasedns.journal import inbox
from leasedns.journal import sync as syncing
from leasedns.journal.identity import installation_id
from leasedns.model import Event, Kind

pytestmark = pytest.mark.integration


def pair(
    tmp: Path,
    names: tuple[str, str] = ("peer-a", "peer-b"),
    resync: dict[str, int] | None = None,
    **extra: object,
) -> tuple[config.Config, config.Config]:
    """Two installations in tmp/host-a and tmp/host-b pushing to each other with real rsync
    (no notify: each step of the exchange is run by the test)."""
    tool("rsync")
    tool("tinydns-data")
    cfgs = []
    resync = resync or {}
    for me, host, other, other_host in (
        (names[0], "host-a", names[1], "host-b"),
        (names[1], "host-b", names[0], "host-a"),
    ):
        base = tmp / host
        base.mkdir()
        partner = {"name": other, "rsync_target": str(tmp / other_host / "state" / "journal")}
        if me == other:  # a copy-pasted config: the partner keeps its usual name
            partner["name"] = "peer-b"
        sync = {"partners": [partner], "timeout_secs": 20, **resync}
        path = write_config(base, peer=me, sync=sync, **extra)
        cfgs.append(config.load(str(path)))
    for c in cfgs:
        apply.ensure_dirs(c)
    return cfgs[0], cfgs[1]


def commit(cfg: config.Config, ip: str, name: str) -> None:
    """A commit spooled by the real hook, journaled by the next apply."""
    env = {"PATH": "/usr/bin:/bin", "LEASEDNS_SPOOL": str(cfg.spool_dir), "LEASEDNS_NO_APPLY": "1"}
    mac = f"2:0:0:0:{int(ip.split('.')[-1]):x}:1"
    subprocess.run([str(HOOK), "commit", ip, mac, name, "", "600"], env=env, check=True, timeout=10)


def data(cfg: config.Config) -> bytes:
    return (cfg.tinydns_root / "data").read_bytes()


def names(cfg: config.Config) -> set[str]:
    return {
        line[1:].split(":")[0].split(".")[0]
        for line in data(cfg).decode().splitlines()
        if line.startswith("=") and ":192.0.2." in line
    }


def status_of(cfg: config.Config) -> tuple[int, str]:
    out = io.StringIO()
    code = main(["-c", cfg.path, "status"], out=out)
    return code, out.getvalue()


def test_a_peer_restored_from_a_backup_gets_its_lost_events_back(tmp_path: Path) -> None:
    a, b = pair(tmp_path)
    for ip, name in (("192.0.2.11", "e1"), ("192.0.2.12", "e2"), ("192.0.2.13", "e3")):
        commit(a, ip, name)
    assert apply.run(a).synced == "peer-b: ok"
    assert apply.run(b).adopted == "peer-a"
    backup = tmp_path / "backup-a"
    shutil.copytree(a.state_dir, backup, symlinks=True)
    commit(a, "192.0.2.14", "e4")
    commit(a, "192.0.2.15", "e5")
    assert apply.run(a).synced == "peer-b: ok"
    rb = apply.run(b)
    assert rb.adopted == "peer-a" and names(b) == {"e1", "e2", "e3", "e4", "e5"}

    # a's state dir is restored from the backup taken before e4 and e5; a journals e6.
    shutil.rmtree(a.state_dir)
    shutil.copytree(backup, a.state_dir, symlinks=True)
    commit(a, "192.0.2.16", "e6")
    ra = apply.run(a)
    assert ra.ok and ra.synced == "peer-b: ok"
    assert names(a) == {"e1", "e2", "e3", "e6"}

    # b refuses a's copy: it would lose e4 and e5. b keeps its copy and pushes it back.
    rb = apply.run(b)
    assert rb.ok and rb.adopted == "" and len(rb.inbox_refused) == 1
    assert "lacks 2 event(s)" in rb.inbox_refused[0] and rb.synced == "peer-b: ok".replace(
        "peer-b", "peer-a"
    )
    assert names(b) == {"e1", "e2", "e3", "e4", "e5"}
    kept = list((b.state_dir / inbox.REFUSED_DIR).iterdir())
    assert len(kept) == 1 and b"e6" in b"".join(p.read_bytes() for p in journal.segments(kept[0]))
    code, text = status_of(b)
    assert code == 2 and "CRITICAL: inbox peer-a/peer-a" in text and "lacks 2 event(s)" in text

    # a finds e4 and e5 in b's copy of its journal: they are its own, journaled again.
    ra = apply.run(a)
    assert ra.ok and ra.recovered == 2 and ra.synced == "peer-b: ok"
    assert names(a) == {"e1", "e2", "e3", "e4", "e5", "e6"}
    code, text = status_of(a)
    assert code == 1 and "recovered 2 event(s) of peer-a from peer-b's copy" in text

    # a's next copy holds every event b holds: taken; both publish the same six names.
    rb = apply.run(b)
    assert rb.ok and rb.adopted == "peer-a" and rb.inbox_refused == []
    assert names(b) == names(a) and data(a) == data(b)
    code, text = status_of(b)
    assert "CRITICAL" not in text and code < 2


def test_the_same_peer_name_on_two_installations_is_refused_on_both_sides(
    tmp_path: Path,
) -> None:
    """A copy-pasted config: both hosts say `peer: peer-a`; neither overwrites the other."""
    a, b = pair(tmp_path, names=("peer-a", "peer-a"))
    assert installation_id(a.state_dir) != installation_id(b.state_dir)
    commit(a, "192.0.2.21", "only-a")
    commit(b, "192.0.2.22", "only-b")
    assert apply.run(a).synced == "peer-b: ok"  # into b's .incoming-peer-a/
    rb = apply.run(b)
    assert rb.ok and len(rb.inbox_refused) == 1
    assert "another leasedns installation syncs under this peer's name" in rb.inbox_refused[0]
    assert rb.synced == "peer-b: ok"  # into a's .incoming-peer-a/
    ra = apply.run(a)
    assert ra.ok and len(ra.inbox_refused) == 1 and ra.recovered == 0
    # Nothing crossed over: each publishes its own event only, and says why, loudly.
    assert names(a) == {"only-a"} and names(b) == {"only-b"}
    for cfg in (a, b):
        code, text = status_of(cfg)
        assert code == 2 and "another leasedns installation syncs under this peer's name" in text


def test_a_copy_from_another_installation_under_the_partners_name_is_refused(
    tmp_path: Path,
) -> None:
    a, b = pair(tmp_path)
    commit(a, "192.0.2.31", "first")
    apply.run(a)
    assert apply.run(b).adopted == "peer-a"
    # A second host is set up as peer-a (a cloned VM, its state made anew) and pushes to b.
    # (A second later: rsync's quick check compares mtimes to the second, and the test's
    # journals would otherwise be the same size, the same second.)
    time.sleep(1.1)
    clone = tmp_path / "clone"
    clone.mkdir()
    c = config.load(
        str(
            write_config(
                clone,
                peer="peer-a",
                sync={"partners": [{"name": "peer-b", "rsync_target": str(b.journal_dir)}]},
            )
        )
    )
    apply.ensure_dirs(c)
    commit(c, "192.0.2.32", "clone")
    assert apply.run(c).synced == "peer-b: ok"
    rb = apply.run(b)
    assert (
        len(rb.inbox_refused) == 1 and "another installation syncs under" in (rb.inbox_refused[0])
    )
    assert names(b) == {"first"}
    assert status_of(b)[0] == 2


def test_two_installations_writing_one_shared_journal_directory_are_refused(
    tmp_path: Path,
) -> None:
    tool("tinydns-data")
    shared = tmp_path / "shared-journal"
    cfgs = []
    for host in ("host-a", "host-b"):
        (tmp_path / host).mkdir()
        cfgs.append(
            config.load(str(write_config(tmp_path / host, peer="peer-a", journal_dir=str(shared))))
        )
    a, b = cfgs
    apply.ensure_dirs(a)
    apply.ensure_dirs(b)
    commit(a, "192.0.2.41", "a")
    assert apply.run(a).ok
    commit(b, "192.0.2.42", "b")
    rb = apply.run(b)
    assert not rb.ok and "installation-id is missing, but this peer's journal" in rb.error
    assert f"If another installation shares {shared} under the same `peer:`" in rb.error
    assert len(list(b.spool_dir.glob("ev-*"))) == 1  # kept for when it is fixed
    assert [e.client_name for e in journal.read_peer(shared / "peer-a").events] == ["a"]
    assert status_of(b)[0] == 2


def _events(peer: str, n: int, t0_us: int) -> list[Event]:
    return [
        Event(Kind.COMMIT, t0_us + r, "192.0.2.50", "02:00:00:00:00:50", "pc", "", 600, peer)
        for r in range(n)
    ]


def test_a_compacted_partner_copy_is_adopted(tmp_path: Path) -> None:
    a, b = pair(tmp_path, journal={"max_lease_secs": 600, "compact_grace_secs": 60})
    now_us = time.time_ns() // 1000
    journal.append(a.journal_dir / "peer-a", _events("peer-a", 1500, now_us - 10_000_000))
    assert syncing.run(a)[0].ok
    rb = apply.run(b)
    assert rb.adopted == "peer-a"
    assert len(journal.read_peer(b.journal_dir / "peer-a").events) == 1500
    ra = apply.run(a)
    assert ra.compacted == "1500 -> 1 events" and ra.synced == "peer-b: ok"
    rb = apply.run(b)
    assert rb.ok and rb.adopted == "peer-a" and rb.inbox_refused == []
    assert len(journal.read_peer(b.journal_dir / "peer-a").events) == 1
    assert [p.name for p in journal.segments(b.journal_dir / "peer-a")] == [
        p.name for p in journal.segments(a.journal_dir / "peer-a")
    ]
    assert data(a) == data(b) and names(b) == {"pc"}


def test_an_older_copy_put_in_the_inbox_by_hand_is_refused_and_kept_aside(
    tmp_path: Path,
) -> None:
    a, b = pair(tmp_path)
    commit(a, "192.0.2.61", "one")
    apply.run(a)
    commit(a, "192.0.2.62", "two")
    apply.run(a)
    assert apply.run(b).adopted == "peer-a" and names(b) == {"one", "two"}
    box = b.journal_dir / ".incoming-peer-a" / "peer-a"
    (seg,) = journal.segments(box)
    first_line = seg.read_bytes().split(b"\n")[0] + b"\n"
    seg.write_bytes(first_line)  # an older copy of a's journal, put there by hand
    rb = apply.run(b)
    assert rb.ok and len(rb.inbox_refused) == 1 and "lacks 1 event(s)" in rb.inbox_refused[0]
    assert names(b) == {"one", "two"}
    (kept,) = (b.state_dir / inbox.REFUSED_DIR).iterdir()
    assert (kept / seg.name).read_bytes() == first_line
    assert (kept / journal.OWNER).read_text().strip() == installation_id(a.state_dir)
    assert status_of(b)[0] == 2
    assert apply.run(b).inbox_refused == []  # told once; status keeps telling
    assert status_of(b)[0] == 2
    # a's next push puts its real journal back in the inbox: taken, the refusal is over.
    assert syncing.run(a)[0].ok
    rb = apply.run(b)
    assert rb.adopted == "peer-a" and rb.inbox_refused == []
    assert "CRITICAL" not in status_of(b)[1]


def test_a_partner_copy_deleted_by_hand_is_pushed_again_without_new_events(
    tmp_path: Path,
) -> None:
    a, b = pair(tmp_path, resync={"resync_secs": 2})
    commit(a, "192.0.2.71", "kept")
    assert apply.run(a).synced == "peer-b: ok"
    assert apply.run(b).adopted == "peer-a"
    assert apply.run(a).synced == ""  # nothing new, pushed a moment ago: no sync
    shutil.rmtree(b.journal_dir / ".incoming-peer-a")
    shutil.rmtree(b.journal_dir / "peer-a")
    assert not apply.run(b).ok  # the journal floor: peer-a's journal is gone
    time.sleep(2.2)
    assert syncing.due(a).startswith("peer-b: last push ")
    assert apply.run(a).synced == "peer-b: ok"  # the one-minute timer's apply
    rb = apply.run(b)
    assert rb.ok and rb.adopted == "peer-a" and names(b) == {"kept"}
    # b's copy alone removed by hand: taken again from the inbox at b's next apply.
    shutil.rmtree(b.journal_dir / "peer-a")
    rb = apply.run(b)
    assert rb.ok and rb.adopted == "peer-a" and names(b) == {"kept"}
    assert apply.run(b).adopted == ""  # and only once


def test_apply_pushes_a_journal_that_changed_since_the_last_push(tmp_path: Path) -> None:
    a, _b = pair(tmp_path)
    assert apply.run(a).synced == "peer-b: ok"  # never synced before: due
    assert apply.run(a).synced == ""
    # An event journaled without a sync after it (a crash between the two, reconcile):
    journal.append(a.journal_dir / "peer-a", _events("peer-a", 1, time.time_ns() // 1000))
    assert syncing.due(a) == "peer-b: this peer's journal changed since the last push"
    assert apply.run(a).synced == "peer-b: ok"
    assert syncing.due(a) == ""


def test_status_of_a_partner_never_synced_and_one_never_synced_ok(tmp_path: Path) -> None:
    cfg = config.load(
        str(
            write_config(
                tmp_path,
                sync={"partners": [{"name": "peer-b", "rsync_target": str(tmp_path / "nowhere")}]},
            )
        )
    )
    apply.ensure_dirs(cfg)
    st = status.gather(cfg)
    text = status.as_text(cfg, st)
    assert "None" not in text and "sync peer-b: never synced" in text
    assert "sync to peer-b: never synced yet" in st.problems[0] and st.level == 1
    (cfg.state_dir / syncing.SYNC_STATE).write_text(
        json.dumps({"peer-b": {"partner": "peer-b", "time": "2026-01-01T00:00:00Z", "ok": False}})
    )
    st = status.gather(cfg)
    text = status.as_text(cfg, st)
    assert "None" not in text and "lag" not in text
    assert "sync peer-b: FAILED: no reason recorded at 2026-01-01T00:00:00Z, last ok never" in text


def test_a_full_disk_while_taking_a_copy_leaves_no_partial_file_and_catches_up(
    tmp_path: Path,
) -> None:
    from test_faults import fill, mounted

    tool("rsync")
    tool("tinydns-data")
    with mounted(tmp_path / "fs", "-t", "tmpfs", "-o", "size=2m,mode=0755", "leasedns-in") as fs:
        a, b = pair(tmp_path)
        # b's journal root (and its inbox) on a small file system
        shutil.rmtree(b.journal_dir)
        (fs / "journal").mkdir()
        b.journal_dir.symlink_to(fs / "journal")
        apply.ensure_dirs(b)
        assert apply.run(b).ok
        commit(a, "192.0.2.81", "big")
        journal.append(a.journal_dir / "peer-a", _events("peer-a", 3000, time.time_ns() // 1000))
        assert apply.run(a).synced == "peer-b: ok"
        filler = fill(fs)
        rb = apply.run(b)
        assert rb.adopted == "" and any("cannot take the partner's copy" in p for p in rb.problems)
        left = [p.name for p in (fs / "journal" / "peer-a").iterdir()]
        assert [n for n in left if n.endswith(".tmp")] == [] and journal.segments(
            fs / "journal" / "peer-a"
        ) == []
        filler.unlink()
        rb = apply.run(b)
        assert rb.ok and rb.adopted == "peer-a" and names(b) == {"big", "pc"}


def test_sync_never_writes_outside_the_partners_inbox(tmp_path: Path) -> None:
    """The issue's `peer: ".."`: rsync into journal/.. replaced the partner's whole state."""
    a, b = pair(tmp_path)
    before = sorted(p.name for p in b.state_dir.iterdir())
    (res,) = syncing.run(dataclasses.replace(a, peer=".."))  # config.parse refuses it
    assert not res.ok and "'..' is not a plain name" in res.error
    assert sorted(p.name for p in b.state_dir.iterdir()) == before
    assert not (a.state_dir / journal.OWNER).exists()
    assert syncing.rsync_command(a, a.partners[0])[-1] == f"{b.journal_dir}/.incoming-peer-a/"


def test_the_sync_after_an_apply_is_kept_in_its_report_and_shown_by_status(
    tmp_path: Path,
) -> None:
    a, _b = pair(tmp_path)
    commit(a, "192.0.2.11", "e1")
    assert apply.run(a).synced == "peer-b: ok"
    saved = json.loads((a.state_dir / apply.LAST_BUILD).read_text())
    assert saved["last"]["synced"] == saved["last_ok"]["synced"] == "peer-b: ok"
    assert "; then synced: peer-b: ok" in status.as_text(a, status.gather(a))
