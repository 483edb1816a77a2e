"""`leasedns sync`: push this peer's journal to each partner with rsync, then wake the partner."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .config import Config, Partner
from .events import format_time
from .publish import write_atomic

log = logging.getLogger("leasedns.sync")

SYNC_STATE = "sync.json"
SYNC_LOCK = "sync.lock"
SYNC_DUE = "sync-due"
Runner = Callable[..., "subprocess.CompletedProcess[Any]"]


@dataclass(slots=True)
class PartnerResult:
    """One partner's last sync attempt."""

    partner: str
    time: str = ""
    ok: bool = False
    error: str = ""
    pushed: bool = False
    notified: bool = False
    bytes_sent: int = 0
    last_ok: str = ""


def rsync_command(cfg: Config, p: Partner) -> list[str]:
    """rsync of journal/<self>/ into the partner's journal root, atomically per file.

    rsync writes each file under a temporary name and renames it into place, so
    the partner reads either the old or the new segment, never half of one;
    `--delete-after` removes compacted-away segments only once the compacted
    one has arrived; `--no-whole-file` keeps the delta algorithm on for local
    targets too, so an appended journal costs about its new bytes.
    """
    src = str(cfg.journal_dir / cfg.peer) + "/"
    dst = p.rsync_target.rstrip("/") + f"/{cfg.peer}/"
    return [
        cfg.rsync,
        "-rt",
        "--no-whole-file",
        "--delete-after",
        "--exclude=.lock",
        "--chmod=D750,F640",
        f"--timeout={cfg.sync_timeout_secs}",
        "--stats",
        *cfg.rsync_args,
        src,
        dst,
    ]


_SENT = re.compile(r"Total bytes sent: ([\d,]+)")


def _push(cfg: Config, p: Partner, res: PartnerResult, runner: Runner) -> None:
    proc = runner(
        rsync_command(cfg, p), capture_output=True, text=True, timeout=cfg.sync_timeout_secs * 2
    )
    m = _SENT.search(proc.stdout or "")
    res.bytes_sent = int(m.group(1).replace(",", "")) if m else 0
    if proc.returncode not in (0, 24):  # 24: a file vanished (compacted) mid-transfer
        err = (proc.stderr or "").strip().splitlines()
        raise OSError(
            f"rsync to {p.rsync_target} failed (exit {proc.returncode}): {err[-1] if err else ''}"
        )
    if proc.returncode == 24:
        raise OSError("rsync: a segment was compacted away during the transfer; retrying next run")
    res.pushed = True


def _notify(cfg: Config, p: Partner, res: PartnerResult, runner: Runner) -> None:
    proc = runner(
        list(p.notify),
        capture_output=True,
        text=True,
        timeout=cfg.sync_timeout_secs,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        err = (proc.stderr or "").strip().splitlines()
        raise OSError(
            f"notify command {p.notify[0]} exited {proc.returncode}: {err[-1] if err else ''}"
        )
    res.notified = True


def run(cfg: Config, runner: Runner = subprocess.run, wait: bool = True) -> list[PartnerResult]:
    """Sync to every partner; failures are recorded and logged, never raised.

    With wait=False (apply's automatic sync), a sync already running here is
    not waited for: it is asked to do one more round (the sync-due flag), so
    partners that wake each other up never wait on each other.
    """
    if not cfg.partners:
        return []
    cfg.state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    # A peer that has journaled nothing yet still has a (empty) journal to push.
    cfg.journal_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    (cfg.journal_dir / cfg.peer).mkdir(mode=0o750, exist_ok=True)
    due = cfg.state_dir / SYNC_DUE
    fd = os.open(cfg.state_dir / SYNC_LOCK, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            due.touch(mode=0o640)
            return []
        results: list[PartnerResult] = []
        while True:
            due.unlink(missing_ok=True)
            results = _round(cfg, runner)
            if not due.exists():
                return results
    finally:
        os.close(fd)


def _round(cfg: Config, runner: Runner) -> list[PartnerResult]:
    """One push + notify to every partner."""
    previous = load(cfg)
    results = []
    for p in cfg.partners:
        res = PartnerResult(p.name, time=format_time(time.time_ns() // 1000))
        res.last_ok = str(previous.get(p.name, {}).get("last_ok", ""))
        try:
            if p.rsync_target:
                _push(cfg, p, res, runner)
            if p.notify:
                _notify(cfg, p, res, runner)
            res.ok = True
            res.last_ok = res.time
        except (OSError, subprocess.SubprocessError) as e:
            res.error = str(e)
            log.error("sync to %s: %s (the local build is unaffected; retried next run)", p.name, e)
        results.append(res)
    save(cfg, results)
    return results


def needs_retry(cfg: Config) -> bool:
    """A partner whose last sync failed: the next apply syncs even without new events."""
    state = load(cfg)
    return any(state.get(p.name, {}).get("ok") is False for p in cfg.partners)


def load(cfg: Config) -> dict[str, dict[str, Any]]:
    """The saved result per partner."""
    try:
        data = json.loads((cfg.state_dir / SYNC_STATE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save(cfg: Config, results: list[PartnerResult]) -> None:
    data = load(cfg)
    data.update({r.partner: asdict(r) for r in results})
    try:
        write_atomic(cfg.state_dir / SYNC_STATE, json.dumps(data, indent=1).encode(), 0o640)
    except OSError as e:
        log.error("%s: cannot save the sync state: %s", cfg.state_dir / SYNC_STATE, e.strerror)
