"""check, show, status and reconcile over several outputs: a tinydns data file and a hosts file
(both plain files), and a fake rfc2136 output where a server is needed."""

from __future__ import annotations

import dataclasses
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import hook, write_config
from leasedns import config, journal, outputs
from leasedns.cli import main
from leasedns.commands import apply, check, reconcile, status
from leasedns.errors import ConfigError, PublishError
from leasedns.model import Changes, Desired, Event, Kind, Record, Serving

NOW = int(time.time())
RFC = "rfc2136 lab.example@127.0.0.1:53"
A, B, C = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"


@pytest.fixture
def cfg(tmp_path: Path) -> config.Config:
    """tinydns (compiled by `true`: only its data file matters here) and a hosts file."""
    path = write_config(
        tmp_path,
        tinydns={"data_program": "true"},
        outputs=[{"type": "hosts", "path": str(tmp_path / "leasedns.hosts")}],
    )
    c = config.load(str(path))
    apply.ensure_dirs(c)
    return c


def hosts_name(cfg: config.Config) -> str:
    return f"hosts {cfg.state_dir.parent / 'leasedns.hosts'}"


def commit(cfg: config.Config, ip: str, mac: str, name: str, secs: int = 3600) -> None:
    e = Event(Kind.COMMIT, (NOW - 60) * 1_000_000, ip, mac, name, "", secs, "peer-a", "hook")
    journal.append(cfg.journal_dir / "peer-a", [e])


def published(cfg: config.Config) -> None:
    """pc1 and pc2 published to both outputs."""
    commit(cfg, "192.0.2.100", A, "pc1")
    commit(cfg, "192.0.2.101", B, "pc2")
    report = apply.run(cfg)
    assert report.ok, report.error


def edit_hosts(cfg: config.Config, edit: Callable[[str], str]) -> None:
    path = cfg.state_dir.parent / "leasedns.hosts"
    path.write_text(edit(path.read_text()))


def drifted_hosts(text: str) -> str:
    """pc1 gone, pc2 at another address, a name the merge does not have."""
    text = text.replace("192.0.2.100 pc1.lab.example\n", "")
    text = text.replace("192.0.2.101 pc2", "192.0.2.9 pc2")
    return text + "192.0.2.77 old.lab.example\n"


class Fake:
    """An output whose server is elsewhere (rfc2136): what the server holds (`held`), what the
    note of its last publish says (`serving`), or why it cannot tell."""

    proven = False

    def __init__(
        self, held: list[Record] | None = None, error: str = "", problems: list[str] | None = None
    ) -> None:
        self.name, self.error, self.problems = RFC, error, problems or []
        self.server = {r.name: r for r in held or []}
        self.token, self.noted = "", list(self.server.values())
        self.calls: list[str] = []
        self.published: list[Changes] = []

    def serving(self) -> Serving:
        self.calls.append("serving")
        if self.error:
            raise PublishError(f"{self.name}: {self.error}")
        noted = list(self.noted)
        return Serving(self.token, lambda: noted)

    def held(self) -> list[Record]:
        self.calls.append("held")
        if self.error:
            raise PublishError(f"{self.name}: {self.error}")
        return sorted(self.server.values(), key=lambda r: r.name)

    def publish(self, desired: Desired, changes: Changes):  # type: ignore[no-untyped-def]
        self.calls.append("publish")
        self.published.append(changes)
        before = dict(self.server)
        if changes.base and changes.base == self.token:
            for r in changes.removed:
                self.server.pop(r.name, None)
            for r in [*changes.added, *(new for _old, new in changes.changed)]:
                self.server[r.name] = r
        else:
            self.server = {r.name: r for r in desired.dynamic()}
        self.token, self.noted = changes.token, list(desired.dynamic())
        return Done(changed=self.server != before, problems=list(self.problems))


@dataclasses.dataclass
class Done:
    """What a publish did (an `outputs.Published`)."""

    changed: bool
    compiled: bool = True
    compile_secs: float = 0.0
    problems: list[str] = dataclasses.field(default_factory=list)


@pytest.fixture
def with_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Fake], None]]:
    """Add a fake output after the configured ones (as `configured` would make it)."""

    def add(fake: Fake) -> None:
        real = outputs.configured
        monkeypatch.setattr(outputs, "configured", lambda *a, **k: [*real(*a, **k), fake])

    yield add


def run_cli(capsys: pytest.CaptureFixture[str], cfg: config.Config, *argv: str) -> tuple[int, str]:
    rc = main(["-c", str(cfg.path), *argv])
    return rc, capsys.readouterr().out


# --- check ------------------------------------------------------------------------------------


def test_check_without_servers_asks_every_output_and_all_agree(
    cfg: config.Config, capsys: pytest.CaptureFixture[str]
) -> None:
    published(cfg)
    rc, out = run_cli(capsys, cfg, "check")
    assert (rc, out) == (
        0,
        f"leasedns check OK\noutput tinydns: 2 names ok\noutput {hosts_name(cfg)}: 2 names ok\n",
    )


def test_check_names_missing_wrong_and_stale_names_per_output(
    cfg: config.Config, capsys: pytest.CaptureFixture[str]
) -> None:
    published(cfg)
    edit_hosts(cfg, drifted_hosts)
    rc, out = run_cli(capsys, cfg, "check")
    assert rc == 1
    assert out.splitlines() == [
        "leasedns check WARNING",
        "output tinydns: 2 names ok",
        f"output {hosts_name(cfg)}: 3 differences over 2 names",
        "  pc1.lab.example: missing (expected 192.0.2.100)",
        "  pc2.lab.example: at 192.0.2.9, expected 192.0.2.101",
        "  old.lab.example: stale at 192.0.2.77, not in the merge",
    ]
    rc, out = run_cli(capsys, cfg, "check", "--json")
    doc = json.loads(out)
    assert rc == 1 and doc["level"] == 1 and doc["servers"] == []
    assert doc["outputs"][0] == {
        "output": "tinydns",
        "asked": 2,
        "missing": [],
        "wrong": [],
        "stale": [],
        "unreachable": "",
    }
    assert doc["outputs"][1]["missing"] == ["pc1.lab.example: missing (expected 192.0.2.100)"]


def test_check_an_output_that_cannot_tell_is_unreachable_exit_2(
    cfg: config.Config, capsys: pytest.CaptureFixture[str], with_fake: Callable[[Fake], None]
) -> None:
    published(cfg)
    with_fake(Fake(error="no answer from 127.0.0.1 port 53 (timed out)"))
    rc, out = run_cli(capsys, cfg, "check")
    assert rc == 2
    assert out.splitlines()[0] == "leasedns check CRITICAL"
    assert out.splitlines()[-1] == (
        f"output {RFC}: UNREACHABLE (no answer from 127.0.0.1 port 53 (timed out))"
    )
    assert "output tinydns: 2 names ok" in out.splitlines()  # the others are still asked


def test_check_a_fake_rfc2136_that_holds_every_name_agrees(
    cfg: config.Config, capsys: pytest.CaptureFixture[str], with_fake: Callable[[Fake], None]
) -> None:
    published(cfg)
    end = NOW - 60 + 3600
    held = [
        Record("pc1.lab.example", "192.0.2.100", end, True, False),
        Record("pc2.lab.example", "192.0.2.101", end, True, False),
    ]
    fake = Fake(held)
    with_fake(fake)
    rc, out = run_cli(capsys, cfg, "check")
    assert (rc, out.splitlines()[-1]) == (0, f"output {RFC}: 2 names ok")
    assert fake.calls == ["held"]


def test_check_leaves_out_records_about_to_end() -> None:
    now = 1_000_000.0
    merge = [
        Record("ending.lab.example", "192.0.2.1", int(now) + 4, True, False),  # settling
        Record("live.lab.example", "192.0.2.2", int(now) + 3600, True, False),
        Record("printer.lab.example", "192.0.2.5", None, True, True),  # static: not held
    ]
    held = [
        Record("live.lab.example", "192.0.2.2", int(now) + 3600, True, False),
        Record("gone.lab.example", "192.0.2.3", int(now) + 2, True, False),  # ends any moment
    ]
    rep = check.compare_held("x", held, merge, now)
    assert (rep.asked, rep.differences) == (1, [])
    # the output's own record ending within the settling time counts as not held
    held = [Record("live.lab.example", "192.0.2.2", int(now) + 3, True, False)]
    rep = check.compare_held("x", held, merge, now)
    assert rep.missing == ["live.lab.example: missing (expected 192.0.2.2)"]


def test_check_with_nothing_at_all_to_check_is_a_config_error(cfg: config.Config) -> None:
    import argparse

    bare = dataclasses.replace(cfg, outputs=(), check_servers=())
    with pytest.raises(ConfigError) as info:
        check.main(argparse.Namespace(server=None, json=False), bare, io.StringIO())
    assert str(info.value) == (
        f"{cfg.path}: nothing to check: no outputs, no check.servers configured and "
        "no --server given"
    )


# --- show -------------------------------------------------------------------------------------


def columns(lines: list[str]) -> list[dict[str, str]]:
    """The table's rows (no legend) as column -> cell, cut at the header's column starts."""
    header = lines[0]
    names = header.split()
    starts = [header.index(n) for n in names]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [
        {n.lower(): line[a:b].strip() for n, (a, b) in zip(names, bounds, strict=True)}
        for line in lines[1:]
    ]


def test_show_numbers_the_outputs_that_hold_each_name_with_a_legend(
    cfg: config.Config, capsys: pytest.CaptureFixture[str], with_fake: Callable[[Fake], None]
) -> None:
    published(cfg)
    edit_hosts(cfg, drifted_hosts)
    with_fake(Fake(error="zone lab.example: no transfer (REFUSED)"))
    rc, out = run_cli(capsys, cfg, "show")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "IP",
        "MAC",
        "NAME",
        "PEER",
        "REPORTED",
        "ENDS",
        "OUTPUTS",
        "NOTE",
    ]
    assert lines[-3:] == [
        "1 = tinydns",
        f"2 = {hosts_name(cfg)}",
        f"3 = {RFC}: UNREACHABLE (zone lab.example: no transfer (REFUSED))",
    ]
    rows = {r["name"]: r["outputs"] for r in columns(lines[:-3])}
    assert rows == {"pc1.lab.example": "1", "pc2.lab.example": "1"}


def test_show_json_lists_the_outputs_by_name_and_static_hosts_are_not_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "dhcpd.conf").write_text(
        "host printer { hardware ethernet 02:00:00:00:00:50; fixed-address 192.0.2.50; }\n"
    )
    path = write_config(
        tmp_path,
        tinydns={"data_program": "true"},
        dhcpd={"conf": str(tmp_path / "dhcpd.conf")},
        outputs=[{"type": "hosts", "path": str(tmp_path / "leasedns.hosts")}],
    )
    c = config.load(str(path))
    apply.ensure_dirs(c)
    published(c)
    edit_hosts(c, lambda t: t.replace("192.0.2.101 pc2.lab.example\n", ""))
    rc, out = run_cli(capsys, c, "show", "--json")
    got = {r["name"]: r["outputs"] for r in map(json.loads, out.splitlines())}
    assert rc == 0
    assert got == {
        "printer.lab.example": None,
        "pc1.lab.example": ["tinydns", hosts_name(c)],
        "pc2.lab.example": ["tinydns"],
    }
    rc, out = run_cli(capsys, c, "show")
    assert out.splitlines()[-2:] == ["1 = tinydns", f"2 = {hosts_name(c)}"]
    rows = columns(out.splitlines()[:-2])
    assert [(r["name"], r["outputs"]) for r in rows] == [
        ("printer.lab.example", ""),
        ("pc1.lab.example", "1,2"),
        ("pc2.lab.example", "1"),
    ]


def test_show_no_outputs_asks_none_of_them(
    cfg: config.Config, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    published(cfg)

    def refuse(*_a: object, **_k: object) -> list[outputs.Output]:
        raise AssertionError("--no-outputs asks no output")

    monkeypatch.setattr(outputs, "configured", refuse)
    rc, out = run_cli(capsys, cfg, "show", "--no-outputs")
    assert rc == 0
    assert out.splitlines()[0].split() == ["IP", "MAC", "NAME", "PEER", "REPORTED", "ENDS", "NOTE"]
    assert len(out.splitlines()) == 3  # the header and two rows: no legend
    rc, out = run_cli(capsys, cfg, "show", "--no-outputs", "--json")
    assert all("outputs" not in json.loads(line) for line in out.splitlines())


def test_show_an_unreachable_output_in_json_is_logged_and_show_still_prints(
    cfg: config.Config, capsys: pytest.CaptureFixture[str], with_fake: Callable[[Fake], None]
) -> None:
    published(cfg)
    with_fake(Fake(error="no answer"))
    assert main(["-c", str(cfg.path), "show", "--json"]) == 0
    got = capsys.readouterr()
    assert len(got.out.splitlines()) == 2
    assert f"leasedns: output {RFC}: cannot tell what it holds: no answer\n" in got.err


# --- status -----------------------------------------------------------------------------------


def test_status_shows_each_outputs_last_publish(
    cfg: config.Config, capsys: pytest.CaptureFixture[str]
) -> None:
    published(cfg)
    rc, out = run_cli(capsys, cfg, "status")
    lines = out.splitlines()
    assert rc == 0
    i = next(n for n, line in enumerate(lines) if line.startswith("last build "))
    assert lines[i + 1 :] == ["output tinydns: ok", f"output {hosts_name(cfg)}: ok"]
    rc, out = run_cli(capsys, cfg, "status", "--json")
    assert rc == 0
    assert json.loads(out)["last_build"]["outputs"] == {"tinydns": "ok", hosts_name(cfg): "ok"}


def test_status_shows_what_each_output_reported_under_it(
    cfg: config.Config, capsys: pytest.CaptureFixture[str], with_fake: Callable[[Fake], None]
) -> None:
    """Names an output left alone (held by records leasedns did not create) are said under
    that output by every status until they go, a few of them, not as a failure."""
    held = [f"{RFC}: n{i}.lab.example is held by records leasedns did not create" for i in range(7)]
    with_fake(Fake(problems=held))
    published(cfg)
    rc, out = run_cli(capsys, cfg, "status")
    lines = out.splitlines()
    assert rc == 0, out
    i = lines.index(f"output {RFC}: ok")
    assert lines[i + 1 :] == [
        *(f"  note: n{n}.lab.example is held by records leasedns did not create" for n in range(5)),
        "  note: and 2 more (see the log)",
    ]
    report = json.loads(run_cli(capsys, cfg, "status", "--json")[1])["last_build"]
    assert report["output_notes"] == {RFC: held}
    assert report["problems"] == held


def test_status_a_failed_output_is_named_with_its_error_and_is_critical(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hosts = tmp_path / "leasedns.hosts"
    path = write_config(
        tmp_path,
        tinydns={"data_program": "true"},
        outputs=[{"type": "hosts", "path": str(hosts), "reload": ["false"]}],
    )
    c = config.load(str(path))
    apply.ensure_dirs(c)
    commit(c, "192.0.2.100", A, "pc1")
    assert not apply.run(c).ok
    rc, out = run_cli(capsys, c, "status")
    assert rc == 2
    lines = out.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("last build "))
    assert lines[i + 1 : i + 3] == [
        "output tinydns: ok",
        f"output hosts {hosts}: FAILED: reload command `false` failed (exit 1); "
        f"{hosts} is written; the next apply runs the reload again",
    ]
    assert json.loads(main_json(capsys, c))["last_build"]["outputs"][f"hosts {hosts}"] == (
        f"hosts {hosts}: reload command `false` failed (exit 1); "
        f"{hosts} is written; the next apply runs the reload again"
    )


def main_json(capsys: pytest.CaptureFixture[str], c: config.Config) -> str:
    assert main(["-c", str(c.path), "status", "--json"]) == 2
    return capsys.readouterr().out


def test_status_of_a_report_from_before_outputs_has_no_output_lines(cfg: config.Config) -> None:
    apply.save_report(cfg, apply.Report(time="2026-01-01T00:00:00Z", ok=True))
    text = status.as_text(cfg, status.gather(cfg))
    assert text.splitlines()[-1].startswith("last build 2026-01-01T00:00:00Z: ok;")
    assert "output " not in text


# --- reconcile --------------------------------------------------------------------------------


def lease_block(ip: str, mac: str, name: str) -> str:
    def stamp(t: int) -> str:
        return time.strftime("%w %Y/%m/%d %H:%M:%S", time.gmtime(t))

    return (
        f"lease {ip} {{\n  starts {stamp(NOW - 60)};\n  ends {stamp(NOW + 3540)};\n"
        f"  binding state active;\n  hardware ethernet {mac};\n"
        f'  client-hostname "{name}";\n}}\n'
    )


@pytest.fixture
def rcfg(tmp_path: Path) -> config.Config:
    """tinydns and a hosts file, and a lease file that agrees with the journals."""
    leases = tmp_path / "dhcpd.leases"
    leases.write_text(lease_block("192.0.2.100", A, "pc1") + lease_block("192.0.2.101", B, "pc2"))
    path = write_config(
        tmp_path,
        tinydns={"data_program": "true"},
        dhcpd={"leases": [str(leases)]},
        outputs=[{"type": "hosts", "path": str(tmp_path / "leasedns.hosts")}],
    )
    c = config.load(str(path))
    apply.ensure_dirs(c)
    published(c)
    return c


def test_reconcile_reports_each_outputs_drift_and_repairs_it(
    rcfg: config.Config, capsys: pytest.CaptureFixture[str]
) -> None:
    edit_hosts(rcfg, drifted_hosts)
    d = reconcile.run(rcfg, fix=False)
    assert d.items == [] and d.level == 1
    assert [(o.output, o.differences) for o in d.outputs] == [
        ("tinydns", []),
        (
            hosts_name(rcfg),
            [
                "pc1.lab.example: missing (expected 192.0.2.100)",
                "pc2.lab.example: at 192.0.2.9, expected 192.0.2.101",
                "old.lab.example: stale at 192.0.2.77, not in the merge",
            ],
        ),
    ]
    rc, out = run_cli(capsys, rcfg, "reconcile", "--check")
    assert rc == 1
    assert out.splitlines() == [
        "leasedns reconcile WARNING: 3 differences",
        "output tinydns: 2 names ok",
        f"output {hosts_name(rcfg)}: 3 differences over 2 names",
        "  pc1.lab.example: missing (expected 192.0.2.100)",
        "  pc2.lab.example: at 192.0.2.9, expected 192.0.2.101",
        "  old.lab.example: stale at 192.0.2.77, not in the merge",
    ]
    # A build alone does not see it: the file's note no longer matches, so apply renders it
    # whole; the repair is what reconcile adds for an output whose note still matches.
    rc, out = run_cli(capsys, rcfg, "reconcile")
    assert rc == 0
    assert out.splitlines()[0] == "leasedns reconcile WARNING: 3 differences"
    hosts = (rcfg.state_dir.parent / "leasedns.hosts").read_text()
    assert "192.0.2.100 pc1.lab.example\n192.0.2.101 pc2.lab.example\n" in hosts
    assert "old.lab" not in hosts
    rc, out = run_cli(capsys, rcfg, "reconcile", "--check")
    assert (rc, out.splitlines()[0]) == (0, "leasedns reconcile OK: 0 differences")


def test_reconcile_without_lease_files_still_repairs_the_outputs(
    cfg: config.Config, capsys: pytest.CaptureFixture[str]
) -> None:
    """What a server lost needs no lease file to be put back: with `dhcpd.leases` empty,
    reconcile says the journals were compared with none, and repairs the outputs from the
    journals' merge (before, it refused with a config error and repaired nothing)."""
    published(cfg)
    edit_hosts(cfg, drifted_hosts)
    rc, out = run_cli(capsys, cfg, "reconcile", "--check")
    lines = out.splitlines()
    assert rc == 1
    assert lines[0] == "leasedns reconcile WARNING: 3 differences"
    assert lines[1] == (
        f"note: {cfg.path}: dhcpd.leases lists no lease files: the journals were not compared "
        "with any; only the outputs were compared with the journals' merge"
    )
    assert f"output {hosts_name(cfg)}: 3 differences over 2 names" in lines
    rc, out = run_cli(capsys, cfg, "reconcile")
    assert rc == 0, out
    hosts = (cfg.state_dir.parent / "leasedns.hosts").read_text()
    assert "192.0.2.100 pc1.lab.example\n192.0.2.101 pc2.lab.example\n" in hosts
    assert "old.lab" not in hosts
    rc, out = run_cli(capsys, cfg, "reconcile", "--check", "--json")
    d = json.loads(out)
    held = d["outputs"][1]
    assert (rc, d["level"], d["items"]) == (0, 0, [])
    assert (held["asked"], held["missing"], held["wrong"], held["stale"]) == (2, [], [], [])
    assert d["notes"] and "lists no lease files" in d["notes"][0]


def published_to(fake: Fake, cfg: config.Config) -> None:
    """An apply that brings the fake up to date (its note and its server agree)."""
    assert apply.run(cfg).ok
    assert sorted(fake.server) == ["pc1.lab.example", "pc2.lab.example"]
    fake.calls.clear()
    fake.published.clear()


def test_reconcile_repairs_a_server_whose_note_says_all_is_well(
    rcfg: config.Config, capsys: pytest.CaptureFixture[str], with_fake: Callable[[Fake], None]
) -> None:
    """Records lost on the server behind leasedns's back: a build trusts the note and sends
    nothing; held() re-reads, and the repair sends the changes from what the server holds
    (base "": no outcome of the merge names what it holds)."""
    fake = Fake()
    with_fake(fake)
    published_to(fake, rcfg)
    del fake.server["pc1.lab.example"]
    d = reconcile.run(rcfg, fix=True)
    assert d.problems == [] and d.repaired == [RFC]
    assert d.outputs[-1].differences == ["pc1.lab.example: missing (expected 192.0.2.100)"]
    # drift; the build (from the note: nothing to send); the repair: read, send
    assert fake.calls == ["held", "serving", "publish", "held", "publish"]
    assert not fake.published[0]
    changes = fake.published[1]
    assert (changes.base, changes.token, changes.removed, changes.changed) == ("", "", [], [])
    assert [r.name for r in changes.added] == ["pc1.lab.example"]
    rc, out = run_cli(capsys, rcfg, "reconcile", "--check")
    assert (rc, out.splitlines()[-1]) == (0, f"output {RFC}: 2 names ok")
    rc, out = run_cli(capsys, rcfg, "reconcile")
    assert fake.calls[-1] == "held" and rc == 0  # in sync: the repair sends nothing


def test_reconcile_repair_is_held_back_by_the_guard_unless_forced(
    rcfg: config.Config, capsys: pytest.CaptureFixture[str], with_fake: Callable[[Fake], None]
) -> None:
    fake = Fake()
    with_fake(fake)
    published_to(fake, rcfg)
    for i in range(12):  # names of ours the merge knows nothing of (an old backup restored)
        r = Record(f"x{i}.lab.example", f"192.0.2.{200 + i}", NOW + 3000, True, False)
        fake.server[r.name] = r
    rc, out = run_cli(capsys, rcfg, "reconcile")
    assert rc == 2
    (problem,) = [line for line in out.splitlines() if line.startswith("problem: ")]
    assert problem.startswith(
        f"problem: output {RFC}: not repaired: refusing to publish: 12 of 14 live dynamic names"
    )
    assert problem.endswith("run `leasedns reconcile --force`.")
    assert fake.calls.count("publish") == 1  # the build's, from the note
    rc, out = run_cli(capsys, rcfg, "reconcile", "--force")
    assert rc == 0
    assert f"output {RFC}: repaired from what it held" in out.splitlines()
    assert len(fake.published[-1].removed) == 12
    assert sorted(fake.server) == ["pc1.lab.example", "pc2.lab.example"]


def test_reconcile_an_output_that_cannot_tell_is_critical(
    rcfg: config.Config, capsys: pytest.CaptureFixture[str], with_fake: Callable[[Fake], None]
) -> None:
    with_fake(Fake(error="no answer"))
    rc, out = run_cli(capsys, rcfg, "reconcile", "--check", "--json")
    doc = json.loads(out)
    assert rc == 2 and doc["level"] == 2
    assert doc["outputs"][-1]["unreachable"] == "no answer" and doc["repaired"] == []
    rc, out = run_cli(capsys, rcfg, "reconcile")
    assert rc == 2
    assert f"problem: output {RFC}: not repaired: no answer" in out.splitlines()


def test_reconcile_does_not_ask_an_output_whose_file_proves_it_serves_the_merge(
    rcfg: config.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tinydns and hosts outputs prove what they serve (their file's digest against the note):
    one serving the outcome reconcile computes holds exactly its records and is not read
    again (100,000 lines at scale); a hand-edited one is."""
    from leasedns.outputs.hosts import Hosts
    from leasedns.outputs.tinydns import Tinydns

    asked: list[str] = []
    for cls in (Tinydns, Hosts):
        real = cls.held
        monkeypatch.setattr(
            cls, "held", lambda self, real=real: asked.append(self.name) or real(self)
        )
    d = reconcile.run(rcfg, fix=True)
    assert (d.level, asked, d.repaired) == (0, [], [])
    assert [(o.output, o.asked, o.differences) for o in d.outputs] == [
        ("tinydns", 2, []),
        (hosts_name(rcfg), 2, []),
    ]
    edit_hosts(rcfg, drifted_hosts)
    d = reconcile.run(rcfg, fix=False)
    assert asked == [hosts_name(rcfg)] and d.level == 1


def test_an_output_that_crashes_fails_alone_and_says_it_is_a_bug(
    rcfg: config.Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leasedns.outputs.tinydns import Tinydns

    def boom(self: object, desired: Desired, changes: Changes) -> None:
        raise KeyError("unexpected")

    monkeypatch.setattr(Tinydns, "publish", boom)
    hook(rcfg, "commit", "192.0.2.102", "02:00:00:00:00:09", "pc3", "", "600")
    report = apply.run(rcfg)
    assert not report.ok
    assert report.outputs["tinydns"] == (
        "tinydns: KeyError: 'unexpected' (a bug; please report it with the log)"
    )
    assert report.outputs[hosts_name(rcfg)] == "ok"
    assert "192.0.2.102 pc3.lab.example" in (rcfg.state_dir.parent / "leasedns.hosts").read_text()
