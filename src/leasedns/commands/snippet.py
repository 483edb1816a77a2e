"""`leasedns dhcpd-snippet`: the dhcpd.conf lines that run the hook, for this install."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO


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

    if hook is None:  # installed beside the interpreter of this virtualenv
        hook = str(Path(sys.executable).parent / "dhcpd-event")
    text = resources.files("leasedns").joinpath("templates/dhcpd-hooks.conf").read_text()
    return text.replace("@HOOK@", hook)
