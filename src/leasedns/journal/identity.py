"""This installation's identity: a random id made once with the state directory.

A journal directory records the id of the installation that writes it
(`journal/<peer>/.owner`), so that a second installation under the same
`peer:` (a copied config, a cloned host) is refused instead of mixing its
events into, or overwriting, the first one's journal. The id lives in the
state directory, not in /etc/machine-id, which cloned VMs share and which
two installations on one machine (tests, a lab) would share too.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path

from leasedns import journal
from leasedns.errors import LeasednsError
from leasedns.fsutil import create_once

ID_FILE = "installation-id"
_ID_RE = re.compile(r"[0-9a-f]{32}")


class IdentityError(LeasednsError):
    """The installation id is missing or damaged; the message says how to put it back."""


def installation_id(state_dir: Path, own_journal: Path | None = None) -> str:
    """The id kept in `state_dir/installation-id`, created (atomically, once) when missing.

    `own_journal`: this peer's journal directory, given wherever the id may be made. When
    its `.owner` names an installation, a missing id is not made anew (the journal would
    then be refused as another installation's): IdentityError says which id to put back.
    """
    path = state_dir / ID_FILE
    found = _read(path)
    recorded = _recorded(own_journal)
    if found is None and recorded is not None and own_journal is not None:
        raise IdentityError(
            f"{path} is missing, but this peer's journal {own_journal} was written by "
            f"installation {recorded} (its {journal.OWNER}). If this is that installation (the "
            "state directory was lost or restored without the file), put the id back: "
            f"`echo {recorded} > {path}`, then `chown` it to the user apply runs as "
            f"(mode 0640). If another installation shares {own_journal.parent} under the same "
            "`peer:` (a copied config, a second host on shared storage), give this one its own "
            "`peer:` instead."
        )
    if found is None:
        try:
            create_once(path, (secrets.token_hex(16) + "\n").encode())
        except OSError as e:
            raise LeasednsError(f"{path}: cannot create the installation id: {e}") from e
        found = _read(path)
    if found is None or not _ID_RE.fullmatch(found):
        named = f" ({recorded})" if recorded is not None else ""
        raise IdentityError(
            f"{path}: not an installation id (32 hex digits): {found!r}; if it was damaged, "
            f"put back the id recorded in journal/<peer>/{journal.OWNER} (this peer's "
            f"journal){named}"
        )
    return found


def _recorded(own_journal: Path | None) -> str | None:
    """The installation id this peer's journal directory names as its writer, if a valid one."""
    if own_journal is None:
        return None
    found = journal.read_owner(own_journal)
    return found if found is not None and _ID_RE.fullmatch(found) else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except FileNotFoundError:
        return None
