"""A partner's journal line that is valid JSON but no valid event: counted, reported as
path:line, skipped; apply, show, status and reconcile go on with every other event."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import pytest

from helpers import hook, tool, write_config
from leasedns import config, journal
from leasedns.cli import main
from leasedns.commands import apply
from leasedns.engine import cache as mergestate
from leasedns.errors import LeasednsError
from leasedns.journal.lines import to_line
from leasedns.model import Event, Kind, format_time

pytestmark = pytest.mark.integration

NOW = int(time.time())
OWN = ("192.0.2.10", "02:00:00:00:00:10", "own")
PARTNER = ("192.0.2.20", "02:00:00:00:00:20", "partner")
SPOOLED = ("192.0.2.40", "02:00:00:00:00:40", "spooled")


def stamp(t: int) -> str:
    return time.strftime("%w %Y/%m/%d %H:%M:%S", time.gmtime(t))


def lease(ip: str, mac: str, name: str) -> str:
    return (
        f"lease {ip} {{\n  starts {stamp(NOW - 60)};\n  ends {stamp(NOW + 3540)};\n"
        f"  cltt {stamp(NOW - 60)};\n  binding state active;\n  next binding state free;\n"
        f'  hardware ethernet {mac};\n  client-hostname "{name}";\n}}\n'
    )


def setup(tmp: Path) -> config.Config:
    tool("tinydns-data")
    leases = tmp / "dhcpd.leases"
    leases.write_text("".join(lease(*x) for x in (OWN, PARTNER, SPOOLED)))
    cfg = config.load(str(write_config(tmp, dhcpd={"leases": [str(leases)]})))
    apply.ensure_dirs(cfg)
    return cfg


def commit(ip: str, mac: str, name: str, peer: str, t: int = NOW - 60) -> Event:
    return Event(Kind.COMMIT, t * 1_000_000, ip, mac, name, "", 3600, peer, "hook")


def good_partner_line() -> dict[str, object]:
    return json.loads(to_line(commit(*PARTNER, "peer-b")))  # type: ignore[no-any-return]


def hostile(**fields: object) -> str:
    """A line for another address with one field changed."""
    d = json.loads(to_line(commit("192.0.2.30", "02:00:00:00:00:30", "hostile", "peer-b")))
    d.update(fields)
    return json.dumps(d)


CASES = {
    # src=7 on a copy of the partner's good line: equal up to src, so the merge compared
    # the two rows' src (int with str) and every build failed.
    "src-int-tie": (json.dumps({**good_partner_line(), "src": 7}), "src 7 is not a source"),
    "src-null": (hostile(src=None), "src None is not a source"),
    "src-list": (hostile(src=["x"]), "src (a JSON array) is not a source"),
    "secs-2**63": (hostile(secs=2**63), f"secs {2**63} is not a lease length"),
    "secs-negative": (hostile(secs=-1), "secs -1 is not a lease length"),
    "secs-true": (hostile(secs=True), "secs True is not a lease length"),
    "year-1": (hostile(time="0001-01-01T00:00:00Z"), "time: '0001-01-01T00:00:00Z' is outside"),
    "year-9999": (hostile(time="9999-12-31T23:59:59Z"), "time: '9999-12-31T23:59:59Z' is outside"),
    "year-1969": (
        hostile(time="1969-12-31T23:59:59.000000Z"),
        "time: '1969-12-31T23:59:59.000000Z' is outside",
    ),
    "since-after-time": (
        hostile(since=format_time((NOW + 3600) * 1_000_000)),
        f"since {format_time((NOW + 3600) * 1_000_000)} is after the event's time",
    ),
    "ip-leading-zero": (hostile(ip="1.2.3.04"), "IP '1.2.3.04' is not an IPv4 address"),
    # never parsed: longer than any line leasedns writes (lines.MAX_LINE_CHARS)
    "name-10MB": (
        hostile(name="x" * 10_000_000),
        "a line of 10000176 characters; a journal line holds at most 65536",
    ),
    "name-2000": (hostile(name="x" * 2000), "name is 2000 characters long"),
    "a-list": ('["commit", "192.0.2.30"]', "not a journal event: a JSON array, not an object"),
    "a-number": ("7", "not a journal event: a JSON number, not an object"),
    "a-string": ('"commit"', "not a journal event: a JSON string, not an object"),
    "other-peer": (hostile(peer="peer-a"), "the line says peer 'peer-a' but is in the journal"),
}


def check_everything_goes_on(
    cfg: config.Config, seg: Path, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Apply publishes every other event; show, status and reconcile report, never crash."""
    report = apply.run(cfg)
    assert (report.ok, report.error) == (True, "")
    data = (cfg.tinydns_root / "data").read_text()
    for ip, _mac, name in (OWN, PARTNER, SPOOLED):
        assert f"={name}.lab.example:{ip}:" in data
    assert "hostile" not in data and "192.0.2.30" not in data
    c = str(cfg.path)
    capsys.readouterr()
    assert main(["-c", c, "show"]) == 0
    table = capsys.readouterr()
    # show reads the engine's state, which took the line in (and logged it) once: status
    # below is where it stays reported
    assert "partner" in table.out and "hostile" not in table.out
    assert main(["-c", c, "show", "--json"]) == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["name"] for r in shown} >= {"own.lab.example", "partner.lab.example"}
    assert main(["-c", c, "status"]) == 1  # a warning: the bad line
    out = capsys.readouterr().out
    assert "journal peer-b: 1 events" in out and ", 1 bad lines" in out
    assert f"problem: {seg}:2: {message}" in out and "; line skipped" in out
    assert "last build" in out and ": ok;" in out
    assert main(["-c", c, "status", "--json"]) == 1
    st = json.loads(capsys.readouterr().out)
    assert st["peers"]["peer-b"]["problems"] == 1
    assert main(["-c", c, "reconcile", "--check"]) == 0  # the lease file agrees
    capsys.readouterr()


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_partner_line_is_reported_and_everything_else_goes_on(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    line, message = CASES[case]
    cfg = setup(tmp_path)
    journal.append(cfg.journal_dir / "peer-a", [commit(*OWN, "peer-a")])
    journal.append(cfg.journal_dir / "peer-b", [commit(*PARTNER, "peer-b")])
    assert apply.run(cfg).ok  # a merge state saved before the bad line arrives
    seg = journal.segments(cfg.journal_dir / "peer-b")[0]
    with seg.open("a") as f:
        f.write(line + "\n")  # as rsync from the partner would bring it
    hook(cfg, "commit", *SPOOLED, "", "3600")
    # the incremental build (the line folded into the saved merge state)
    check_everything_goes_on(cfg, seg, message, capsys)
    # the same journals read from scratch, in a fresh state directory
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    cfg2 = config.load(str(write_config(fresh, dhcpd={"leases": [str(tmp_path / "dhcpd.leases")]})))
    shutil.copytree(cfg.journal_dir, cfg2.journal_dir)
    shutil.copy(cfg.state_dir / "installation-id", cfg2.state_dir)  # the same installation
    apply.ensure_dirs(cfg2)
    check_everything_goes_on(cfg2, cfg2.journal_dir / "peer-b" / seg.name, message, capsys)
    # and the merge state it saved opens again (a list src made it unsavable)
    state = mergestate.load(cfg2.state_dir)
    assert state is not None and state.events == 3
    state.close()


def test_an_event_file_with_a_wild_time_is_rejected_with_the_reason(tmp_path: Path) -> None:
    cfg = setup(tmp_path)
    hook(cfg, "commit", *OWN, "", "3600")
    hook(cfg, "commit", *PARTNER, "", "3600")
    early, _ = sorted(p for p in cfg.spool_dir.iterdir() if p.is_file())
    os.utime(early, ns=(0, -86400 * 10**9))  # 1969-12-31: a clock never set, or forged
    report = apply.run(cfg)
    assert (report.ok, report.ingested, report.rejected) == (True, 1, 1)
    reason = next((cfg.spool_dir / "rejected").glob("*.reason")).read_text()
    assert reason.startswith("event time 1969-12-31T00:00:00.000000Z is outside 1970-01-01")
    assert [e.client_name for e in journal.read_peer(cfg.journal_dir / "peer-a").events] == [
        "partner"
    ]


# --- record --time ----------------------------------------------------------------------------


def record(cfg: config.Config, when: str) -> int:
    return main(
        ["-c", str(cfg.path), "record", "commit", *OWN, "", "600", "--time", when, "--no-apply"]
    )


@pytest.mark.parametrize(
    ("when", "message"),
    [
        (
            "9999-12-31T23:59:59Z",
            "leasedns: --time: '9999-12-31T23:59:59Z' is outside "
            "1970-01-01T00:00:00Z .. 2100-01-01T00:00:00Z",
        ),
        ("0001-01-01T00:00:00Z", "leasedns: --time: '0001-01-01T00:00:00Z' is outside"),
        ("1969-07-20T20:17:40Z", "leasedns: --time: '1969-07-20T20:17:40Z' is outside"),
        ("2099-01-01T00:00:00Z", "leasedns: record: time 2099-01-01T00:00:00.000000Z is outside"),
        (
            format_time((NOW + 3600) * 1_000_000),
            "at most build.clock_skew_secs (30 s) ahead of now and journal.max_lease_secs + "
            "journal.compact_grace_secs (90000 s) before it",
        ),
        (format_time((NOW - 90_100) * 1_000_000), "leasedns: record: time "),
        ("not a time", "leasedns: --time: Invalid isoformat string: 'not a time'"),
    ],
)
def test_record_refuses_a_time_outside_its_window(
    when: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = setup(tmp_path)
    assert record(cfg, when) == 2
    assert message in capsys.readouterr().err
    assert journal.read_peer(cfg.journal_dir / "peer-a").events == []
    c = str(cfg.path)
    assert main(["-c", c, "show"]) == 0
    assert main(["-c", c, "status"]) == 0


def test_record_takes_a_time_inside_its_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = setup(tmp_path)
    now = int(time.time())  # not the module's NOW: the suite may have run for minutes since
    for t in (now - 90_000 + 600, now - 10, now + 20):
        assert record(cfg, format_time(t * 1_000_000)) == 0
    assert len(journal.read_peer(cfg.journal_dir / "peer-a").events) == 3
    assert main(["-c", str(cfg.path), "show"]) == 0
    assert "own.lab.example" in capsys.readouterr().out


# --- apply's failures always leave a reason -------------------------------------------------


def test_an_unexpected_error_in_apply_is_reported_not_raised(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cfg = setup(tmp_path)
    hook(cfg, "commit", *OWN, "", "3600")

    def broken(*args: object, **kw: object) -> None:  # a fault injected: a bug's TypeError
        raise TypeError("'>' not supported between instances of 'int' and 'str'")

    monkeypatch.setattr(apply, "build", broken)
    why = (
        "TypeError: '>' not supported between instances of 'int' and 'str' "
        "(a bug; please report it with the log)"
    )
    assert main(["-c", str(cfg.path), "apply", "--from-hook"]) == 1
    assert main(["-c", str(cfg.path), "status"]) == 2
    assert f"FAILED: {why}" in capsys.readouterr().out
    # and the log has it with the traceback (`main` set the leasedns logger up on its own)
    logger = logging.getLogger("leasedns")
    logger.addHandler(caplog.handler)
    try:
        report = apply.run(cfg)
    finally:
        logger.removeHandler(caplog.handler)
    assert (report.ok, report.error) == (False, why)
    logged = [r for r in caplog.records if why in r.getMessage()]
    assert len(logged) == 1 and logged[0].levelno == logging.ERROR
    assert logged[0].exc_info is not None and logged[0].exc_info[0] is TypeError


def test_an_error_without_a_message_still_has_a_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = setup(tmp_path)

    def silent(*args: object, **kw: object) -> None:
        raise LeasednsError()

    monkeypatch.setattr(apply, "build", silent)
    assert not apply.run(cfg).ok
    assert main(["-c", str(cfg.path), "status"]) == 2
    assert "FAILED: LeasednsError (no message);" in capsys.readouterr().out
    # a report saved with an empty reason (by an older version) still shows one
    path = cfg.state_dir / apply.LAST_BUILD
    saved = json.loads(path.read_text())
    saved["last"]["error"] = ""
    path.write_text(json.dumps(saved))
    assert main(["-c", str(cfg.path), "status"]) == 2
    assert "FAILED: no reason recorded (see the log);" in capsys.readouterr().out


def test_status_survives_a_damaged_report_and_sync_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = setup(tmp_path)
    path = write_config(
        tmp_path,
        dhcpd={"leases": [str(tmp_path / "dhcpd.leases")]},
        sync={"partners": [{"name": "peer-b", "rsync_target": str(tmp_path / "b")}]},
    )
    cfg = config.load(str(path))
    journal.append(cfg.journal_dir / "peer-a", [commit(*OWN, "peer-a")])
    (cfg.state_dir / apply.LAST_BUILD).write_text('{"last": "x", "last_ok": [1]}')
    for last_ok in ("9999-12-31T23:59:59Z", "garbage", "0001-01-01T00:00:00Z"):
        sync_state = {"peer-b": {"ok": True, "time": last_ok, "last_ok": last_ok, "error": ""}}
        (cfg.state_dir / "sync.json").write_text(json.dumps(sync_state))
        assert main(["-c", str(cfg.path), "status"]) == 1  # never synced, as far as it can tell
        out = capsys.readouterr().out
        assert "no build yet" in out and f"sync peer-b: ok at {last_ok}, last ok" in out
