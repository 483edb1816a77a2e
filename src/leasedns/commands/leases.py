"""`leasedns leases FILE...`: show the live leases of one or more dhcpd.leases files."""

from __future__ import annotations

import argparse
import os
import sys
import time
from operator import attrgetter
from typing import Any, TextIO

from leasedns.fsutil import InputFileError, gc_paused
from leasedns.sources.dhcpd.leases import (
    Lease,
    LeaseFile,
    _json_lines,
    address_key,
    address_keys,
    in_force,
    live_leases,
    newest_per_address,
    read_leases,
)

COLUMNS = ("ip", "mac", "state", "starts", "ends", "client-hostname", "file")
# The Lease fields shown, in COLUMNS' order: one C call per lease picks them all.
_SHOWN = attrgetter("ip", "mac", "state", "starts", "ends", "client_hostname", "path")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "leases",
        help="show live leases from dhcpd.leases files",
        description="Per address the last block of each file; across files the most recently "
        "started lease wins. Problems go to stderr as path:line: problem.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="dhcpd.leases files (both peers)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument(
        "--all", action="store_true", help="include free, expired, backup and abandoned leases too"
    )
    p.set_defaults(run=run, needs_config=False)  # and logs nothing: problems go to stderr
    return p


def _when(ts: int | None) -> str:
    return "never" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def select(files: list[LeaseFile], now: int, include_all: bool) -> list[Lease]:
    """The leases the table shows, sorted by address: live ones, or with include_all the
    newest block per address. (format_json makes its own choice: see _run.)"""
    if include_all:
        return sorted(newest_per_address(files), key=address_key)
    return live_leases(files, now)


def format_json(leases: list[Lease], live_at: int | None = None) -> str:
    """One JSON object per lease and line (with live_at, per lease in force then: in_force),
    in address order: byte for byte what json.dumps(row, ensure_ascii=True) writes for the
    row {"ip": ..., "file": ...} (keys in COLUMNS' order) of each lease sorted by address_key.

    Written by hand because a dict and a json.dumps call per lease cost more than the parse.
    The address, MAC and state are safe as they are: the parser only makes a dotted quad,
    colon-separated lowercase hex and one of its own state words. Client names (chosen by
    the client: hostile) and file names are escaped as json's own string encoder does.

    The C accelerator writes the same lines (_leasescan.json_lines) five times
    faster than the Python below, which was most of a whole `leases --json` run, and picks
    the live leases as it goes; it declines (None) any lease that is not as the parser makes
    it, and Python does the lot then."""
    if _json_lines is not None:
        text = _json_lines(leases, Lease, live_at)
        if text is not None:
            return text
    return _format_json(leases if live_at is None else in_force(leases, live_at))


def _format_json(leases: list[Lease]) -> str:
    """format_json in Python. The lines are made in the order the leases come (the order
    they were read, so the order they lie in memory) and then put in address order: made in
    address order, every lease of a file not written in that order would be a walk through
    scattered memory."""
    # here, not at the top: with the C accelerator, `leases --json` never needs json at all
    from json.encoder import encode_basestring_ascii as esc

    null, q = "null", '"'
    files: dict[str, str] = {}
    lines = [
        f'{{"ip": "{ip}", "mac": {null if mac is None else q + mac + q}, '
        f'"state": "{state}", "starts": {null if starts is None else starts}, '
        f'"ends": {null if ends is None else ends}, '
        f'"client-hostname": {null if name is None else esc(name)}, '
        f'"file": {files.get(path) or files.setdefault(path, esc(path))}}}\n'
        for ip, mac, state, starts, ends, name, path in map(_SHOWN, leases)
    ]
    keys = address_keys(leases)
    return "".join(map(lines.__getitem__, sorted(range(len(keys)), key=keys.__getitem__)))


def format_table(leases: list[Lease]) -> str:
    rows = [COLUMNS] + [
        (
            x.ip,
            x.mac or "-",
            x.state,
            _when(x.starts),
            _when(x.ends),
            _printable(x.client_hostname) if x.client_hostname is not None else "-",
            x.path,
        )
        for x in leases
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n" for r in rows
    )


def _printable(name: str) -> str:
    # a client chooses its hostname: never let it put control characters on a terminal
    return (
        name.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
        if not name.isprintable() or not name.isascii()
        else name
    )


def run(
    args: argparse.Namespace,
    out: TextIO,
    err: TextIO | None = None,
    now: int | None = None,
) -> int:
    """Exit 0: all read cleanly; 1: problems found (printed to err); 2: a file unreadable.

    When `args.whole_process` is set this command is the whole process (the `leasedns`
    program, not a caller that goes on): it ends it here, with that exit code, once the
    output is flushed."""
    err = sys.stderr if err is None else err
    # Nothing here makes reference cycles; without this the collector would walk all the
    # leases read, again and again, while the output is built.
    with gc_paused():
        return _run(args, out, err, now, getattr(args, "whole_process", False))


def _run(
    args: argparse.Namespace, out: TextIO, err: TextIO, now: int | None, exit_when_done: bool
) -> int:
    files: list[LeaseFile] = []
    status = 0
    for path in args.files:
        try:
            lf = read_leases(path)
        except OSError as e:
            print(f"{path}: cannot read: {e.strerror or e}", file=err)
            status = 2
            continue
        except InputFileError as e:  # not a regular file, or too big: named in the message
            print(e, file=err)
            status = 2
            continue
        for p in lf.problems:
            print(p, file=err)
        if lf.problems and status == 0:
            status = 1
        files.append(lf)
    now = int(time.time()) if now is None else now
    if args.json:  # format_json picks the live leases itself, unless --all
        text = format_json(list(newest_per_address(files)), None if args.all else now)
    else:
        text = format_table(select(files, now, args.all))
    _write(out, text)
    if exit_when_done:
        _exit(status, out, err)
    return status


def _write(out: TextIO, text: str) -> None:
    """out.write(text), 64 KiB at a time. A text stream encodes what it is given into a new
    bytes object: for all 16 MB of 100,000 leases at once, that is fresh memory the kernel
    maps page by page (6 ms); a piece below malloc's mmap threshold (128 KiB) reuses the same
    warm memory every time (1 ms). The bytes written are the same."""
    step = 1 << 16
    for i in range(0, len(text), step):
        out.write(text[i : i + step])


def _exit(status: int, *streams: TextIO) -> None:
    """End the process now, while the leases read are still alive: returning would free the
    100,000 leases of a big file one object at a time (a sixth of the whole run) only for
    the process to end. Nothing else needs the usual exit: no atexit handler or logging
    on this path, and the output is flushed here."""
    try:
        for stream in streams:
            stream.flush()
    except (OSError, ValueError):
        # a closed pipe (`| head`) or stream: the interpreter's own exit reports it, as ever
        return
    os._exit(status)
