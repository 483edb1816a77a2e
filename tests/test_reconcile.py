"""reconcile: exact drift reports against lease files, --fix converges, the mass-delete guard."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from helpers import tool, write_config
from leasedns import config, journal
from leasedns.cli import main
from leasedns.commands import apply
from leasedns.commands.reconcile import run
from leasedns.model import Event, Kind

pytestmark = pytest.mark.integration
NOW = int(time.time())


def stamp(t: int) -> str:
    return time.strftime("%w %Y/%m/%d %H:%M:%S", time.gmtime(t))


def block(
    ip: str, mac: str, start: int, end: int, state: str = "active", name: str | None = None
) -> str:
    lines = [
        f"lease {ip} {{",
        f"  starts {stamp(start)};",
        f"  ends {stamp(end)};",
        f"  cltt {stamp(start)};",
        f"  binding state {state};",
        f"  next binding state {'free' if state == 'active' else 'backup'};",
        f"  rewind binding state {state};",
        f"  hardware ethernet {mac};",
    ]
    if name is not None:
        lines.append(f'  client-hostname "{name}";')
    return "\n".join(lines) + "\n}\n"


def setup(tmp: Path, *leasefiles: str, dhcpd_conf: str | None = None) -> config.Config:
    tool("tinydns-data")
    paths = []
    for i, text in enumerate(leasefiles):
        p = tmp / f"dhcpd{i}.leases"
        p.write_text(
            "# The format of this file is documented in the dhcpd.leases(5) manual page.\n"
            "authoring-byte-order little-endian;\n\n" + text
        )
        paths.append(str(p))
    extra: dict[str, object] = {"dhcpd": {"leases": paths}}
    if dhcpd_conf is not None:
        (tmp / "dhcpd.conf").write_text(dhcpd_conf)
        extra["dhcpd"] = {"leases": paths, "conf": str(tmp / "dhcpd.conf")}
    cfg = config.load(str(write_config(tmp, **extra)))
    apply.ensure_dirs(cfg)
    return cfg


def commit(
    cfg: config.Config,
    ip: str,
    mac: str,
    name: str,
    start: int,
    secs: int = 3600,
    peer: str = "peer-a",
) -> Event:
    e = Event(Kind.COMMIT, start * 1_000_000, ip, mac, name, "", secs, peer, "hook")
    journal.append(cfg.journal_dir / peer, [e])
    return e


def kinds(cfg: config.Config) -> list[tuple[str, str, str]]:
    return [(i.kind, i.ip, i.name) for i in run(cfg, fix=False).items]


A, B, C = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:03"


def test_names_only_in_lease_files_are_reported_then_fixed_and_converge(tmp_path: Path) -> None:
    cfg = setup(
        tmp_path,
        block("192.0.2.100", A, NOW - 60, NOW + 3540, name="alice")
        + block("192.0.2.101", B, NOW - 30, NOW + 3570, name="Bob_PC"),
    )
    commit(cfg, "192.0.2.100", A, "alice", NOW - 60)
    apply.run(cfg)
    d = run(cfg, fix=False)
    assert [(i.kind, i.ip, i.mac, i.name, i.detail) for i in d.items] == [
        (
            "unknown-to-journals",
            "192.0.2.101",
            B,
            "bob-pc.lab.example",
            "the lease files know this client, no journal does",
        )
    ]
    assert d.level == 1
    fixed = run(cfg, fix=True)
    (fix,) = fixed.fixes()
    assert (fix.kind, fix.time_us, fix.lease_secs, fix.source) == (
        Kind.COMMIT,
        (NOW - 30) * 1_000_000,
        3600,
        "reconcile",
    )
    assert b"=bob-pc.lab.example:192.0.2.101:0:" in (cfg.tinydns_root / "data").read_bytes()
    assert run(cfg, fix=False).items == []  # converged


def test_removed_journal_entries_come_back(tmp_path: Path) -> None:
    leases = "".join(
        block(
            f"192.0.2.{100 + i}",
            f"02:00:00:00:01:{i:02x}",
            NOW - 100 + i,
            NOW + 3500 + i,
            name=f"pc{i}",
        )
        for i in range(5)
    )
    cfg = setup(tmp_path, leases)
    for i in range(5):
        commit(cfg, f"192.0.2.{100 + i}", f"02:00:00:00:01:{i:02x}", f"pc{i}", NOW - 100 + i)
    apply.run(cfg)
    before = (cfg.tinydns_root / "data").read_bytes()
    seg = journal.segments(cfg.journal_dir / "peer-a")[0]
    lines = seg.read_bytes().splitlines(keepends=True)
    seg.write_bytes(b"".join(lines[:2]))  # events of pc2, pc3, pc4 lost
    assert kinds(cfg) == [
        ("unknown-to-journals", f"192.0.2.{100 + i}", f"pc{i}.lab.example") for i in (2, 3, 4)
    ]
    assert main(["-c", str(cfg.path), "reconcile", "--check"]) == 1
    assert main(["-c", str(cfg.path), "reconcile"]) == 0
    assert (cfg.tinydns_root / "data").read_bytes() == before
    assert main(["-c", str(cfg.path), "reconcile", "--check"]) == 0


def test_lost_release_makes_a_stale_name_that_fix_removes(tmp_path: Path) -> None:
    cfg = setup(tmp_path, block("192.0.2.100", A, NOW - 600, NOW - 100, state="free"))
    commit(cfg, "192.0.2.100", A, "gone", NOW - 600)
    apply.run(cfg)
    d = run(cfg, fix=False)
    assert [(i.kind, i.ip, i.name, i.detail) for i in d.items] == [
        ("stale", "192.0.2.100", "gone.lab.example", f"the lease file says free since {NOW - 100}")
    ]
    (fix,) = d.fixes()
    assert (fix.kind, fix.mac, fix.time_us) == (Kind.RELEASE, A, (NOW - 100) * 1_000_000)
    run(cfg, fix=True)
    assert b"gone.lab.example" not in (cfg.tinydns_root / "data").read_bytes()
    assert kinds(cfg) == []


def test_stale_added_event_for_an_address_no_lease_file_knows(tmp_path: Path) -> None:
    cfg = setup(tmp_path, block("192.0.2.100", A, NOW - 60, NOW + 3540, name="alice"))
    commit(cfg, "192.0.2.100", A, "alice", NOW - 60)
    commit(cfg, "192.0.2.150", C, "ghost", NOW - 30)
    apply.run(cfg)
    assert kinds(cfg) == [("stale", "192.0.2.150", "ghost.lab.example")]
    run(cfg, fix=True)
    data = (cfg.tinydns_root / "data").read_bytes()
    assert b"ghost" not in data and b"alice" in data


def test_journal_older_than_the_lease_file_is_not_overruled(tmp_path: Path) -> None:
    """A lease file that ended an address before the journals' newer commit says nothing."""
    cfg = setup(tmp_path, block("192.0.2.100", A, NOW - 900, NOW - 300, state="free"))
    commit(cfg, "192.0.2.100", B, "newer", NOW - 60)
    apply.run(cfg)
    assert kinds(cfg) == []


def test_missed_renewal_and_wrong_address(tmp_path: Path) -> None:
    cfg = setup(
        tmp_path,
        block("192.0.2.100", A, NOW - 100, NOW + 3500, name="renewed")
        + block("192.0.2.160", B, NOW - 50, NOW + 3550, name="mover"),
    )
    commit(cfg, "192.0.2.100", A, "renewed", NOW - 3000, secs=3600)  # ends in 600 s
    commit(cfg, "192.0.2.120", B, "mover", NOW - 500)  # the journals missed its new address
    apply.run(cfg)
    assert kinds(cfg) == [
        ("renewal", "192.0.2.100", "renewed.lab.example"),
        ("stale", "192.0.2.120", "mover.lab.example"),
        ("wrong-address", "192.0.2.160", "mover.lab.example"),
    ]
    run(cfg, fix=True)
    data = (cfg.tinydns_root / "data").read_text()
    assert "=mover.lab.example:192.0.2.160:" in data and "192.0.2.120" not in data
    assert kinds(cfg) == []


def test_partner_lease_file_without_names_takes_them_from_the_journals(tmp_path: Path) -> None:
    mine = block("192.0.2.100", A, NOW - 60, NOW + 3540, name="alice")
    partner = block("192.0.2.130", C, NOW - 20, NOW + 3580)  # the partner granted it: no name
    cfg = setup(tmp_path, mine, partner)
    commit(cfg, "192.0.2.100", A, "alice", NOW - 60)
    commit(cfg, "192.0.2.110", C, "carol", NOW - 4000, secs=3600)  # carol's earlier lease
    apply.run(cfg)
    items = run(cfg, fix=False).items
    # carol's earlier lease has ended, so her name is simply missing; it comes from the journal
    assert [(i.kind, i.ip, i.name) for i in items] == [
        ("missing", "192.0.2.130", "carol.lab.example")
    ]
    run(cfg, fix=True)
    assert "=carol.lab.example:192.0.2.130:" in (cfg.tinydns_root / "data").read_text()


def test_two_peers_files_most_recent_start_wins(tmp_path: Path) -> None:
    a = block("192.0.2.100", A, NOW - 900, NOW + 2700, name="laptop")
    b = block("192.0.2.100", A, NOW - 100, NOW - 50, state="free")  # later: released on peer-b
    cfg = setup(tmp_path, a, b)
    commit(cfg, "192.0.2.100", A, "laptop", NOW - 900)
    apply.run(cfg)
    assert kinds(cfg) == [("stale", "192.0.2.100", "laptop.lab.example")]


def test_empty_lease_file_never_wipes_names_without_force(tmp_path: Path) -> None:
    cfg = setup(tmp_path, "")
    for i in range(12):
        commit(cfg, f"192.0.2.{100 + i}", f"02:00:00:00:02:{i:02x}", f"pc{i}", NOW - 60)
    apply.run(cfg)
    d = run(cfg, fix=False)
    assert d.held == "the lease files hold no leases at all" and d.level == 2
    assert main(["-c", str(cfg.path), "reconcile"]) == 2
    assert b"pc5.lab.example" in (cfg.tinydns_root / "data").read_bytes()
    assert main(["-c", str(cfg.path), "reconcile", "--force"]) == 0
    assert b"pc5.lab.example" not in (cfg.tinydns_root / "data").read_bytes()


def test_truncated_lease_file_holds_removals_back(tmp_path: Path) -> None:
    good = block("192.0.2.100", A, NOW - 60, NOW + 3540, name="alice")
    cut = block("192.0.2.101", B, NOW - 60, NOW + 3540, name="bob")[:60]
    cfg = setup(tmp_path, good + cut)
    commit(cfg, "192.0.2.100", A, "alice", NOW - 60)
    commit(cfg, "192.0.2.102", C, "carol", NOW - 60)
    apply.run(cfg)
    d = run(cfg, fix=False)
    assert d.level == 2 and d.held == "a lease file is damaged or cut short"
    assert any("dhcpd0.leases:" in p for p in d.problems)
    assert [(i.kind, i.ip) for i in d.items] == [("stale", "192.0.2.102")]
    assert d.items[0].fix is None  # reported, not removed


def test_mass_removal_needs_force(tmp_path: Path) -> None:
    leases = block("192.0.2.200", A, NOW - 60, NOW + 3540, name="only")
    cfg = setup(tmp_path, leases)
    for i in range(12):
        commit(cfg, f"192.0.2.{100 + i}", f"02:00:00:00:02:{i:02x}", f"pc{i}", NOW - 60)
    apply.run(cfg)
    d = run(cfg, fix=False)
    assert d.held == "12 of 12 published names would be removed"


def test_static_host_not_published_is_reported_and_fixed_by_a_build(tmp_path: Path) -> None:
    cfg = setup(
        tmp_path,
        "",
        dhcpd_conf="host printer { hardware ethernet 02:00:00:00:00:50; "
        "fixed-address 192.0.2.50; }\n",
    )
    d = run(cfg, fix=False)
    assert [(i.kind, i.ip, i.name) for i in d.items] == [
        ("static", "192.0.2.50", "printer.lab.example")
    ]
    run(cfg, fix=True)
    assert "=printer.lab.example:192.0.2.50:300" in (cfg.tinydns_root / "data").read_text()
    assert kinds(cfg) == []


def test_json_output_for_machines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    cfg = setup(tmp_path, block("192.0.2.101", B, NOW - 30, NOW + 3570, name="bob"))
    assert main(["-c", str(cfg.path), "reconcile", "--check", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["level"] == 1 and out["items"][0]["kind"] == "unknown-to-journals"
    assert out["items"][0]["name"] == "bob.lab.example"


def test_merged_from_the_state_tables_equals_merged_from_plain_dicts(tmp_path: Path) -> None:
    from leasedns.commands.reconcile import merged_from
    from leasedns.engine import cache as mergestate
    from leasedns.engine import resolve as resolved
    from leasedns.engine.rules import Aggregates
    from leasedns.engine.store import Table
    from leasedns.model import Settings
    from leasedns.sources import statics

    cfg = setup(tmp_path, "")
    macs = [f"02:00:00:00:01:{i:02x}" for i in range(12)]
    for i, mac in enumerate(macs):
        commit(cfg, f"192.0.2.{10 + i}", mac, f"n{i % 5}" if i % 4 else "", NOW - 200 + i)
    journal.append(
        cfg.journal_dir / "peer-a",
        [
            Event(
                Kind.RELEASE, (NOW - 100) * 1_000_000, "192.0.2.11", macs[1], "", "", None, "peer-a"
            )
        ],
    )
    assert apply.run(cfg).ok
    # after the build, more events: the tables then also hold changes not yet saved
    commit(cfg, "192.0.2.12", macs[5], "moved", NOW - 50)
    commit(cfg, "192.0.2.40", macs[0], "n0", NOW - 40, peer="peer-b")
    s, st = Settings.from_config(cfg), statics.load(cfg)
    state, _ = mergestate.refresh(cfg.journal_dir, mergestate.load(cfg.state_dir), s)
    agg = state.aggregates
    assert isinstance(agg.latest, Table) and state.resolved is not None
    up = resolved.update(state.resolved, state.touched, agg, st, s, cfg.ttl, NOW, state.verdicts)
    got = merged_from(up.resolved, agg)  # first: reading whole tables changes the path
    winner, rivals = dict(up.resolved.winner), dict(up.resolved.rivals)
    plain = merged_from(
        resolved.Resolved(outcome=dict(up.resolved.outcome), winner=winner, rivals=rivals),
        Aggregates(dict(agg.latest), dict(agg.ends)),
    )
    state.close()
    assert got == plain
    # published as the winner table has it, though read from the outcome and the rivals
    assert rivals and got.published == {ip: name for name, ip in winner.items()}
    # latest start wins each name; .11 was released; .12 was taken over by "moved"
    assert got.published == {
        "192.0.2.12": "moved.lab.example",
        "192.0.2.13": "n3.lab.example",
        "192.0.2.17": "n2.lab.example",
        "192.0.2.19": "n4.lab.example",
        "192.0.2.21": "n1.lab.example",
        "192.0.2.40": "n0.lab.example",
    }
    assert got.names_by_mac[macs[0]] == "n0" and got.names_by_mac[macs[5]] == "moved"
    assert "192.0.2.11" not in got.live and got.live["192.0.2.40"].mac == macs[0]


def test_lease_times_the_journal_cannot_hold_are_reported_not_journaled(tmp_path: Path) -> None:
    y9999 = 253_402_300_799  # 9999-12-31T23:59:59Z
    cfg = setup(
        tmp_path,
        block("192.0.2.60", "02:00:00:00:00:60", -86_400, NOW + 600, name="old-clock")
        + block("192.0.2.61", "02:00:00:00:00:61", NOW - 60, y9999, name="ends-far")
        + block("192.0.2.62", "02:00:00:00:00:62", y9999 - 60, y9999, name="starts-far"),
    )
    drift = run(cfg, fix=True)
    problems = [p for p in drift.problems if "not journaled" in p]
    assert len(problems) == 2
    assert any("lease 192.0.2.60" in p and "1969-12-31" in p for p in problems)
    assert any("lease 192.0.2.62" in p and "9999-12-31" in p for p in problems)
    pj = journal.read_peer(cfg.journal_dir / cfg.peer)
    assert pj.problems == []  # every journaled fix reads back
    (fix,) = pj.events
    assert (fix.ip, fix.client_name, fix.lease_secs) == ("192.0.2.61", "ends-far", 2**32 - 1)
    run(cfg, fix=True)  # nothing new to fix: the journal does not grow
    assert len(journal.read_peer(cfg.journal_dir / cfg.peer).events) == 1


def test_a_lease_file_that_is_a_fifo_is_refused_not_waited_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A FIFO where the lease file was (or a link to a device) would hang reconcile under its
    timer for ever: it is refused by name, with the config key to fix (exit 1, as for a lease
    file that cannot be read)."""
    from helpers import fifo

    cfg = setup(tmp_path, block("192.0.2.101", B, NOW - 30, NOW + 3570, name="bob"))
    path = cfg.lease_files[0]
    path.unlink()
    with fifo(path):
        assert main(["-c", str(cfg.path), "reconcile", "--check"]) == 1
    said = capsys.readouterr().err.splitlines()[-1]
    assert said == (
        f"leasedns: {path}: is a FIFO (named pipe), not a regular file; leasedns reads only "
        "regular files here (a symlink to one is fine); check dhcpd.leases in the config"
    )
