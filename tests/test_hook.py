"""The real POSIX sh hook: what it writes, how it fails, and how it starts apply."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from helpers import HOOK, need
from leasedns.model import Kind
from leasedns.sources import spool
from leasedns.sources.hook import make_event


def run_hook(spool_dir: Path, *args: str | bytes, **env: str) -> subprocess.CompletedProcess[bytes]:
    e = {"PATH": "/usr/bin:/bin", "LEASEDNS_SPOOL": str(spool_dir), "LEASEDNS_NO_APPLY": "1", **env}
    return subprocess.run([str(HOOK), *args], env=e, capture_output=True, timeout=10)


def test_hook_spools_raw_arguments_with_the_event_time(tmp_path: Path) -> None:
    hostile = b"evil\n=www.lab.example:6.6.6.6\xff 'quoted' $(reboot) `id`"
    before = time.time_ns()
    p = run_hook(tmp_path, "commit", "192.0.2.101", "2:0:0:0:1:a", hostile, "desk", "600")
    after = time.time_ns()
    assert p.returncode == 0 and p.stderr == b""
    (item,) = spool.scan(tmp_path)
    assert item.path.name.startswith("ev-")
    args = spool.decode(item.data)
    assert args == [b"commit", b"192.0.2.101", b"2:0:0:0:1:a", hostile, b"desk", b"600"]
    assert before - 20_000_000 <= item.mtime_ns <= after + 20_000_000  # coarse kernel clock
    ev = make_event(args, item.mtime_ns // 1000, "peer-a")
    assert ev.kind is Kind.COMMIT and ev.mac == "02:00:00:00:01:0a"


def test_hook_with_too_few_arguments_spools_an_event_apply_will_reject(tmp_path: Path) -> None:
    assert run_hook(tmp_path, "commit", "192.0.2.1").returncode == 0
    (item,) = spool.scan(tmp_path)
    try:
        spool.decode(item.data)
    except spool.EventError as e:
        assert "called with 2 arguments, expected 6" in str(e)
    else:
        raise AssertionError("decoded a 2-argument event")


def test_pid_collision_takes_the_next_free_name(tmp_path: Path) -> None:
    # `exec` keeps the PID: leave files named for it, as an earlier hook with the same PID would.
    env = {"PATH": "/usr/bin:/bin", "LEASEDNS_SPOOL": str(tmp_path), "LEASEDNS_NO_APPLY": "1"}
    script = (
        f'printf old0 > "{tmp_path}/ev-$$-0"; printf old1 > "{tmp_path}/ev-$$-1"; '
        f'exec "{HOOK}" "$@"'
    )
    p = subprocess.run(
        ["sh", "-c", script, "sh", "commit", "192.0.2.1", "2:0:0:0:0:1", "a", "", "60"],
        env=env,
        timeout=10,
    )
    assert p.returncode == 0
    files = {f.name.rsplit("-", 1)[1]: f.read_bytes() for f in tmp_path.iterdir()}
    assert files["0"] == b"old0" and files["1"] == b"old1"  # never overwritten
    assert spool.decode(files["2"])[1] == b"192.0.2.1"
    assert len(files) == 3


def test_unwritable_spool_fails_fast_with_a_message(tmp_path: Path) -> None:
    t0 = time.monotonic()
    p = run_hook(tmp_path / "missing", "commit", "192.0.2.1", "2:0:0:0:0:1", "a", "", "60")
    assert time.monotonic() - t0 < 5
    assert p.returncode == 1
    assert b"cannot create an event file in" in p.stderr and b"not recorded" in p.stderr


def test_read_only_spool_fails_with_a_message(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
        check=False,
        capture_output=True,
    )
    if not os.path.ismount(ro):
        ro.chmod(0o500)
        # root ignores modes; a read-only mount is needed to test this
        need(os.geteuid() != 0, "cannot mount a read-only tmpfs here, and root writes in any dir")
    try:
        p = run_hook(ro, "commit", "192.0.2.1", "2:0:0:0:0:1", "a", "", "60")
        assert p.returncode == 1 and b"cannot create an event file" in p.stderr
    finally:
        subprocess.run(["umount", str(ro)], check=False, capture_output=True)


def test_hook_starts_apply_once_while_one_is_due(tmp_path: Path) -> None:
    counter = tmp_path / "started"
    fake = tmp_path / "leasedns"
    fake.write_text(f'#!/bin/sh\necho "$@" >> "{counter}"\n')
    fake.chmod(0o755)
    env = {"LEASEDNS_BIN": str(fake), "LEASEDNS_NO_APPLY": ""}
    for i in range(5):
        assert (
            run_hook(
                tmp_path, "commit", f"192.0.2.{i + 1}", "2:0:0:0:0:1", "a", "", "60", **env
            ).returncode
            == 0
        )
    deadline = time.time() + 5
    while not counter.exists() and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    assert counter.read_text() == "apply --from-hook\n"  # one start for five events
    assert (tmp_path / ".apply-due").exists()
    (tmp_path / ".apply-due").unlink()  # what apply does before reading the spool
    assert (
        run_hook(tmp_path, "commit", "192.0.2.9", "2:0:0:0:0:1", "a", "", "60", **env).returncode
        == 0
    )
    deadline = time.time() + 5
    while counter.read_text().count("\n") < 2 and time.time() < deadline:
        time.sleep(0.02)
    assert counter.read_text() == "apply --from-hook\n" * 2


def test_hook_without_leasedns_keeps_the_event_and_says_so(tmp_path: Path) -> None:
    p = run_hook(
        tmp_path,
        "commit",
        "192.0.2.1",
        "2:0:0:0:0:1",
        "a",
        "",
        "60",
        LEASEDNS_NO_APPLY="",
        LEASEDNS_BIN=str(tmp_path / "nope"),
    )
    assert p.returncode == 1 and b"no leasedns program to apply it" in p.stderr
    assert len(spool.scan(tmp_path)) == 1


def test_decode_rejects_foreign_and_waits_for_partial_files() -> None:
    full = spool.encode([b"commit", b"192.0.2.1", b"2:0:0:0:0:1", b"a", b"", b"60"])
    assert spool.decode(full)[0] == b"commit"
    for cut in (0, 5, len(spool.MAGIC) + 3, len(full) - 1):
        try:
            spool.decode(full[:cut])
        except spool.Incomplete:
            pass
        else:
            raise AssertionError(f"cut at {cut} decoded")
    try:
        spool.decode(b"#!/bin/sh\nrm -rf /\n")
    except spool.Incomplete:
        raise AssertionError("foreign file taken for a partial event") from None
    except spool.EventError as e:
        assert "not a leasedns event file" in str(e)


def test_full_disk_fails_fast_and_says_so(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    need(os.geteuid() == 0, "mounting a small tmpfs needs root")
    p = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True
    )
    need(p.returncode == 0, f"cannot mount tmpfs: {p.stderr!r}")
    try:
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"x" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        t0 = time.monotonic()
        r = run_hook(mnt, "commit", "192.0.2.1", "2:0:0:0:0:1", "a", "", "60")
        assert time.monotonic() - t0 < 5
        assert r.returncode == 1
        assert (
            b"(disk full?); event commit 192.0.2.1 not recorded" in r.stderr
            or b"cannot create an event file" in r.stderr
        )
        assert not [f for f in mnt.iterdir() if f.name.startswith("ev-") and f.stat().st_size]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
