"""`leasedns dhcpd-snippet`: the dhcpd.conf lines that run the hook, for this install."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

PACKAGED_HOOK = "/usr/lib/leasedns/dhcpd-event"  # the Debian package's (debian/rules)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "dhcpd-snippet", help="print the dhcpd.conf hook snippet for this install"
    )
    p.add_argument("--hook", help="hook path (default: dhcpd-event beside this leasedns)")
    p.set_defaults(run=run, needs_config=False)
    return p


def run(args: argparse.Namespace, out: TextIO) -> int:
    out.write(snippet(args.hook))
    return 0


def snippet(hook: str | None = None) -> str:
    """The dhcpd.conf snippet with the hook path filled in."""
    from importlib import resources
    from pathlib import Path

    if hook is None:  # beside the interpreter of this virtualenv, or where the package puts it
        here = Path(sys.executable).parent / "dhcpd-event"
        packaged = Path(PACKAGED_HOOK)
        hook = str(packaged if not here.exists() and packaged.exists() else here)
    text = resources.files("leasedns").joinpath("templates/dhcpd-hooks.conf").read_text()
    return text.replace("@HOOK@", hook)
