"""The spool: one file per raw hook event, kept until journaled, rejected with a reason."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from leasedns.errors import EventError

log = logging.getLogger("leasedns.spool")

MAGIC = b"leasedns-event 1\n"
TRAILER = b"\0end\n"
PREFIX = "ev-"
DUE_FLAG = ".apply-due"
REJECTED = "rejected"
# More than any hook can write (Linux caps one argument at 128 KiB): not an event.
MAX_EVENT_BYTES = 1024 * 1024
# A file without its end marker is a hook still writing, or one that died
# mid-write; after this long it is the latter and is rejected (kept, not lost).
INCOMPLETE_GRACE_NS = 60 * 1_000_000_000


class Incomplete(EventError):
    """The spool file has no end marker yet."""


@dataclass(frozen=True, slots=True)
class SpoolFile:
    """One spool file as read: its path, bytes and modification time (the event time)."""

    path: Path
    data: bytes
    mtime_ns: int
    size: int = 0
    error: str = ""  # why it could not be read ("" when it was)


def decode(data: bytes) -> list[bytes]:
    """Split a spool file written by hooks/dhcpd-event into its arguments (pure)."""
    if not data.startswith(MAGIC):
        if MAGIC.startswith(data):
            raise Incomplete("empty or partial header")
        raise EventError("not a leasedns event file (bad header)")
    body = data[len(MAGIC) :]
    if not body.endswith(TRAILER):
        raise Incomplete("no end marker")
    fields = body[: -len(TRAILER)].split(b"\0")
    argc, args = fields[0], fields[1:]
    if not argc.isdigit() or len(args) != 6:
        raise EventError("damaged event file (field count)")
    if int(argc) != 6:
        raise EventError(
            f"the hook was called with {int(argc)} arguments, expected 6 "
            "(EVENT IP MAC CLIENT-NAME HOST-DECL-NAME LEASE-SECS)"
        )
    return args


def encode(args: list[bytes]) -> bytes:
    """The bytes the hook writes for these arguments (for `leasedns record` and tests)."""
    return (
        MAGIC + b"\0".join([str(len(args)).encode(), *args[:6], *[b""] * (6 - len(args))]) + TRAILER
    )


def scan(spool: Path) -> list[SpoolFile]:
    """Read every event file in the spool, oldest first; vanished files are skipped."""
    out = []
    try:
        entries = list(os.scandir(spool))
    except FileNotFoundError:
        return []
    for entry in entries:
        if not entry.name.startswith(PREFIX) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            with open(entry.path, "rb") as f:
                st = os.fstat(f.fileno())
                data = f.read(MAX_EVENT_BYTES)
        except FileNotFoundError:
            continue
        except OSError as e:  # e.g. written under a umask that leaves leasedns out
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            out.append(
                SpoolFile(
                    Path(entry.path),
                    b"",
                    st.st_mtime_ns,
                    st.st_size,
                    f"cannot read it: {e.strerror} (check dhcpd's umask and the spool's group)",
                )
            )
            continue
        out.append(SpoolFile(Path(entry.path), data, st.st_mtime_ns, st.st_size))
    out.sort(key=lambda s: (s.mtime_ns, s.path.name))
    return out


def reject(spool: Path, item: SpoolFile, reason: str) -> Path:
    """Move a bad event to spool/rejected/ beside a .reason file, and log it."""
    dest_dir = spool / REJECTED
    dest_dir.mkdir(mode=0o750, exist_ok=True)
    dest = dest_dir / item.path.name
    n = 0
    while dest.exists() or dest.with_name(dest.name + ".reason").exists():
        n += 1
        dest = dest_dir / f"{item.path.name}.{n}"
    reason_file = dest.with_name(dest.name + ".reason")
    fd = os.open(reason_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
        f.write(reason + "\n")
    os.replace(item.path, dest)
    log.error("rejected spool event %s: %s (kept as %s)", item.path.name, reason, dest)
    return dest


def remove(paths: list[Path]) -> None:
    """Delete spool files whose events are durably journaled."""
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def rejected_count(spool: Path) -> int:
    """How many rejected events are kept."""
    try:
        return sum(1 for p in (spool / REJECTED).iterdir() if not p.name.endswith(".reason"))
    except FileNotFoundError:
        return 0
