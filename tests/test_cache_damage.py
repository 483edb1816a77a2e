"""Random damage to merge-state.sqlite between two applies never changes what DNS serves.

Each trial restores one prepared peer (journals, merge state, published data),
damages its merge state (bit flips anywhere, byte runs and zeroed pages,
truncation, two pages swapped, the file of another peer or of an older build,
a stray WAL) and runs apply. The data published must then equal a build from
the same journals with no merge state at all, or apply must fail with the old
data still in place and an error in the report; a second apply must succeed.
Anything else is a silent difference, and there must be none.

LEASEDNS_DAMAGE_TRIALS sets the number of trials (CI default keeps the test
under a minute; the figures in the README come from 1,000) and
LEASEDNS_DAMAGE_SEED the seed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import shutil
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from helpers import tool, write_config
from leasedns import config, journal
from leasedns.commands import apply, status
from leasedns.engine import cache as mergestate
from leasedns.model import Event, Kind

TRIALS = int(os.environ.get("LEASEDNS_DAMAGE_TRIALS", "300"))
SEED = int(os.environ.get("LEASEDNS_DAMAGE_SEED", "20261130"))
US = 1_000_000
FAULTS = (
    "bit-flip",
    "bit-flip",
    "bit-flips",
    "byte-run",
    "byte-run",
    "zero-page",
    "truncate",
    "swap-pages",
    "swap-pages",
    "other-peer",
    "other-config",
    "older-build",
    "stray-wal",
    "row-edit",
)


def _no_compile(argv, **kw):  # type: ignore[no-untyped-def]
    return subprocess.CompletedProcess(argv, 0, b"", b"")


def _commit(ip: str, mac: int, name: str, t: int, peer: str, secs: int = 3600) -> Event:
    return Event(Kind.COMMIT, t * US, ip, f"02:00:00:00:01:{mac:02x}", name, "", secs, peer)


def _release(ip: str, mac: int, t: int, peer: str) -> Event:
    return Event(Kind.RELEASE, t * US, ip, f"02:00:00:00:01:{mac:02x}", "", "", None, peer)


def _phase(cfg: config.Config, now: int, phase: int) -> None:
    """Journal lines for both peers: leases, renewals, releases, conflicts, events from the
    future (held back), a name on the router's address."""
    rng = random.Random(phase)
    for peer in ("peer-a", "peer-b"):
        evs = []
        for i in range(40):
            ip = f"192.0.2.{100 + i}"
            if rng.random() < 0.5 or phase == 1:
                name = f"{'pc' if i % 7 else 'dup'}{i if i % 7 else ''}"
                evs.append(_commit(ip, i, name, now - 900 + 10 * phase + i, peer))
            if rng.random() < 0.1:
                evs.append(_release(ip, i, now - 600 + 10 * phase + i, peer))
        if phase == 1 and peer == "peer-a":
            evs.append(_commit("192.0.2.1", 99, "router-thief", now - 50, peer))
            evs.append(_release("192.0.2.1", 99, now - 40, peer))
            evs.append(_commit("192.0.2.99", 98, "from-2036", now + 10 * 86400, peer))
            evs += [_release(f"192.0.2.{100 + i}", i, now + 20 * 86400, peer) for i in range(5)]
        journal.append(cfg.journal_dir / peer, evs)


def _reset(cfg: config.Config) -> None:
    """Everything of a build but the journals."""
    for p in cfg.state_dir.iterdir():
        if p.name not in ("journal", "spool", "installation-id"):
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
    for p in cfg.tinydns_root.iterdir():
        p.unlink()


def _run(cfg: config.Config) -> apply.Report:
    report = apply.run(cfg, runner=_no_compile)
    return report


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    base = tmp_path_factory.mktemp("damage")
    cfg = config.load(str(write_config(base, build={"coalesce_secs": 0, "guard_min": 1000})))
    apply.ensure_dirs(cfg)
    now = int(time.time())
    snaps = base / "snaps"
    snaps.mkdir()
    _phase(cfg, now, 1)
    # another peer's file (its own journal directory and view) and another config's file
    other = base / "partner"
    other.mkdir()
    pcfg = config.load(str(write_config(other, peer="peer-b")))
    apply.ensure_dirs(pcfg)
    for peer in ("peer-a", "peer-b"):
        shutil.copytree(cfg.journal_dir / peer, pcfg.journal_dir / peer, dirs_exist_ok=True)
    journal.append(
        pcfg.journal_dir / "peer-b", [_commit("192.0.2.200", 1, "only-b", now, "peer-b")]
    )
    assert _run(pcfg).ok
    shutil.copy(pcfg.state_dir / mergestate.STATE_FILE, snaps / "other-peer.sqlite")
    ocfg = dataclasses.replace(cfg, domain="other.example")
    assert _run(ocfg).ok
    shutil.copy(cfg.state_dir / mergestate.STATE_FILE, snaps / "other-config.sqlite")
    _reset(cfg)
    # the peer itself: a cold build, one incremental build, then new lines for the trial's
    assert _run(cfg).ok
    shutil.copy(cfg.state_dir / mergestate.STATE_FILE, snaps / "older-build.sqlite")
    _phase(cfg, now, 2)
    assert _run(cfg).ok
    _phase(cfg, now, 3)
    shutil.copytree(cfg.state_dir, snaps / "state")
    shutil.copytree(cfg.tinydns_root, snaps / "root")
    # what a build from the journals alone publishes
    _reset(cfg)
    assert _run(cfg).ok
    expected = (cfg.tinydns_root / "data").read_bytes()
    old = (snaps / "root" / "data").read_bytes()
    assert expected != old and b"from-2036" not in expected
    return {"cfg": cfg, "snaps": snaps, "expected": expected, "old": old}


def _restore(cfg: config.Config, snaps: Path) -> None:
    shutil.rmtree(cfg.state_dir)
    shutil.rmtree(cfg.tinydns_root)
    shutil.copytree(snaps / "state", cfg.state_dir)
    shutil.copytree(snaps / "root", cfg.tinydns_root)


def _damage(path: Path, snaps: Path, fault: str, rng: random.Random) -> None:
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    pages = len(data) // page
    if fault == "bit-flip":
        i = rng.randrange(len(data))
        data[i] ^= 1 << rng.randrange(8)
    elif fault == "bit-flips":
        for _ in range(rng.randint(2, 16)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif fault == "byte-run":
        p = rng.randrange(1, pages)
        n = rng.randint(1, 64)
        at = p * page + rng.randrange(page - n)
        data[at : at + n] = rng.randbytes(n)
    elif fault == "zero-page":
        p = rng.randrange(1, pages)
        data[p * page : (p + 1) * page] = bytes(page)
    elif fault == "truncate":
        del data[rng.randrange(len(data)) :]
    elif fault == "swap-pages":
        a, b = rng.sample(range(pages), 2)
        pa, pb = data[a * page : (a + 1) * page], data[b * page : (b + 1) * page]
        data[a * page : (a + 1) * page], data[b * page : (b + 1) * page] = pb, pa
    elif fault in ("other-peer", "other-config", "older-build"):
        data = bytearray((snaps / f"{fault}.sqlite").read_bytes())
    elif fault == "stray-wal":
        Path(f"{path}-wal").write_bytes(rng.randbytes(rng.randint(32, 3 * page)))
    elif fault == "row-edit":
        # the issue's case: cached winners' addresses changed, SQLite's own checks content
        db = sqlite3.connect(path)
        db.execute(
            "UPDATE winner SET ip = replace(ip, '192.0.2.1', '192.0.2.2') "
            "WHERE ip LIKE '192.0.2.1%'"
        )
        db.commit()
        db.close()
        return
    path.write_bytes(bytes(data))


def _outcome(report: apply.Report, logged: str) -> str:
    if not report.ok:
        return "apply failed, old data kept: " + report.error.split(":")[-1].strip()[:60]
    if "unusable" in logged:
        return "thrown away on load (size, version or owner), cold build"
    if "merge state damaged" in logged or "merge state unreadable" in logged:
        return "damage found (check value, chain, SQLite), cold build"
    if "cannot read the merge state" in logged:
        return "unreadable for now: built without it"
    if "rebuilt from every journal line" in logged:
        return "marks no longer hold, cold build"
    if "resolving every binding again" in logged:
        return "made for other settings: every binding resolved again"
    return "used as is (damage in bytes no build reads, or a valid older state)"


def test_random_damage_never_changes_what_is_published_silently(
    prepared: dict[str, object], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = prepared["cfg"]
    assert isinstance(cfg, config.Config)
    snaps, expected, old = prepared["snaps"], prepared["expected"], prepared["old"]
    assert isinstance(snaps, Path) and isinstance(expected, bytes) and isinstance(old, bytes)
    rng = random.Random(SEED)
    outcomes: Counter[str] = Counter()
    per_fault: dict[str, Counter[str]] = {}
    silent: list[str] = []
    caplog.set_level(logging.INFO, logger="leasedns")
    for trial in range(TRIALS):
        _restore(cfg, snaps)
        fault = rng.choice(FAULTS)
        _damage(cfg.state_dir / mergestate.STATE_FILE, snaps, fault, rng)
        caplog.clear()
        report = _run(cfg)
        logged = caplog.text
        data = (cfg.tinydns_root / "data").read_bytes()
        what = _outcome(report, logged)
        if report.ok and data != expected:
            silent.append(f"trial {trial} ({fault}): published data differs from a fresh build")
        if not report.ok and (data != old or not report.error):
            silent.append(f"trial {trial} ({fault}): failed without error or old data lost")
        again = _run(cfg)
        if not again.ok or (cfg.tinydns_root / "data").read_bytes() != expected:
            silent.append(f"trial {trial} ({fault}): the next apply fails: {again.error}")
        outcomes[what] += 1
        per_fault.setdefault(fault, Counter())[what] += 1
    summary = "\n".join(
        f"{fault}: {dict(c)}" for fault, c in sorted(per_fault.items(), key=lambda x: x[0])
    )
    print(f"\n{TRIALS} trials, seed {SEED}\n{dict(outcomes)}\n{summary}")
    assert silent == [], "\n".join(silent[:10])


def test_a_changed_data_line_is_found_and_the_real_compile_serves_a_fresh_build(
    prepared: dict[str, object],
) -> None:
    """The issue's case, with tinydns-data: a cached winner's address changed in place."""
    tool("tinydns-data")
    cfg = prepared["cfg"]
    assert isinstance(cfg, config.Config) and isinstance(prepared["snaps"], Path)
    _restore(cfg, prepared["snaps"])
    path = cfg.state_dir / mergestate.STATE_FILE
    db = sqlite3.connect(path)
    name, ip = db.execute("SELECT name, ip FROM winner WHERE ip LIKE '192.0.2.1%'").fetchone()
    bad = ip.replace("192.0.2.1", "192.0.2.2", 1)  # e.g. 192.0.2.101 -> 192.0.2.201
    db.execute("UPDATE winner SET ip = ? WHERE name = ?", (bad, name))
    db.commit()
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    report = apply.run(cfg)
    assert report.ok, report.error
    data = (cfg.tinydns_root / "data").read_bytes()
    assert data == prepared["expected"] and f"{name}:{bad}:".encode() not in data
    assert (cfg.tinydns_root / "data.cdb").exists()


def test_a_state_that_cannot_be_saved_is_reported_and_status_warns(
    prepared: dict[str, object],
) -> None:
    cfg = prepared["cfg"]
    assert isinstance(cfg, config.Config) and isinstance(prepared["snaps"], Path)
    _restore(cfg, prepared["snaps"])
    path = cfg.state_dir / mergestate.STATE_FILE
    mergestate.discard(cfg.state_dir)
    path.mkdir()  # in the way: SQLite cannot open it (as on a broken or full disk)
    report = _run(cfg)
    assert report.ok and not report.state_saved
    assert any(p.startswith("merge state not saved") for p in report.problems)
    assert (cfg.tinydns_root / "data").read_bytes() == prepared["expected"]
    st = status.gather(cfg)
    assert any("could not save the merge state" in p for p in st.problems) and st.level >= 1
    path.rmdir()
    again = _run(cfg)
    assert again.ok and again.state_saved and path.is_file()
