"""This installation's identity: a random id made once with the state directory.

A journal directory records the id of the installation that writes it
(`journal/<peer>/.owner`), so that a second installation under the same
`peer:` (a copied config, a cloned host) is refused instead of mixing its
events into, or overwriting, the first one's journal. The id lives in the
state directory, not in /etc/machine-id, which cloned VMs share and which
two installations on one machine (tests, a lab) would share too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from pathlib import Path

from leasedns.errors import LeasednsError

ID_FILE = "installation-id"
_ID_RE = re.compile(r"[0-9a-f]{32}")


def installation_id(state_dir: Path) -> str:
    """The id kept in `state_dir/installation-id`, created (atomically, once) when missing."""
    path = state_dir / ID_FILE
    found = _read(path)
    if found is None:
        state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
        tmp = state_dir / f".{ID_FILE}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
            try:
                if os.write(fd, (secrets.token_hex(16) + "\n").encode()) != 33:
                    raise OSError(errno.ENOSPC, "short write")
                os.fsync(fd)
            finally:
                os.close(fd)
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(tmp, path)
        except OSError as e:
            raise LeasednsError(f"{path}: cannot create the installation id: {e}") from e
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        dfd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        found = _read(path)
    if found is None or not _ID_RE.fullmatch(found):
        raise LeasednsError(
            f"{path}: not an installation id (32 hex digits): {found!r}; if it was damaged, "
            "put back the id recorded in journal/<peer>/.owner (this peer's journal)"
        )
    return found


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
