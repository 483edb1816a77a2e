"""This installation's journal key: a random secret made once with the state directory.

Every line this installation appends to its own journal (apply, record, reconcile,
compaction) carries a MAC under it (`lines.to_line`). A partner's copy of this peer's
journal can then give back, after a restore from a backup, only lines this installation
wrote: a line the partner made or changed has no valid MAC and is refused (inbox.py). The
installation id cannot serve: every partner learns it from `.owner`. The key never leaves
the state directory; back it up with the state directory.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from leasedns.errors import LeasednsError
from leasedns.fsutil import create_once

KEY_FILE = "journal-key"
_KEY_RE = re.compile(r"[0-9a-f]{64}")


def journal_key(state_dir: Path) -> bytes:
    """The key kept in `state_dir/journal-key` (0640), created (atomically, once) when
    missing."""
    path = state_dir / KEY_FILE
    found = _read(path)
    if found is None:
        try:
            create_once(path, (secrets.token_hex(32) + "\n").encode())
        except OSError as e:
            raise LeasednsError(f"{path}: cannot create the journal key: {e}") from e
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
