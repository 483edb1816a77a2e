"""Faults: kill -9 during apply, a full disk, a read-only journal, no tinydns-data, least privilege.

Everything runs the real programs: the POSIX sh hook, `leasedns apply` as a
subprocess (SIGKILLed with its whole process group, tinydns-data included),
tinydns-data and tinydns-get, tmpfs and read-only bind mounts (root), and
setpriv to drop to unprivileged users.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from helpers import HOOK, need, tool, write_config
from leasedns import config, journal
from leasedns.commands import apply
from leasedns.outputs.tinydns import HEADER
from leasedns.sources import spool
from leasedns.sources.hook import make_event

pytestmark = pytest.mark.integration
LEASEDNS = str(Path(sys.executable).with_name("leasedns"))
if not Path(LEASEDNS).exists():
    LEASEDNS = shutil.which("leasedns") or LEASEDNS
DOMAIN = "lab.example"
# One data line as leasedns writes it: a comment, a record of static data or a binding.
DATA_LINE = re.compile(r"^(#.*|[.=+&@'^CZ:-][^\n]*)$")


def fire(
    spool_dir: Path, *args: str, no_apply: bool = True, timeout: float = 10
) -> subprocess.CompletedProcess[str]:
    """Run the real hook as dhcpd would; returns the completed process (not checked)."""
    env = {"PATH": "/usr/bin:/bin", "LEASEDNS_SPOOL": str(spool_dir)}
    if no_apply:
        env["LEASEDNS_NO_APPLY"] = "1"
    return subprocess.run(
        [str(HOOK), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def ip_of(i: int) -> str:
    return f"10.{100 + (i >> 16)}.{(i >> 8) & 255}.{i & 255}"


def mac_of(i: int) -> str:
    return f"2:1:0:{(i >> 16) & 255:x}:{(i >> 8) & 255:x}:{i & 255:x}"


def tinydns_get(root: Path, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("tinydns-get"), "a", name], cwd=root, capture_output=True, text=True, timeout=10
    )


def answers(root: Path, name: str, ip: str) -> bool:
    """data.cdb is a valid cdb (tinydns-get exits 0) and answers `name` with `ip`."""
    out = tinydns_get(root, f"{name}.{DOMAIN}")
    assert out.returncode == 0, f"tinydns-get {name}: {out.stderr}"
    return f"answer: {name}.{DOMAIN} 0 A {ip}" in out.stdout or (
        f"{name}.{DOMAIN}" in out.stdout and f" A {ip}" in out.stdout
    )


def spooled(spool_dir: Path) -> list[str]:
    return sorted(n for n in os.listdir(spool_dir) if n.startswith(spool.PREFIX))


def names_in(data: bytes) -> set[str]:
    """name:ip of every dynamic binding in a data file."""
    out = set()
    for line in data.decode().splitlines():
        if line[:1] in "=+":
            name, ip = line[1:].split(":")[:2]
            out.add(f"{name.removesuffix('.' + DOMAIN)}:{ip}")
    return out


def complete(data: bytes) -> bool:
    """A whole data file as leasedns renders it: header, newline at the end, every line sane."""
    if not data.startswith(HEADER.encode()) or not data.endswith(b"\n"):
        return False
    return all(DATA_LINE.match(line) for line in data.decode().splitlines())


def script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


# --------------------------------------------------------------------------- kill -9


PHASES = (
    "start-up, lock, spool scan",
    "journal append (torn line)",
    "journal fsynced, spool not yet removed",
    "read journals, merge, render",
    "data renamed, tinydns-data running",
    "after tinydns-data (report)",
    "finished before the kill",
)


class CrashRig:
    """One leasedns instance whose `apply` gets killed; its own directory, config and journal."""

    def __init__(self, base: Path, seed_events: int, rng_seed: int) -> None:
        base.mkdir()
        real = tool("tinydns-data")
        # A little sleep before the compile widens the window "data renamed, data.cdb old".
        compiler = script(base / "slow-tinydns-data", f'#!/bin/sh\nsleep 0.03\nexec {real} "$@"\n')
        self.cfg_path = write_config(base, tinydns={"data_program": str(compiler)})
        self.cfg = cfg = config.load(str(self.cfg_path))
        apply.ensure_dirs(cfg)
        self.rng = random.Random(rng_seed)
        self.argv = [LEASEDNS, "-q", "-c", str(self.cfg_path), "apply"]
        self.phases: Counter[str] = Counter()
        self.damaged = 0  # bad or torn journal lines so far
        # A journal of some size, so that reading, merging and rendering take a while.
        self.accepted = {f"seed{i}": ip_of(i) for i in range(seed_events)}  # name -> ip
        journal.append(
            cfg.journal_dir / cfg.peer,
            [
                make_event(
                    ["commit", ip_of(i), mac_of(i), f"seed{i}", "", str(30 * 86400)],
                    time.time_ns() // 1000,
                    cfg.peer,
                    "hook",
                )
                for i in range(seed_events)
            ],
        )
        assert apply.run(cfg).ok
        self.counter = seed_events
        # How long an apply takes to start (interpreter, imports) and then to do its work:
        # the time from taking the build lock to its exit.
        self.lock = cfg.state_dir / apply.BUILD_LOCK
        starts, works = [], []
        for w in range(3):
            self.spool_new(2, f"warm{w}")
            t0 = time.monotonic()
            proc = subprocess.Popen(self.argv)
            assert self.wait_for_lock(proc)
            t1 = time.monotonic()
            assert proc.wait(60) == 0
            starts.append(t1 - t0)
            works.append(time.monotonic() - t1)
        self.start, self.work = max(starts), max(works)

    def wait_for_lock(self, proc: subprocess.Popen[bytes]) -> bool:
        """Wait until the apply has the build lock open (False: it exited first)."""
        fds = Path(f"/proc/{proc.pid}/fd")
        while proc.poll() is None:
            with suppress(OSError):
                if any(os.readlink(fd) == str(self.lock) for fd in fds.iterdir()):
                    return True
            time.sleep(0.002)
        return False

    def spool_new(self, k: int, label: str) -> list[str]:
        """k events through the real hook; each one it accepts must never be lost."""
        made = []
        for j in range(k):
            name, ip = f"{label}-{j}", ip_of(self.counter)
            done = fire(
                self.cfg.spool_dir, "commit", ip, mac_of(self.counter), name, "", str(30 * 86400)
            )
            assert done.returncode == 0, done.stderr
            self.accepted[name] = ip
            made.append(name)
            self.counter += 1
        return made

    def trial(self, t: int) -> None:
        cfg, root, peer_dir = self.cfg, self.cfg.tinydns_root, self.cfg.journal_dir / self.cfg.peer
        new = self.spool_new(1 + t % 3, f"crash{t}")
        old_data, old_cdb = (root / "data").read_bytes(), (root / "data.cdb").read_bytes()
        old_events = set(journal.read_peer(peer_dir).events)
        spool_before = spooled(cfg.spool_dir)
        proc = subprocess.Popen(
            self.argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if t % 6 == 0:  # a sixth of the kills while the interpreter starts
            time.sleep(self.rng.uniform(0, self.start))
        else:  # the others once it holds the build lock: ingest, merge, render, compile
            self.wait_for_lock(proc)
            time.sleep(self.rng.uniform(0, self.work * 1.2))
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # apply and its tinydns-data
        rc = proc.wait(30)

        # Right after the crash: data is whole, data.cdb a valid cdb, the journal parses.
        data, cdb = (root / "data").read_bytes(), (root / "data.cdb").read_bytes()
        assert complete(data), f"trial {t}: data is not a complete data file after kill -9"
        assert answers(root, "seed0", ip_of(0)), f"trial {t}: data.cdb does not answer seed0"
        pj = journal.read_peer(peer_dir)
        damaged = len(pj.problems) + pj.torn
        assert damaged <= self.damaged + 1, (t, pj.problems)  # at most the one torn line
        in_journal = {e.client_name for e in set(pj.events) - old_events}
        left = spooled(cfg.spool_dir)
        assert set(left) <= set(spool_before)
        for name in new:  # in the spool or in the journal, never in neither
            assert name in in_journal or left, f"trial {t}: {name} neither journaled nor spooled"
        if rc == 0:
            phase = PHASES[6]
        elif damaged > self.damaged:
            phase = PHASES[1]
        elif left and not in_journal:
            phase = PHASES[0]
        elif left:
            phase = PHASES[2]
        elif data == old_data:
            phase = PHASES[3]
        elif cdb == old_cdb:
            phase = PHASES[4]
        else:
            phase = PHASES[5]
        self.phases[phase] += 1
        self.damaged = damaged

        # One more complete apply catches up.
        report = apply.run(cfg)
        assert report.ok, f"trial {t} ({phase}): recovery apply failed: {report.error}"
        new_data, new_cdb = (root / "data").read_bytes(), (root / "data.cdb").read_bytes()
        assert data in (old_data, new_data), f"trial {t} ({phase}): data neither old nor new"
        assert cdb in (old_cdb, new_cdb), f"trial {t} ({phase}): data.cdb neither old nor new"
        assert spooled(cfg.spool_dir) == []
        published = names_in(new_data)
        missing = {n for n, ip in self.accepted.items() if f"{n}:{ip}" not in published}
        assert not missing, f"trial {t} ({phase}): accepted events not published: {missing}"
        journaled = {e.client_name for e in journal.read_peer(peer_dir).events}
        assert set(self.accepted) <= journaled, f"trial {t} ({phase}): events not journaled"
        assert answers(root, new[-1], self.accepted[new[-1]]), (
            f"trial {t} ({phase}): data.cdb was not rebuilt after the crash"
        )


def test_kill_9_at_random_points_never_tears_data_cdb_or_the_journal_nor_loses_events(
    tmp_path: Path,
) -> None:
    """SIGKILL `leasedns apply` (and its tinydns-data) at a random moment, many times over.

    Two independent instances run their trials side by side (the waits are mostly the
    killed interpreter starting up). LEASEDNS_CRASH_TRIALS sets the total (default 200).
    """
    trials = int(os.environ.get("LEASEDNS_CRASH_TRIALS", "200"))
    tool("tinydns-get")
    seed = int(os.environ.get("LEASEDNS_CRASH_SEED", "6"))
    rigs = [CrashRig(tmp_path / f"rig{k}", 400, seed + k) for k in range(2)]
    started = time.monotonic()
    with ThreadPoolExecutor(len(rigs)) as pool:
        done = [
            pool.submit(lambda r, k: [r.trial(t) for t in range(k, trials, len(rigs))], r, k)
            for k, r in enumerate(rigs)
        ]
        for f in done:
            f.result()
    secs = time.monotonic() - started
    phases = sum((r.phases for r in rigs), Counter())
    print(
        f"\nkill -9: {trials} trials in {secs:.1f} s (2 instances; one apply: start-up "
        f"{rigs[0].start:.2f} s, then {rigs[0].work:.2f} s holding the build lock)"
    )
    for phase in PHASES:
        print(f"  {phases[phase]:4d}  {phase}")
    assert sum(phases.values()) == trials
    if trials >= 100:  # the kills reached the phases that write something
        assert phases[PHASES[0]] and phases[PHASES[3]]
        assert phases[PHASES[4]] + phases[PHASES[5]]


# --------------------------------------------------------------------------- mounts


@contextmanager
def mounted(target: Path, *argv: str) -> Iterator[Path]:
    """mount ... target; always unmounted afterwards, even when the test fails."""
    need(os.geteuid() == 0, "mounting needs root")
    tool("mount")
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *argv, str(target)], check=True, capture_output=True)
    try:
        yield target
    finally:
        if subprocess.run(["umount", str(target)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(target)], check=False)


@contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """`path` read-only for everyone, root included (a read-only bind mount over itself)."""
    with mounted(path, "--bind", str(path)):
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield path


def fill(path: Path) -> Path:
    """Write a filler file until the file system is full."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 512, 1):  # down to the last partial page
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def status_exit(cfg_path: Path) -> tuple[int, str]:
    out = subprocess.run(
        [LEASEDNS, "-c", str(cfg_path), "status"], capture_output=True, text=True, timeout=30
    )
    return out.returncode, out.stdout + out.stderr


def on_disk(cfg: config.Config) -> set[str]:
    """Names of events held in the spool or the journal (what must never be lost)."""
    held = {e.client_name for e in journal.read_peer(cfg.journal_dir / cfg.peer).events}
    for item in spool.scan(cfg.spool_dir):
        with suppress(spool.Incomplete):
            held.add(spool.decode(item.data)[3].decode())
    return held


def test_full_disk_hook_fails_fast_nothing_lost_old_cdb_serves_then_catches_up(
    tmp_path: Path,
) -> None:
    tool("tinydns-data")
    with mounted(tmp_path / "fs", "-t", "tmpfs", "-o", "size=1m,mode=0755", "leasedns-full") as fs:
        cfg_path = write_config(
            tmp_path, state_dir=str(fs / "state"), tinydns={"root": str(fs / "root")}
        )
        (fs / "root").mkdir()
        cfg = config.load(str(cfg_path))
        apply.ensure_dirs(cfg)
        for i in range(5):
            assert (
                fire(
                    cfg.spool_dir, "commit", ip_of(i), mac_of(i), f"old{i}", "", "86400"
                ).returncode
                == 0
            )
        assert apply.run(cfg).ok
        old_data = (cfg.tinydns_root / "data").read_bytes()
        old_cdb = (cfg.tinydns_root / "data.cdb").read_bytes()
        queued = range(5, 45)  # accepted, not yet applied: more than a page of journal
        for i in queued:
            assert (
                fire(
                    cfg.spool_dir, "commit", ip_of(i), mac_of(i), f"queued{i}", "", "86400"
                ).returncode
                == 0
            )

        filler = fill(fs)
        t0 = time.monotonic()
        out = fire(cfg.spool_dir, "commit", ip_of(9), mac_of(9), "refused9", "", "86400")
        took = time.monotonic() - t0
        assert out.returncode == 1
        assert out.stderr.startswith("leasedns dhcpd-event: ")
        assert "event commit 10.100.0.9 not recorded" in out.stderr
        assert took < 2.0

        report = apply.run(cfg)
        assert not report.ok
        assert "No space left on device" in report.error and str(fs) in report.error, report.error
        assert {f"old{i}" for i in range(5)} | {f"queued{i}" for i in queued} <= on_disk(cfg)
        assert (cfg.tinydns_root / "data").read_bytes() == old_data
        assert (cfg.tinydns_root / "data.cdb").read_bytes() == old_cdb
        for i in range(5):
            assert answers(cfg.tinydns_root, f"old{i}", ip_of(i))
        code, text = status_exit(cfg_path)
        assert code == 2, f"status after a failed build must be critical, got {code}: {text}"
        # No empty temp file is left behind by a write that could not finish.
        assert sorted(p.name for p in fs.rglob("*.tmp")) == []

        filler.unlink()  # space returns
        report = apply.run(cfg)
        assert report.ok, report.error
        assert all(answers(cfg.tinydns_root, f"queued{i}", ip_of(i)) for i in queued)
        assert all(answers(cfg.tinydns_root, f"old{i}", ip_of(i)) for i in range(5))
        assert not answers(cfg.tinydns_root, "refused9", ip_of(9))
        pj = journal.read_peer(cfg.journal_dir / cfg.peer)
        assert {e.client_name for e in pj.events} == {f"old{i}" for i in range(5)} | {
            f"queued{i}" for i in queued
        }  # duplicates of a failed append are harmless
        # A failed append leaves no torn or damaged line behind (status would warn forever).
        assert (pj.problems, pj.torn) == ([], 0)
        # The refused event left nothing that would later count as damage.
        assert spooled(cfg.spool_dir) == [], "the hook left an empty event file behind"
        assert status_exit(cfg_path)[0] == 0


def test_read_only_journal_fails_clearly_keeps_the_spool_and_recovers(tmp_path: Path) -> None:
    tool("tinydns-data")
    cfg_path = write_config(tmp_path)
    cfg = config.load(str(cfg_path))
    apply.ensure_dirs(cfg)
    assert fire(cfg.spool_dir, "commit", ip_of(1), mac_of(1), "before", "", "86400").returncode == 0
    assert apply.run(cfg).ok
    old_cdb = (cfg.tinydns_root / "data.cdb").read_bytes()
    for i in (2, 3):
        assert (
            fire(cfg.spool_dir, "commit", ip_of(i), mac_of(i), f"during{i}", "", "86400").returncode
            == 0
        )
    with read_only(cfg.journal_dir):
        report = apply.run(cfg)
        assert not report.ok
        assert "Read-only file system" in report.error, report.error
        assert str(cfg.journal_dir / cfg.peer) in report.error, report.error
        assert len(spooled(cfg.spool_dir)) == 2  # kept, not lost
        assert (cfg.tinydns_root / "data.cdb").read_bytes() == old_cdb
        assert answers(cfg.tinydns_root, "before", ip_of(1))
        assert status_exit(cfg_path)[0] == 2
    report = apply.run(cfg)
    assert report.ok and report.ingested == 2, report
    assert spooled(cfg.spool_dir) == []
    assert answers(cfg.tinydns_root, "during2", ip_of(2))
    assert answers(cfg.tinydns_root, "during3", ip_of(3))
    assert status_exit(cfg_path)[0] == 0


def test_missing_tinydns_data_fails_with_the_fix_old_cdb_serves_status_critical(
    tmp_path: Path,
) -> None:
    tool("tinydns-data")
    good = write_config(tmp_path)
    cfg = config.load(str(good))
    apply.ensure_dirs(cfg)
    assert fire(cfg.spool_dir, "commit", ip_of(1), mac_of(1), "old", "", "86400").returncode == 0
    assert apply.run(cfg).ok
    old_cdb = (cfg.tinydns_root / "data.cdb").read_bytes()

    bad = write_config(tmp_path, tinydns={"data_program": "/nonexistent"})
    assert fire(cfg.spool_dir, "commit", ip_of(2), mac_of(2), "new", "", "86400").returncode == 0
    out = subprocess.run(
        [LEASEDNS, "-c", str(bad), "apply"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1
    report = apply.load_report(cfg)["last"]
    assert isinstance(report, dict) and not report["ok"]
    assert "/nonexistent: not found; install tinydns" in str(report["error"])
    assert "not found; install tinydns" in out.stderr
    assert (cfg.tinydns_root / "data.cdb").read_bytes() == old_cdb
    assert answers(cfg.tinydns_root, "old", ip_of(1))
    assert not answers(cfg.tinydns_root, "new", ip_of(2))
    code, text = status_exit(bad)
    assert code == 2 and "not found; install tinydns" in text, text

    # tinydns-data is back: data did not change since, yet data.cdb is rebuilt from it.
    good = write_config(tmp_path)
    report_ok = apply.run(config.load(str(good)))
    assert report_ok.ok and report_ok.compiled and not report_ok.changed
    assert answers(cfg.tinydns_root, "new", ip_of(2))
    assert status_exit(good)[0] == 0


def test_sync_on_a_fresh_peer_before_its_first_event_succeeds(tmp_path: Path) -> None:
    """Installed as the README says (journal/ exists, no event yet): `leasedns sync` works."""
    tool("rsync")
    for me, other in (("peer-a", "peer-b"), ("peer-b", "peer-a")):
        (tmp_path / me / "state" / "journal").mkdir(parents=True)
        write_config(
            tmp_path / me,
            peer=me,
            sync={
                "partners": [
                    {"name": other, "rsync_target": str(tmp_path / other / "state" / "journal")}
                ]
            },
        )
    out = subprocess.run(
        [LEASEDNS, "-c", str(tmp_path / "peer-a" / "leasedns.yaml"), "sync"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert status_exit(tmp_path / "peer-a" / "leasedns.yaml")[0] == 0


# --------------------------------------------------------------------------- least privilege

LEASEDNS_UID = 65534  # nobody: the leasedns user
DHCPD_UID = 64999  # a spare uid: the dhcpd user
DHCPD_GID = 64998  # a spare gid: the dhcpd group


def _interpreter_shim(stage: Path) -> list[str]:
    """An argv prefix that lets other users run this Python when it sits in a private directory.

    pyenv installs under /root (mode 0700): the unprivileged users could not even start
    the interpreter. In a private mount namespace, a tmpfs (0755) goes over that directory
    with only the interpreter's subtree bind-mounted back; the host is not touched.
    """
    path = Path(sys.base_prefix).resolve()
    for parent in [*reversed(path.parents), path]:
        if parent != Path("/") and not parent.stat().st_mode & 0o001:
            child = path.relative_to(parent).parts[0]
            stage.mkdir(exist_ok=True)
            return [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                'mount --bind "$1/$2" "$3" && mount -t tmpfs -o mode=0755,size=1m '
                'leasedns-shim "$1" && mkdir "$1/$2" && mount --bind "$3" "$1/$2" && '
                'shift 3 && exec "$@"',
                "sh",
                str(parent),
                child,
                str(stage),
            ]
    return []


def as_user(
    uid: int, gid: int, argv: list[str], umask: int = 0o022, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    tool("setpriv")
    shim = _interpreter_shim(Path(tempfile.gettempdir()) / "leasedns-test-shim")
    cmd = [
        *shim,
        "setpriv",
        f"--reuid={uid}",
        f"--regid={gid}",
        "--clear-groups",
        "sh",
        "-c",
        f'umask {umask:03o} && exec "$@"',
        "sh",
        *argv,
    ]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=60,
        env=env or {"PATH": "/usr/bin:/bin:/usr/sbin:/sbin"},
    )


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory other users can traverse (pytest's tmp_path is root's, mode 0700)."""
    need(os.geteuid() == 0, "switching users needs root")
    d = Path(tempfile.mkdtemp(prefix="leasedns-priv-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def own(path: Path, uid: int, gid: int, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, gid)
    path.chmod(mode)


def test_apply_as_an_unprivileged_user_creates_nothing_too_permissive(base: Path) -> None:
    tool("tinydns-data")
    tool("rsync")
    ld = LEASEDNS_UID
    state = base / "state"
    # The README's layout: leasedns owns its state, the spool is group-writable by dhcpd,
    # and dhcpd's group may pass through the state directory to reach it.
    own(state, ld, DHCPD_GID, 0o750)
    own(state / "spool", ld, DHCPD_GID, 0o2770)
    own(base / "root", ld, ld, 0o755)
    own(base / "partner", ld, ld, 0o750)
    cfg_path = write_config(
        base,
        state_dir=str(state),
        sync={"partners": [{"name": "peer-b", "rsync_target": str(base / "partner")}]},
    )
    cfg_path.chmod(0o644)
    (base / "static.data").chmod(0o644)
    cfg = config.load(str(cfg_path))

    for i in range(3):
        out = as_user(
            DHCPD_UID,
            DHCPD_GID,
            [str(HOOK), "commit", ip_of(i), mac_of(i), f"pc{i}", "", "86400"],
            env={
                "PATH": "/usr/bin:/bin",
                "LEASEDNS_SPOOL": str(state / "spool"),
                "LEASEDNS_NO_APPLY": "1",
            },
        )
        assert out.returncode == 0, out.stderr
    bad = as_user(
        DHCPD_UID,
        DHCPD_GID,
        [str(HOOK), "commit", "10.0.0.999", mac_of(9), "bad", "", "86400"],
        env={
            "PATH": "/usr/bin:/bin",
            "LEASEDNS_SPOOL": str(state / "spool"),
            "LEASEDNS_NO_APPLY": "1",
        },
    )
    assert bad.returncode == 0, bad.stderr
    # Someone else (not dhcpd, not leasedns) cannot write the spool.
    other = as_user(
        64997,
        64997,
        [str(HOOK), "commit", ip_of(5), mac_of(5), "x", "", "60"],
        env={
            "PATH": "/usr/bin:/bin",
            "LEASEDNS_SPOOL": str(state / "spool"),
            "LEASEDNS_NO_APPLY": "1",
        },
    )
    assert other.returncode == 1 and "not recorded" in other.stderr

    # Hold the sync lock meanwhile, so that apply's sync leaves its sync-due flag too.
    out = as_user(ld, ld, [LEASEDNS, "-c", str(cfg_path), "apply"])
    assert out.returncode == 0, out.stderr
    assert as_user(ld, ld, [LEASEDNS, "-c", str(cfg_path), "sync"]).returncode == 0
    import fcntl

    fd = os.open(state / "sync.lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert (
            as_user(
                DHCPD_UID,
                DHCPD_GID,
                [str(HOOK), "commit", ip_of(4), mac_of(4), "pc4", "", "86400"],
                env={
                    "PATH": "/usr/bin:/bin",
                    "LEASEDNS_SPOOL": str(state / "spool"),
                    "LEASEDNS_NO_APPLY": "1",
                },
            ).returncode
            == 0
        )
        out = as_user(ld, ld, [LEASEDNS, "-c", str(cfg_path), "apply"])
        assert out.returncode == 0, out.stderr
    finally:
        os.close(fd)
    for i in (0, 1, 2, 4):
        assert answers(base / "root", f"pc{i}", ip_of(i))

    problems = []
    peer_dir = cfg.journal_dir / cfg.peer

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.lstat().st_mode)

    def expect(p: Path, want: int) -> None:
        if not p.exists():
            problems.append(f"{p}: missing")
        elif mode(p) != want:
            problems.append(f"{p}: mode {mode(p):04o}, expected {want:04o}")

    segs = journal.segments(peer_dir)
    assert segs
    for seg in segs:
        expect(seg, 0o640)
    expect(peer_dir, 0o750)
    expect(cfg.journal_dir, 0o750)
    for name in ("last-build.json", "build.lock", "sync.json", "sync.lock", "sync-due"):
        p = state / name
        if not p.exists():
            problems.append(f"{p}: missing")
        elif mode(p) & 0o007:
            problems.append(f"{p}: mode {mode(p):04o} is open to other users")
    expect(peer_dir / journal.LOCK, 0o640)
    rejected = state / "spool" / spool.REJECTED
    if mode(rejected) & 0o777 != 0o750:  # setgid inherited from the spool is fine
        problems.append(f"{rejected}: mode {mode(rejected):04o}, expected 0750")
    for p in rejected.iterdir():  # the event files are the hook's (dhcpd's umask)
        if p.lstat().st_uid == ld and mode(p) & 0o007:
            problems.append(f"{p}: mode {mode(p):04o} is open to other users")
    for dirpath, dirnames, filenames in os.walk(state):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            if mode(p) & 0o002:
                problems.append(f"{p}: world-writable")
            if p.lstat().st_uid not in (ld, DHCPD_UID):
                problems.append(f"{p}: owned by uid {p.lstat().st_uid}")
    # The partner copy (written by rsync --chmod=D750,F640) follows the same rules.
    for dirpath, dirnames, filenames in os.walk(base / "partner"):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            if mode(p) & 0o007:
                problems.append(f"{p}: mode {mode(p):04o} is open to other users")
    assert not problems, "\n".join(problems)


def test_readme_layout_lets_dhcpds_user_reach_the_spool(base: Path) -> None:
    """The commands of README "Install", step 2, with dhcpd as a user of its own."""
    ld = LEASEDNS_UID
    state = base / "var-lib-leasedns"
    own(state, ld, DHCPD_GID, 0o750)  # install -d -o leasedns -g dhcpd -m 0750 /var/lib/leasedns
    own(state / "journal", ld, ld, 0o750)
    own(state / "spool", ld, DHCPD_GID, 0o2770)  # install -d -o leasedns -g dhcpd -m 2770 ...
    out = as_user(
        DHCPD_UID,
        DHCPD_GID,
        [str(HOOK), "commit", ip_of(1), mac_of(1), "pc1", "", "600"],
        env={
            "PATH": "/usr/bin:/bin",
            "LEASEDNS_SPOOL": str(state / "spool"),
            "LEASEDNS_NO_APPLY": "1",
        },
    )
    assert out.returncode == 0, f"dhcpd cannot write the spool of the README's layout: {out.stderr}"


def test_an_unreadable_spool_file_does_not_block_the_other_events(base: Path) -> None:
    """dhcpd with umask 077 writes an event leasedns cannot read: the others still go through."""
    tool("tinydns-data")
    ld = LEASEDNS_UID
    state = base / "state"
    own(state, ld, DHCPD_GID, 0o750)
    own(state / "spool", ld, DHCPD_GID, 0o2770)
    own(base / "root", ld, ld, 0o755)
    cfg_path = write_config(base, state_dir=str(state))
    cfg_path.chmod(0o644)
    (base / "static.data").chmod(0o644)
    env = {
        "PATH": "/usr/bin:/bin",
        "LEASEDNS_SPOOL": str(state / "spool"),
        "LEASEDNS_NO_APPLY": "1",
    }
    assert (
        as_user(
            DHCPD_UID,
            DHCPD_GID,
            [str(HOOK), "commit", ip_of(1), mac_of(1), "readable", "", "600"],
            env=env,
        ).returncode
        == 0
    )
    assert (
        as_user(
            DHCPD_UID,
            DHCPD_GID,
            [str(HOOK), "commit", ip_of(2), mac_of(2), "secret", "", "600"],
            umask=0o077,
            env=env,
        ).returncode
        == 0
    )
    out = as_user(ld, ld, [LEASEDNS, "-c", str(cfg_path), "apply"])
    assert answers(base / "root", "readable", ip_of(1)), out.stderr
    assert "Permission denied" in out.stderr
    rejected = [p for p in (state / "spool").glob("rejected/ev-*") if p.suffix != ".reason"]
    assert len(spooled(state / "spool")) + len(rejected) == 1
