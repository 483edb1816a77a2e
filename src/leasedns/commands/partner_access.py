"""`leasedns partner-access PEER`: the forced command of a partner's ssh key (authorized_keys
`command="leasedns partner-access PEER",restrict ...`). What it allows is journal/access.py's;
here the push is handed to rrsync, rooted at PEER's inbox, and the notify runs apply."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import stat
from pathlib import Path
from typing import Any, TextIO

from leasedns.config import Config
from leasedns.journal import access
from leasedns.journal.sync import inbox_name
from leasedns.model import valid_peer

log = logging.getLogger("leasedns.partner-access")

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2  # as cli.py
RRSYNC = "rrsync"  # rsync's restricted server wrapper (Debian: /usr/bin/rrsync, in rsync)
# What an rrsync passes to rsync to keep the filter merge files a partner's rsync may name
# inside the inbox (rsync 3.5.0); without it a partner could read files through filter rules.
CONFINES = b"--confine-root"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "partner-access",
        help="forced command of a partner's ssh key: only its rsync push into its inbox "
        "and `leasedns apply`",
        description="Run by sshd for a partner's key (authorized_keys: "
        'command="leasedns partner-access PEER",restrict ...). Allows PEER\'s rsync push '
        "into journal/.incoming-PEER/ (through rrsync) and its notify (leasedns apply); "
        "refuses anything else.",
    )
    p.add_argument("partner", metavar="PEER", help="the partner whose key this is (its peer name)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace, cfg: Config, out: TextIO) -> int:
    """Exit 0: done (for a push, rsync's own exit status); 1: refused; 2: a wrong PEER."""
    partner: str = args.partner
    original = os.environ.get("SSH_ORIGINAL_COMMAND")
    client = (os.environ.get("SSH_CONNECTION") or "?").split(" ")[0]
    if not valid_peer(partner) or partner == cfg.peer:
        log.error(
            "partner-access %r: not a partner's peer name (%s); fix the command= of its key "
            "in authorized_keys",
            partner,
            "this peer's own" if partner == cfg.peer else "letters, digits, - and _",
        )
        return EXIT_USAGE
    inbox = cfg.journal_dir.absolute() / inbox_name(partner)
    try:
        decision = access.decide(original, partner, str(inbox), os.getcwd())
        if isinstance(decision, access.Push):
            program = _rrsync()
            _make_inbox(inbox)
    except access.Refused as e:
        log.error(
            "partner-access %s from %s: refused %s: %s", partner, client, access.shown(original), e
        )
        return EXIT_FAIL
    if isinstance(decision, access.Check):
        return EXIT_OK
    if isinstance(decision, access.Wake):
        log.info("partner-access %s from %s: apply", partner, client)
        return _apply(cfg)
    log.info("partner-access %s from %s: push into %s", partner, client, inbox)
    # rrsync checks the command again, roots rsync at the inbox (pinned), refuses devices and
    # keeps filter merge files inside it; what the partner pushes is at most 0640 and 0750.
    os.umask(0o027)
    env = {**os.environ, "SSH_ORIGINAL_COMMAND": decision.command}
    os.execve(program, [program, "-wo", str(inbox)], env)


def _apply(cfg: Config) -> int:
    """`leasedns -q apply` with this installation's config: errors only, exit 0 or 1."""
    from leasedns import logs
    from leasedns.commands import apply

    logs.setup(-1)
    return EXIT_OK if apply.run(cfg).ok else EXIT_FAIL


def _rrsync() -> str:
    """The rrsync to run, or Refused naming what to install."""
    program = shutil.which(RRSYNC)
    if program is None:
        raise access.Refused("rrsync not found: install rsync 3.5.0 or later (Debian: rsync)")
    try:
        confines = CONFINES in Path(program).read_bytes()
    except OSError as e:
        raise access.Refused(f"{program}: cannot read it: {e.strerror}") from None
    if not confines:
        raise access.Refused(
            f"{program} does not pass {CONFINES.decode()} to rsync, so a partner's filter "
            "rules could read files here: install rsync 3.5.0 or later"
        )
    return program


def _make_inbox(inbox: Path) -> None:
    """The inbox rrsync is rooted at: made when missing, never a symlink."""
    try:
        inbox.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            inbox.mkdir(mode=0o750)
        mode = os.lstat(inbox).st_mode
    except OSError as e:
        raise access.Refused(f"{inbox}: cannot make it: {e.strerror}") from None
    if not stat.S_ISDIR(mode):
        raise access.Refused(f"{inbox} is not a directory (a symlink?): remove it")
