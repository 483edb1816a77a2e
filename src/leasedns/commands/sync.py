"""`leasedns sync`: push this peer's journal to its partners and wake them up (the replication
itself is journal/sync.py's)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any, TextIO

from leasedns.config import Config
from leasedns.errors import ConfigError
from leasedns.journal import sync as syncing


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "sync", help="push this peer's journal to its partners, wake them up"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace, cfg: Config, out: TextIO) -> int:
    """Exit 0: every partner took it; 1: one did not."""
    if not cfg.partners:
        raise ConfigError(f"{cfg.path}: no sync.partners configured; nothing to sync")
    results = syncing.run(cfg)
    if args.json:
        out.write(json.dumps([asdict(r) for r in results], indent=1) + "\n")
    else:
        for r in results:
            out.write(
                f"{r.partner}: {'ok' if r.ok else 'FAILED: ' + r.error}"
                f"{f', {r.bytes_sent} bytes sent' if r.pushed else ''}\n"
            )
    return 0 if all(r.ok for r in results) else 1
