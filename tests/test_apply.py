"""`leasedns apply` with the real tinydns-data: spool to journal, rejects, coalescing, failures."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import HOOK, tool, write_config
from leasedns import config, journal
from leasedns.cli import main
from leasedns.commands import apply
from leasedns.model import Kind, format_time, parse_time
from leasedns.sources import spool
from leasedns.sources.hook import make_event

pytestmark = pytest.mark.integration


def hook(cfg: config.Config, *args: str, **env: str) -> None:
    e = {
        "PATH": os.environ["PATH"],
        "LEASEDNS_SPOOL": str(cfg.spool_dir),
        "LEASEDNS_NO_APPLY": "1",
        **env,
    }
    subprocess.run([str(HOOK), *args], env=e, check=True, timeout=10)


def tinydns_get(root: Path, qtype: str, name: str) -> str:
    return subprocess.run(
        [tool("tinydns-get"), qtype, name], cwd=root, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def cfg(tmp_path: Path) -> config.Config:
    tool("tinydns-data")
    c = config.load(str(write_config(tmp_path)))
    apply.ensure_dirs(c)
    return c


def test_apply_moves_spool_to_journal_and_publishes(cfg: config.Config) -> None:
    hook(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", "pc1", "", "600")
    hook(cfg, "commit", "192.0.2.101", "2:0:0:0:0:2", "pc2", "", "600")
    report = apply.run(cfg)
    assert (report.ok, report.ingested, report.dynamic, report.compiled) == (True, 2, 2, True)
    assert spool.scan(cfg.spool_dir) == []
    pj = journal.read_peer(cfg.journal_dir / "peer-a")
    assert sorted(e.client_name for e in pj.events) == ["pc1", "pc2"]
    assert all(e.kind is Kind.COMMIT and e.peer == "peer-a" for e in pj.events)
    assert "192.0.2.100" in tinydns_get(cfg.tinydns_root, "a", "pc1.lab.example")
    assert "pc2.lab.example" in tinydns_get(cfg.tinydns_root, "ptr", "101.2.0.192.in-addr.arpa")


def test_unchanged_data_is_not_compiled_again(cfg: config.Config) -> None:
    hook(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", "pc1", "", "600")
    assert apply.run(cfg).compiled
    cdb = (cfg.tinydns_root / "data.cdb").stat().st_mtime_ns
    again = apply.run(cfg)
    assert (again.ok, again.changed, again.compiled) == (True, False, False)
    assert (cfg.tinydns_root / "data.cdb").stat().st_mtime_ns == cdb


def test_invalid_events_are_rejected_and_kept_with_a_reason(
    cfg: config.Config, caplog: pytest.LogCaptureFixture
) -> None:
    hook(cfg, "commit", "192.0.2.999", "2:0:0:0:0:1", "bad-ip", "", "600")
    hook(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", "good", "", "600")
    report = apply.run(cfg)
    assert (report.ingested, report.rejected) == (1, 1)
    rejected = sorted((cfg.spool_dir / "rejected").iterdir())
    assert [p.suffix for p in rejected] == ["", ".reason"]
    assert rejected[1].read_text() == "IP '192.0.2.999' is not an IPv4 address\n"
    assert b"bad-ip" in rejected[0].read_bytes()
    assert any("IP '192.0.2.999' is not an IPv4 address" in r.message for r in caplog.records)


def test_hostile_name_is_logged_with_mac_and_ip_and_lease_is_journaled(
    cfg: config.Config, caplog: pytest.LogCaptureFixture
) -> None:
    hook(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", "x" * 300, "", "600")
    report = apply.run(cfg)
    assert (report.ok, report.ingested, report.dynamic, report.refused) == (True, 1, 0, 1)
    assert any(
        r.message.startswith(
            "lease 192.0.2.100 02:00:00:00:00:01 (peer peer-a): name not published:"
        )
        for r in caplog.records
    )
    assert len(journal.read_peer(cfg.journal_dir / "peer-a").events) == 1


def test_incomplete_spool_file_waits_then_is_rejected(cfg: config.Config) -> None:
    partial = cfg.spool_dir / "ev-1-0"
    partial.write_bytes(spool.MAGIC + b"6\0commit\0192.0.2.1")
    report = apply.run(cfg)
    assert (report.waiting, report.rejected) == (1, 0) and partial.exists()
    old = time.time() - 120
    os.utime(partial, (old, old))
    report = apply.run(cfg)
    assert (report.waiting, report.rejected) == (0, 1) and not partial.exists()
    assert "incomplete event" in (cfg.spool_dir / "rejected" / "ev-1-0.reason").read_text()


def test_crash_after_journaling_before_unlink_duplicates_harmlessly(cfg: config.Config) -> None:
    hook(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", "pc1", "", "600")
    (item,) = spool.scan(cfg.spool_dir)
    keep = item.data
    apply.run(cfg)
    first = (cfg.tinydns_root / "data").read_bytes()
    item.path.write_bytes(keep)  # as if apply died before removing the spool file
    os.utime(item.path, ns=(item.mtime_ns, item.mtime_ns))
    report = apply.run(cfg)
    assert report.ingested == 1 and report.events == 2
    assert (cfg.tinydns_root / "data").read_bytes() == first


def test_torn_journal_tail_is_ignored_and_next_append_stays_whole(cfg: config.Config) -> None:
    hook(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", "pc1", "", "600")
    apply.run(cfg)
    seg = journal.segments(cfg.journal_dir / "peer-a")[0]
    with seg.open("ab") as f:
        f.write(b'{"kind":"commit","ti')  # a write cut short by a crash
    assert len(journal.read_peer(seg.parent).events) == 1
    hook(cfg, "commit", "192.0.2.101", "2:0:0:0:0:2", "pc2", "", "600")
    report = apply.run(cfg)
    pj = journal.read_peer(seg.parent)
    assert sorted(e.client_name for e in pj.events) == ["pc1", "pc2"]
    assert len(pj.problems) == 1 and ":2: not a journal event" in pj.problems[0]
    assert report.dynamic == 2


def test_failing_tinydns_data_keeps_the_old_cdb_and_recovers(
    cfg: config.Config, tmp_path: Path
) -> None:
    hook(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", "pc1", "", "600")
    apply.run(cfg)
    good_cdb = (cfg.tinydns_root / "data.cdb").read_bytes()
    broken = tmp_path / "broken-tinydns-data"
    broken.write_text(
        "#!/bin/sh\necho 'tinydns-data: fatal: unable to parse data line' >&2\nexit 111\n"
    )
    broken.chmod(0o755)
    bad = config.load(str(write_config(tmp_path, tinydns={"data_program": str(broken)})))
    hook(bad, "commit", "192.0.2.101", "2:0:0:0:0:2", "pc2", "", "600")
    report = apply.run(bad)
    assert not report.ok and "failed (exit 111): tinydns-data: fatal" in report.error
    assert (cfg.tinydns_root / "data.cdb").read_bytes() == good_cdb
    assert main(["-c", str(bad.path), "status"]) == 2  # critical: the build fails
    report = apply.run(cfg)  # the data bytes did not change, but data.cdb is stale: compile
    assert report.ok and report.compiled and not report.changed
    assert "192.0.2.101" in tinydns_get(cfg.tinydns_root, "a", "pc2.lab.example")


def test_apply_publishes_to_tinydns_and_a_hosts_file_at_once(tmp_path: Path) -> None:
    tool("tinydns-data")
    hosts, marker = tmp_path / "lan.hosts", tmp_path / "reloads"
    reload = [sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write('x')", str(marker)]
    path = write_config(tmp_path, outputs=[{"type": "hosts", "path": str(hosts), "reload": reload}])
    cfg = config.load(str(path))
    apply.ensure_dirs(cfg)
    hook(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", "pc1", "", "600")
    hook(cfg, "commit", "192.0.2.101", "2:0:0:0:0:2", "pc2", "", "600")
    report = apply.run(cfg)
    assert (report.ok, report.changed, report.compiled) == (True, True, True), report.error
    assert "192.0.2.100" in tinydns_get(cfg.tinydns_root, "a", "pc1.lab.example")
    lines = [ln for ln in hosts.read_text().splitlines() if not ln.startswith("#")]
    assert lines == ["192.0.2.100 pc1.lab.example", "192.0.2.101 pc2.lab.example"]
    assert marker.read_text() == "x"
    # Nothing new: neither output changes, nothing runs.
    again = apply.run(cfg)
    assert (again.ok, again.changed, again.compiled) == (True, False, False)
    assert marker.read_text() == "x"
    # A release: both outputs drop the name.
    hook(cfg, "release", "192.0.2.100", "2:0:0:0:0:1", "pc1", "", "")
    assert apply.run(cfg).ok
    assert "192.0.2.100" not in tinydns_get(cfg.tinydns_root, "a", "pc1.lab.example")
    assert "pc1" not in hosts.read_text() and marker.read_text() == "xx"


def test_a_failing_output_does_not_stop_the_others(tmp_path: Path) -> None:
    """The hosts output's reload fails: tinydns publishes all the same, apply fails naming
    the hosts output and its command, and the next apply (reload fixed) catches it up."""
    tool("tinydns-data")
    hosts = tmp_path / "lan.hosts"
    spec = {"type": "hosts", "path": str(hosts), "reload": ["false"]}
    bad = config.load(str(write_config(tmp_path, outputs=[spec])))
    apply.ensure_dirs(bad)
    hook(bad, "commit", "192.0.2.100", "2:0:0:0:0:1", "pc1", "", "600")
    report = apply.run(bad)
    assert not report.ok
    assert report.error == (
        f"1 of 2 outputs failed to publish (published: tinydns): hosts {hosts}: reload "
        f"command `false` failed (exit 1); {hosts} is written; the next apply runs the "
        "reload again"
    )
    assert report.compiled  # tinydns-data ran
    assert "192.0.2.100" in tinydns_get(bad.tinydns_root, "a", "pc1.lab.example")
    assert "192.0.2.100 pc1.lab.example" in hosts.read_text()
    assert main(["-q", "-c", str(bad.path), "apply"]) == 1
    good = config.load(str(write_config(tmp_path, outputs=[{**spec, "reload": ["true"]}])))
    report = apply.run(good)
    assert (report.ok, report.changed, report.compiled) == (True, False, True), report.error


def test_a_failing_tinydns_does_not_stop_the_hosts_output(tmp_path: Path) -> None:
    hosts = tmp_path / "lan.hosts"
    broken = tmp_path / "broken-tinydns-data"
    broken.write_text("#!/bin/sh\necho 'tinydns-data: fatal: out of memory' >&2\nexit 111\n")
    broken.chmod(0o755)
    cfg = config.load(
        str(
            write_config(
                tmp_path,
                tinydns={"data_program": str(broken)},
                outputs=[{"type": "hosts", "path": str(hosts)}],
            )
        )
    )
    apply.ensure_dirs(cfg)
    hook(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", "pc1", "", "600")
    report = apply.run(cfg)
    assert not report.ok and report.error.startswith(
        f"1 of 2 outputs failed to publish (published: hosts {hosts}): tinydns: {broken} in "
    )
    assert "failed (exit 111): tinydns-data: fatal: out of memory" in report.error
    assert "192.0.2.100 pc1.lab.example" in hosts.read_text()
    assert report.changed and not report.compiled


def test_guard_refuses_to_drop_names_when_a_journal_vanishes(cfg: config.Config) -> None:
    for i in range(12):
        hook(cfg, "commit", f"192.0.2.{100 + i}", f"2:0:0:0:0:{i + 1:x}", f"pc{i}", "", "600")
    assert apply.run(cfg).dynamic == 12
    shutil.rmtree(cfg.journal_dir / "peer-a")
    report = apply.run(cfg)
    assert not report.ok and "peer peer-a" in report.error
    assert "its journal is empty" in report.error  # apply made the directory again
    # Without the record of what the journals held, the build is refused for that alone.
    (cfg.state_dir / "journals.json").unlink()
    report = apply.run(cfg)
    assert not report.ok and "journals.json is missing (deleted?)" in report.error
    assert "pc0.lab.example" in (cfg.tinydns_root / "data").read_text()
    forced = apply.run(cfg, force=True)
    assert forced.ok and forced.dynamic == 0


def test_event_arriving_during_a_build_is_picked_up(cfg: config.Config, tmp_path: Path) -> None:
    slow = tmp_path / "slow-tinydns-data"
    slow.write_text(f"#!/bin/sh\nsleep 0.6\nexec {tool('tinydns-data')}\n")
    slow.chmod(0o755)
    c = config.load(
        str(
            write_config(
                tmp_path, tinydns={"data_program": str(slow)}, build={"coalesce_secs": 0.05}
            )
        )
    )
    env = {
        "LEASEDNS_NO_APPLY": "",
        "LEASEDNS_CONFIG": str(c.path),
        "LEASEDNS_BIN": shutil.which("leasedns")
        or str(Path(os.sys.executable).with_name("leasedns")),
    }
    hook(c, "commit", "192.0.2.100", "2:0:0:0:0:1", "first", "", "600", **env)
    time.sleep(0.4)  # the first build is now compiling (slowly)
    hook(c, "commit", "192.0.2.101", "2:0:0:0:0:2", "second", "", "600", **env)
    deadline = time.time() + 15
    data = c.tinydns_root / "data.cdb"
    while time.time() < deadline:
        if data.exists() and "192.0.2.101" in tinydns_get(
            c.tinydns_root, "a", "second.lab.example"
        ):
            break
        time.sleep(0.1)
    assert "192.0.2.101" in tinydns_get(c.tinydns_root, "a", "second.lab.example")
    assert "192.0.2.100" in tinydns_get(c.tinydns_root, "a", "first.lab.example")
    assert spool.scan(c.spool_dir) == []


def test_concurrent_applies_build_one_at_a_time(cfg: config.Config) -> None:
    for i in range(30):
        hook(cfg, "commit", f"192.0.2.{100 + i}", f"2:0:0:0:1:{i:x}", f"pc{i}", "", "600")
    reports: list[apply.Report] = []
    threads = [threading.Thread(target=lambda: reports.append(apply.run(cfg))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.ingested for r in reports) == [0, 0, 0, 30]
    assert len(journal.read_peer(cfg.journal_dir / "peer-a").events) == 30


def test_record_show_and_status_commands(
    cfg: config.Config, capsys: pytest.CaptureFixture[str]
) -> None:
    c = str(cfg.path)
    assert (
        main(
            [
                "-c",
                c,
                "record",
                "commit",
                "192.0.2.100",
                "2:0:0:0:0:1",
                "laptop",
                "",
                "600",
                "--time",
                format_time(time.time_ns() // 1000 - 10_000_000),
                "--no-apply",
            ]
        )
        == 0
    )
    assert main(["-c", c, "record", "commit", "192.0.2.7", "zz", "x"]) == 2
    assert "MAC 'zz' is not six hex octets" in capsys.readouterr().err
    assert (
        main(["-c", c, "record", "commit", "192.0.2.101", "2:0:0:0:0:2", "www_x", "", "600"]) == 0
    )
    capsys.readouterr()
    assert main(["-c", c, "show"]) == 0
    table = capsys.readouterr().out
    assert "www-x.lab.example" in table and "peer-a" in table
    assert main(["-c", c, "show", "--json"]) == 0
    shown = capsys.readouterr().out
    assert '"name": "www-x.lab.example"' in shown
    assert '"note": "sanitized from \'www_x\'"' in shown and '"sent": "www_x"' in shown
    assert main(["-c", c, "status"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("leasedns OK: peer peer-a")
    assert "journal peer-a: 2 events" in out and "last build" in out
    # record refuses a time far ahead; a partner's event from a clock far ahead is a warning
    future = ["commit", "192.0.2.102", "2:0:0:0:0:3", "future", "", "600"]
    assert main(["-c", c, "record", *future, "--time", "2099-01-01T00:00:00Z"]) == 2
    assert "at most build.clock_skew_secs (30 s) ahead of now" in capsys.readouterr().err
    ahead = parse_time("2099-01-01T00:00:00Z")
    journal.append(cfg.journal_dir / "peer-b", [make_event(future, ahead, "peer-b")])
    assert main(["-c", c, "status"]) == 1
    assert "in the future (clock skew over 30 s?)" in capsys.readouterr().out


def test_usage_and_config_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("peer: a\ndomain: x.example\nnames:\n  conflict: newest\n")
    assert main(["-c", str(bad), "apply"]) == 2
    assert f"{bad}:4: conflict must be 'latest' or 'first', not 'newest'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
