"""This installation's journal key: a random secret made once with the state directory.

Every line this installation appends to its own journal (apply, record, reconcile,
compaction) carries a MAC under it (`lines.to_line`). A partner's copy of this peer's
journal can then give back, after a restore from a backup, only lines this installation
wrote: a line the partner made or changed has no valid MAC and is refused (inbox.py). The
installation id cannot serve: every partner learns it from `.owner`. The key never leaves
the state directory; back it up with the state directory.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path

from leasedns.errors import LeasednsError
from leasedns.fsutil import fsync_dir, write_all

KEY_FILE = "journal-key"
_KEY_RE = re.compile(r"[0-9a-f]{64}")


def journal_key(state_dir: Path) -> bytes:
    """The key kept in `state_dir/journal-key` (0640), created (atomically, once) when
    missing."""
    path = state_dir / KEY_FILE
    found = _read(path)
    if found is None:
        state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        tmp = state_dir / f".{KEY_FILE}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            try:
                write_all(fd, (secrets.token_hex(32) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(tmp, path)
        except OSError as e:
            raise LeasednsError(f"{path}: cannot create the journal key: {e}") from e
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        fsync_dir(state_dir)
        found = _read(path)
    if found is None or not _KEY_RE.fullmatch(found):
        raise LeasednsError(
            f"{path}: not a journal key (64 hex digits); put back the one from the state "
            "directory's backup, or remove the file: a new key is made, and this peer's "
            "events signed with the old one can no longer be recovered from a partner's copy"
        )
    return bytes.fromhex(found)


def _read(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(200).decode("ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
