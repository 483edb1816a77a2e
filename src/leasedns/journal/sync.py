"""`leasedns sync`: push this peer's journals to each partner's inbox with rsync, then wake it.

The partner does not take the copy as it comes: its apply adopts it from the
inbox (`.incoming-<this peer>/` in its journal root) only if it loses none of
the events the partner already holds (see inbox.py), and learns from the copy
of its own journal what this peer holds of it (a restored backup gets its
lost events back).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import subprocess
import time
from dataclasses import asdict, dataclass
from typing import Any

from leasedns import journal
from leasedns.config import Config, Partner
from leasedns.errors import LeasednsError
from leasedns.fsutil import Runner, write_atomic
from leasedns.journal import identity
from leasedns.model import format_time, valid_peer

log = logging.getLogger("leasedns.sync")

SYNC_STATE = "sync.json"
SYNC_LOCK = "sync.lock"
SYNC_DUE = "sync-due"
INBOX_PREFIX = ".incoming-"  # <journal root>/.incoming-<sender>/: what a partner pushed


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
    last_ok_us: int = 0  # when the last good push started
    signature: str = ""  # this peer's journal (segment names and sizes) as last pushed


def inbox_name(sender: str) -> str:
    """The directory of a partner's journal root that `sender`'s sync writes."""
    return INBOX_PREFIX + sender


def rsync_command(cfg: Config, p: Partner) -> list[str]:
    """rsync of this peer's journal root (its own journal and its copies of the partners')
    into its inbox in the partner's journal root, atomically per file.

    rsync writes each file under a temporary name and renames it into place, so
    the partner reads either the old or the new segment, never half of one;
    `--delete-after` removes compacted-away segments only once the compacted
    one has arrived; `--no-whole-file` keeps the delta algorithm on for local
    targets too, so an appended journal costs about its new bytes. The inbox
    is one level below the partner's journal root, so rsync creates it itself.
    """
    if not valid_peer(cfg.peer):  # config.parse refuses it; a Config made by hand
        raise LeasednsError(f"peer {cfg.peer!r} is not a plain name: not pushed anywhere")
    src = str(cfg.journal_dir) + "/"
    dst = p.rsync_target.rstrip("/") + f"/{inbox_name(cfg.peer)}/"
    return [
        cfg.rsync,
        "-rt",
        "--no-whole-file",
        "--delete-after",
        f"--exclude=/{INBOX_PREFIX}*",
        "--exclude=.lock",
        "--exclude=.*.tmp",
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
        raise OSError(
            f"rsync to {p.rsync_target} failed (exit {proc.returncode}): {_why(proc.stderr)}"
        )
    if proc.returncode == 24:
        raise OSError("rsync: a segment was compacted away during the transfer; retrying next run")
    res.pushed = True


def _why(stderr: str | None) -> str:
    """The line of rsync's errors that says why: the partner's own refusal when its key runs
    `leasedns partner-access` (rsync's last line only says the connection closed), else the
    last line."""
    lines = (stderr or "").strip().splitlines()
    theirs = [line for line in lines if line.startswith("leasedns: ")]
    return (theirs or lines or [""])[-1]


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
    try:
        if not valid_peer(cfg.peer):  # config.parse refuses it; a Config made by hand
            raise LeasednsError(f"peer {cfg.peer!r} is not a plain name: not pushed anywhere")
        # The copy says which installation wrote it: the partner refuses another one's.
        own = cfg.journal_dir / cfg.peer
        journal.claim(own, identity.installation_id(cfg.state_dir, own))
        refused = ""
    except (LeasednsError, OSError) as e:  # another installation's directory; a full disk
        refused = str(e)
    for p in cfg.partners:
        now_us = time.time_ns() // 1000
        res = PartnerResult(p.name, time=format_time(now_us))
        before = previous.get(p.name, {})
        res.last_ok = str(before.get("last_ok", ""))
        res.last_ok_us = _int(before.get("last_ok_us"))
        res.signature = str(before.get("signature", ""))
        sig = signature(cfg)  # taken before the push: a later append is pushed next time
        try:
            if refused:
                raise OSError(f"not pushed: {refused}")
            if p.rsync_target:
                _push(cfg, p, res, runner)
            if p.notify:
                _notify(cfg, p, res, runner)
            res.ok = True
            res.last_ok, res.last_ok_us, res.signature = res.time, now_us, sig
        except (OSError, subprocess.SubprocessError, LeasednsError) as e:
            res.error = str(e)
            log.error("sync to %s: %s (the local build is unaffected; retried next run)", p.name, e)
        results.append(res)
    save(cfg, results)
    return results


def _int(v: object) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def signature(cfg: Config) -> str:
    """This peer's journal as listed (segment names and sizes): changes with every append."""
    limits = journal.Limits.of(cfg)
    try:
        listed = journal.sizes(cfg.journal_dir / cfg.peer, limits)
    except journal.Refused as e:
        return str(e)
    return " ".join(f"{journal.segment_name(n)}:{size}" for n, size, _mtime in listed)


def due(cfg: Config, now_us: int | None = None) -> str:
    """Why apply should sync now even without new events ('' when no partner needs it).

    A partner is due when its last sync failed, when this peer's journal
    changed since the last good push, or (with an rsync target) when the last
    good push is older than `sync.resync_secs`: the partner's copy may have
    been lost or refused since, and the one-minute timer then repairs it.
    """
    now_us = time.time_ns() // 1000 if now_us is None else now_us
    state = load(cfg)
    sig = None
    for p in cfg.partners:
        res = state.get(p.name)
        if not isinstance(res, dict) or not res.get("ok"):
            return f"{p.name}: last sync failed or none yet"
        sig = signature(cfg) if sig is None else sig
        if res.get("signature") != sig:
            return f"{p.name}: this peer's journal changed since the last push"
        age = now_us - _int(res.get("last_ok_us"))
        if p.rsync_target and age > cfg.sync_resync_secs * 1_000_000:
            return f"{p.name}: last push {age // 1_000_000} s ago"
    return ""


def needs_retry(cfg: Config) -> bool:
    """A partner whose copy may be stale: the next apply syncs even without new events."""
    return bool(due(cfg))


def load(cfg: Config) -> dict[str, dict[str, Any]]:
    """The saved result per partner (a damaged entry is left out: as if never synced)."""
    try:
        data = json.loads((cfg.state_dir / SYNC_STATE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, dict)}


def save(cfg: Config, results: list[PartnerResult]) -> None:
    data = load(cfg)
    data.update({r.partner: asdict(r) for r in results})
    try:
        write_atomic(cfg.state_dir / SYNC_STATE, json.dumps(data, indent=1).encode(), 0o640)
    except OSError as e:
        log.error("%s: cannot save the sync state: %s", cfg.state_dir / SYNC_STATE, e.strerror)
