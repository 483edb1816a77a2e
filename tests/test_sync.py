"""Two peers, one truth: real rsync between two instances, convergence, partition, compaction."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import HOOK, tool, write_config
from leasedns import config, journal
from leasedns.cli import main
from leasedns.commands import apply
from leasedns.journal import inbox
from leasedns.journal import sync as syncing
from leasedns.model import Event, Kind, Settings, Statics
from leasedns.outputs.tinydns import render
from oracle import merge

pytestmark = pytest.mark.integration
LEASEDNS = shutil.which("leasedns") or str(Path(sys.executable).with_name("leasedns"))


def pair(tmp: Path, notify: bool = True, **extra: object) -> tuple[config.Config, config.Config]:
    """Two leasedns instances side by side that push to each other with real rsync."""
    tool("rsync")
    tool("tinydns-data")
    paths = {}
    for me, other in (("peer-a", "peer-b"), ("peer-b", "peer-a")):
        base = tmp / me
        base.mkdir()
        partner = {"name": other, "rsync_target": str(tmp / other / "state" / "journal")}
        if notify:
            partner["notify"] = [LEASEDNS, "-q", "-c", str(tmp / other / "leasedns.yaml"), "apply"]
        paths[me] = write_config(
            base, peer=me, sync={"partners": [partner], "timeout_secs": 20}, **extra
        )
    a, b = (config.load(str(paths[p])) for p in ("peer-a", "peer-b"))
    apply.ensure_dirs(a)
    apply.ensure_dirs(b)
    return a, b


def fire(cfg: config.Config, *args: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "LEASEDNS_SPOOL": str(cfg.spool_dir), "LEASEDNS_NO_APPLY": "1"}
    subprocess.run([str(HOOK), *args], env=env, check=True, timeout=10)


def data(cfg: config.Config) -> bytes:
    return (cfg.tinydns_root / "data").read_bytes()


def test_two_peers_publish_identical_data_and_answers(tmp_path: Path, tinydns_factory) -> None:  # type: ignore[no-untyped-def]
    a, b = pair(tmp_path)
    fire(a, "commit", "192.0.2.100", "2:0:0:0:0:1", "alice", "", "600")
    fire(b, "commit", "192.0.2.101", "2:0:0:0:0:2", "bob", "", "600")
    fire(a, "commit", "192.0.2.102", "2:0:0:0:0:3", "carol", "", "600")
    fire(b, "commit", "192.0.2.150", "2:0:0:0:0:3", "carol", "", "600")  # carol moved to peer-b
    # a journals its events, pushes them to b and wakes b; b's apply journals b's own
    # events and pushes them back (its wake-up of a finds a's sync running: deferred).
    ra = apply.run(a)
    assert ra.ok and ra.synced == "peer-b: ok"
    rb = apply.run(b)
    assert rb.ok and rb.ingested == 0  # nothing left: b already did it when woken
    assert data(a) == data(b)
    assert b"=carol.lab.example:192.0.2.150:" in data(a)
    # both journals are held by both peers, each written only by its owner
    assert journal.peers(a.journal_dir) == journal.peers(b.journal_dir) == ["peer-a", "peer-b"]

    sa, sb = tinydns_factory(a.tinydns_root), tinydns_factory(b.tinydns_root)
    for name, ip in (("alice", "192.0.2.100"), ("bob", "192.0.2.101"), ("carol", "192.0.2.150")):
        for server in (sa, sb):
            ans = server.resolver().resolve(f"{name}.lab.example", "A")
            assert [x.to_text() for x in ans] == [ip]
            assert [x.to_text() for x in server.resolver().resolve_address(ip)] == [
                f"{name}.lab.example."
            ]

    def check_both() -> int:
        return main(
            [
                "-c",
                str(a.path),
                "check",
                "--server",
                f"peer-a={sa.ip}",
                "--server",
                f"peer-b={sb.ip}",
            ]
        )

    assert check_both() == 0

    # a peer that serves something else is reported (exit 1), a dead one is critical (exit 2)
    (b.tinydns_root / "data").write_text(
        (b.tinydns_root / "data").read_text().replace("192.0.2.101", "192.0.2.201")
    )
    subprocess.run([b.tinydns_data], cwd=b.tinydns_root, check=True)
    assert check_both() == 1
    sb.stop()
    assert main(["-c", str(a.path), "check", "--server", f"peer-b={sb.ip}"]) == 2


def test_partition_each_side_keeps_publishing_then_one_sync_each_way_converges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = pair(tmp_path)
    fire(a, "commit", "192.0.2.100", "2:0:0:0:0:1", "alice", "", "600")
    assert apply.run(a).ok
    # The link goes down: each peer's journal root moves, and each pushes to a place that
    # does not exist, so every rsync fails.
    for p in ("peer-a", "peer-b"):
        (tmp_path / p / "state" / "journal").rename(tmp_path / p / "state" / "journal-real")

    def peer(me: str, other: str, target: Path) -> config.Config:
        return config.load(
            str(
                write_config(
                    tmp_path / me,
                    peer=me,
                    journal_dir=str(tmp_path / me / "state" / "journal-real"),
                    sync={"partners": [{"name": other, "rsync_target": str(target)}]},
                )
            )
        )

    a = peer("peer-a", "peer-b", tmp_path / "down" / "nowhere")
    b = peer("peer-b", "peer-a", tmp_path / "down" / "nowhere")
    fire(a, "commit", "192.0.2.110", "2:0:0:0:0:a", "during-a", "", "600")
    fire(b, "commit", "192.0.2.111", "2:0:0:0:0:b", "during-b", "", "600")
    ra, rb = apply.run(a), apply.run(b)
    assert ra.ok and rb.ok  # publishing goes on
    assert ra.synced.startswith("peer-b: rsync to ") and "failed" in ra.synced
    assert b"during-a" in data(a) and b"during-b" not in data(a)
    assert b"during-b" in data(b) and b"during-a" not in data(b)
    assert main(["-c", str(a.path), "status"]) == 1
    assert "sync peer-b: FAILED: rsync to" in capsys.readouterr().out
    # The link returns: one sync each way.
    a = peer("peer-a", "peer-b", tmp_path / "peer-b" / "state" / "journal-real")
    b = peer("peer-b", "peer-a", tmp_path / "peer-a" / "state" / "journal-real")
    assert main(["-c", str(a.path), "sync"]) == 0
    assert main(["-c", str(b.path), "sync"]) == 0
    assert apply.run(a).ok and apply.run(b).ok
    assert data(a) == data(b)
    assert b"during-a" in data(a) and b"during-b" in data(a) and b"alice" in data(a)
    capsys.readouterr()
    assert main(["-c", str(a.path), "status"]) == 0
    assert "sync peer-b: ok" in capsys.readouterr().out


def test_sync_transfers_about_the_new_events_only(tmp_path: Path) -> None:
    a, b = pair(tmp_path, notify=False)
    peer_dir = a.journal_dir / "peer-a"
    batch = [
        Event(
            Kind.COMMIT,
            1_800_000_000_000_000 + i,
            f"10.0.{i // 250}.{i % 250 + 1}",
            f"02:00:00:00:{i // 256:02x}:{i % 256:02x}",
            f"host{i}",
            "",
            3600,
            "peer-a",
        )
        for i in range(20_000)
    ]
    journal.append(peer_dir, batch)
    (first,) = syncing.run(a)
    assert first.ok and first.bytes_sent > 2_000_000

    def held() -> int:
        return sum(p.stat().st_size for p in journal.segments(peer_dir))

    size = held()
    journal.append(
        peer_dir,
        [
            Event(
                Kind.COMMIT,
                1_800_000_100_000_000 + i,
                "192.0.2.9",
                "02:00:00:00:00:09",
                "x",
                "",
                60,
                "peer-a",
            )
            for i in range(1000)
        ],
    )
    (second,) = syncing.run(a)
    new_bytes = held() - size
    assert second.ok and second.bytes_sent < 3 * new_bytes
    # The copy lands in b's inbox; b's next apply takes it as its copy of a's journal.
    inbox.receive(b)
    segs = journal.segments(peer_dir)
    assert [p.name for p in journal.segments(b.journal_dir / "peer-a")] == [p.name for p in segs]
    for seg in segs:
        assert (b.journal_dir / "peer-a" / seg.name).read_bytes() == seg.read_bytes()


def test_a_partner_never_reads_a_half_transferred_segment(tmp_path: Path) -> None:
    """rsync writes under a temporary dot-name and renames; readers only read events-*.jsonl."""
    a, b = pair(tmp_path, notify=False)
    journal.append(
        a.journal_dir / "peer-a",
        [Event(Kind.COMMIT, 1, "192.0.2.1", "02:00:00:00:00:01", "x", "", 60, "peer-a")],
    )
    target = b.journal_dir / ".incoming-peer-a" / "peer-a"  # a's sync writes b's inbox
    target.mkdir(parents=True)
    (target / ".events-00000001.jsonl.Xy12ab").write_bytes(b'{"kind":"com')  # rsync's temp file
    assert journal.read_peer(target).events == []
    assert inbox.receive(b).adopted == []
    assert journal.read_peer(b.journal_dir / "peer-a").events == []
    assert syncing.run(a)[0].ok
    assert len(journal.read_peer(target).events) == 1
    assert inbox.receive(b).adopted == ["peer-a"]
    assert len(journal.read_peer(b.journal_dir / "peer-a").events) == 1


# Convergence as a property: any interleaving of events, duplicates and sync rounds.
T0 = 1_800_000_000
_ev = st.builds(
    lambda k, i, m, n, t: (k, f"192.0.2.{100 + i}", f"02:00:00:00:00:0{m}", n, t),
    st.sampled_from(["commit", "commit", "release", "expiry"]),
    st.integers(0, 4),
    st.integers(1, 3),
    st.sampled_from(["pc", "laptop", "x", "www"]),
    st.integers(0, 50),
)
_step = st.one_of(
    st.tuples(st.just("event"), st.sampled_from(["peer-a", "peer-b"]), _ev),
    st.tuples(st.just("dup"), st.sampled_from(["peer-a", "peer-b"]), st.integers(0, 100)),
    st.tuples(st.just("sync"), st.sampled_from(["peer-a", "peer-b"]), st.none()),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_step, max_size=20))
def test_any_interleaving_converges(tmp_path_factory: pytest.TempPathFactory, steps) -> None:  # type: ignore[no-untyped-def]
    base = tmp_path_factory.mktemp("conv")
    a, b = pair(base, notify=False)
    cfgs = {"peer-a": a, "peer-b": b}
    written: dict[str, list[Event]] = {"peer-a": [], "peer-b": []}
    for kind, peer, arg in steps:
        cfg = cfgs[peer]
        if kind == "event":
            k, ip, mac, name, t = arg
            e = Event(
                Kind(k),
                (T0 + t) * 1_000_000,
                ip,
                mac,
                name,
                "",
                600 if k == "commit" else None,
                peer,
            )
            journal.append(cfg.journal_dir / peer, [e])
            written[peer].append(e)
        elif kind == "dup" and written[peer]:
            journal.append(cfg.journal_dir / peer, [written[peer][arg % len(written[peer])]])
        elif kind == "sync":  # a push, and the partner's next apply takes it from its inbox
            assert syncing.run(cfg)[0].ok
            assert inbox.receive(b if cfg is a else a).refused == []
    for cfg in (a, b):  # the link is up at the end: one sync each way
        assert syncing.run(cfg)[0].ok
        assert inbox.receive(b if cfg is a else a).refused == []
    s = Settings(domain="lab.example", protected=frozenset({"www"}))
    out = []
    for cfg in (a, b):
        evs = [e for pj in journal.read_all(cfg.journal_dir).values() for e in pj.events]
        out.append(render(Statics(), merge(evs, Statics(), s, T0 + 30).records, 300))
    assert out[0] == out[1]
    every = written["peer-a"] + written["peer-b"]
    assert out[0] == render(Statics(), merge(every, Statics(), s, T0 + 30).records, 300)


def test_compaction_keeps_the_journal_bounded_over_a_simulated_week(tmp_path: Path) -> None:
    """1,000 clients renewing every 30 minutes for a week (bench/ runs 10,000)."""
    clients, step, week = 1000, 1800, 7 * 86400
    keep_us = (3600 + 3600) * 1_000_000  # longest lease + grace
    peer_dir = tmp_path / "journal" / "peer-a"
    s = Settings(domain="lab.example")
    biggest = 0
    t = T0
    checked = 0
    while t < T0 + week:
        journal.append(
            peer_dir,
            [
                Event(
                    Kind.COMMIT,
                    t * 1_000_000 + i,
                    f"10.1.{i // 250}.{i % 250 + 1}",
                    f"02:00:00:01:{i // 256:02x}:{i % 256:02x}",
                    f"c{i}",
                    "",
                    3600,
                    "peer-a",
                )
                for i in range(clients)
            ],
        )
        events = journal.read_peer(peer_dir).events
        biggest = max(biggest, len(events))
        # Compacted a minute after the round was journaled (an event dated after the
        # compaction's now supersedes nothing: see journal.survivors).
        now = t + 60
        if len(events) >= 1000 and len(
            journal.survivors(events, now * 1_000_000, keep_us)
        ) * 2 <= len(events):
            verify = checked % 12 == 0  # compare the published data twice a simulated day
            before = (
                render(Statics(), merge(events, Statics(), s, now).records, 300) if verify else b""
            )
            journal.compact(peer_dir, now * 1_000_000, keep_us)
            if verify:
                after_events = journal.read_peer(peer_dir).events
                assert (
                    render(Statics(), merge(after_events, Statics(), s, now).records, 300) == before
                )
                assert len(after_events) == clients
            checked += 1
        t += step
    assert checked >= 100  # compaction ran all week long
    assert biggest <= 2 * clients  # bounded: never more than two renewal rounds held
    assert len(journal.segments(peer_dir)) == 1
    size = sum(p.stat().st_size for p in journal.segments(peer_dir))
    assert size < 2 * clients * 200


def test_apply_compacts_its_own_journal_only(tmp_path: Path) -> None:
    tool("tinydns-data")
    cfg = config.load(
        str(write_config(tmp_path, journal={"max_lease_secs": 600, "compact_grace_secs": 60}))
    )
    apply.ensure_dirs(cfg)
    now_us = time.time_ns() // 1000
    own = [
        Event(
            Kind.COMMIT,
            now_us - 10_000_000 + r,
            "192.0.2.100",
            "02:00:00:00:00:01",
            "pc",
            "",
            600,
            "peer-a",
        )
        for r in range(1500)
    ]
    other = [
        Event(
            Kind.COMMIT,
            now_us - 10_000_000 + r,
            "192.0.2.101",
            "02:00:00:00:00:02",
            "x",
            "",
            600,
            "peer-b",
        )
        for r in range(1500)
    ]
    journal.append(cfg.journal_dir / "peer-a", own)
    journal.append(cfg.journal_dir / "peer-b", other)
    report = apply.run(cfg)
    assert report.ok and report.compacted == "1500 -> 1 events"
    assert len(journal.read_peer(cfg.journal_dir / "peer-a").events) == 1
    assert len(journal.read_peer(cfg.journal_dir / "peer-b").events) == 1500  # not ours to compact
    assert b"pc.lab.example" in data(cfg) and b"x.lab.example" in data(cfg)
