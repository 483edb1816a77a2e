"""What a partner's ssh key may run here: its rsync push into its own inbox, and apply.

`leasedns partner-access PEER` is the forced command of PEER's key in the leasedns user's
authorized_keys; sshd hands it the command the partner asked for (SSH_ORIGINAL_COMMAND).
`decide` accepts exactly the server side of PEER's `leasedns sync` push into
`<journal_dir>/.incoming-PEER/` (the options sync.rsync_command makes, and a few harmless
ones an operator may add to rsync_args), its notify (`leasedns ... apply`) and the
connection check `true`; anything else is refused with a one-line reason. Pure: the command
module does the I/O (README: "Giving a partner only the inbox").
"""

from __future__ import annotations

import os.path
import re
import shlex
from dataclasses import dataclass

from leasedns.errors import LeasednsError


class Refused(LeasednsError):
    """The partner asked for something its key may not do; the message says what and why."""


@dataclass(frozen=True, slots=True)
class Push:
    """The partner's rsync push, as the server-side command rrsync is to run: only options
    that were checked, and the destination rewritten to rrsync's restricted root (`.`)."""

    command: str


@dataclass(frozen=True, slots=True)
class Wake:
    """The partner's notify: run `leasedns -q apply` with this installation's config."""


@dataclass(frozen=True, slots=True)
class Check:
    """`ssh ... true` (the README's first connection): nothing runs."""


Decision = Push | Wake | Check

# The rsync server options leasedns sync sends (`-rt`, --timeout, --delete-after, --stats),
# and those a partner's rsync_args may add that write nothing else and read nothing:
# verbosity, compression, checksums, a bandwidth limit, fsync. Everything else is refused:
# -l (symlinks), -p/-o/-g (modes, owners), -D (devices), -s (arguments sent out of sight),
# --partial/--inplace/--append (torn segments), any option naming a path, --sender (a pull).
REQUIRED_FLAGS = frozenset("rt")
OPTIONAL_FLAGS = frozenset("vqzc")
_FLAGS = re.compile(r"-([a-df-zA-Z]*)(e\d*\.[A-Za-z]*)?")  # rsync's cluster; `e.xxx`: protocol
_LONG = {  # option -> the pattern of its value (None: takes none)
    "--delete-after": None,
    "--stats": None,
    "--fsync": None,
    "--no-W": None,
    "--timeout": re.compile(r"\d{1,9}"),
    "--bwlimit": re.compile(r"\d{1,12}(\.\d{1,6})?[KkMmGg]?"),
    "--compress-level": re.compile(r"-?\d{1,3}"),
    "--compress-choice": re.compile(r"[a-z0-9]{1,16}"),
    "--checksum-choice": re.compile(r"[a-z0-9]{1,16}(,[a-z0-9]{1,16})?"),
}
_WHY = {
    "l": "creates symlinks",
    "L": "follows symlinks",
    "k": "follows symlinks",
    "K": "follows symlinks",
    "p": "sets permissions",
    "o": "sets owners",
    "g": "sets groups",
    "D": "creates devices",
    "s": "sends the arguments where they cannot be checked",
}
# Global options a notify command may carry before `apply`; recognised, never used: the
# apply that runs reads this installation's own config.
_GLOBAL = {"-q", "--quiet", "-v", "-vv", "--verbose"}
_GLOBAL_WITH_VALUE = {"-c", "--config"}
SHOWN = 200  # characters of a refused command quoted in the refusal


def decide(original: str | None, partner: str, inbox: str, home: str) -> Decision:
    """What to do for the command `original` asked through `partner`'s key; raises Refused.

    `inbox` is the absolute path of `partner`'s inbox here, `home` the directory a relative
    rsync destination starts from (sshd starts the forced command in the user's home).
    """
    if original is None or not original.strip():
        raise Refused("no command (an interactive login): this key may only push and notify")
    try:
        words = shlex.split(original)
    except ValueError as e:
        raise Refused(f"the command does not split into words: {e}") from None
    if not words or not words[0]:
        raise Refused("no program named: this key may only push and notify")
    if words == ["true"]:
        return Check()
    program = os.path.basename(words[0])
    if program == "rsync":
        return Push(_rsync(words[1:], partner, inbox, home))
    if program == "leasedns":
        _apply(words[1:])
        return Wake()
    raise Refused(
        f"{program!r} is neither this partner's rsync push into {inbox}/ nor `leasedns apply`"
    )


def _rsync(args: list[str], partner: str, inbox: str, home: str) -> str:
    """The checked server-side rsync command, the destination replaced by `.`."""
    if args[:1] != ["--server"]:
        raise Refused("rsync without --server: only the server side of a push runs here")
    if "--sender" in args:
        raise Refused(
            f"rsync --sender (a pull: reading here): this key may only push into {inbox}/"
        )
    flags: set[str] = set()
    kept = ["rsync", "--server"]
    rest = args[1:]
    while rest and rest[0] != ".":
        opt = rest.pop(0)
        m = _FLAGS.fullmatch(opt)
        if m:
            bad = sorted(set(m.group(1)) - REQUIRED_FLAGS - OPTIONAL_FLAGS)
            if bad:
                why = _WHY.get(bad[0], "not one leasedns sync sends")
                raise Refused(f"rsync option -{bad[0]} ({why}) is not one a partner's push may use")
            flags |= set(m.group(1))
        else:
            name, eq, value = opt.partition("=")
            if name not in _LONG:
                raise Refused(f"rsync option {name} is not one a partner's push may use")
            pattern = _LONG[name]
            if (pattern is not None) != bool(eq) or (
                pattern is not None and not pattern.fullmatch(value)
            ):
                raise Refused(f"rsync option {opt!r}: not a value a partner's push may give")
        kept.append(opt)
    if not rest:
        raise Refused("rsync --server without its `.` argument: not a push leasedns sync makes")
    if not flags >= REQUIRED_FLAGS:
        raise Refused("rsync without -r and -t: not the push leasedns sync makes")
    paths = rest[1:]
    if len(paths) != 1:
        raise Refused(f"rsync with {len(paths)} destinations: a push names one, {inbox}/")
    dest = paths[0]
    if ".." in dest.split("/"):
        raise Refused(f"rsync destination {dest!r} contains `..`: name the inbox {inbox}/")
    if os.path.normpath(os.path.join(home, dest)) != os.path.normpath(inbox):
        raise Refused(
            f"rsync destination {dest!r} is not {partner}'s inbox {inbox}/, the only place "
            f"its key may write ({partner}'s rsync_target names {os.path.dirname(inbox)}/)"
        )
    return " ".join([*kept, ".", "."])


def _apply(args: list[str]) -> None:
    """Accept `leasedns [-q] [-v] [-c FILE] apply` (the partner's notify), else raise."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] in _GLOBAL or args[i].startswith("--config="):
            i += 1
        elif args[i] in _GLOBAL_WITH_VALUE:
            i += 2
        else:
            break
    rest = args[i:]
    if rest == ["apply"]:
        return
    if rest[:1] == ["apply"]:
        raise Refused(f"leasedns apply {shlex.join(rest[1:])}: the partner may only wake apply")
    raise Refused(
        f"leasedns {shlex.join(args)}: this key may only run `leasedns apply` (the notify)"
    )


def shown(original: str | None) -> str:
    """The command as a refusal quotes it: on one line, at most SHOWN characters."""
    if original is None:
        return "(none)"
    text = original if len(original) <= SHOWN else original[:SHOWN] + "..."
    return repr(text)
