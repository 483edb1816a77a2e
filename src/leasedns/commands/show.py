"""`leasedns show`: the merged bindings, who reported each and when, and what is published."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, TextIO

from leasedns.config import Config
from leasedns.engine.rules import Result
from leasedns.engine.state import State
from leasedns.model import format_time
from leasedns.names import show_name
from leasedns.sources import statics


def compute(cfg: Config, now: int | None = None) -> Result:
    """What the engine decides from the journals right now (nothing kept, nothing published)."""
    now = int(time.time()) if now is None else now
    with State.open(cfg, now, keep=False) as state:
        return state.snapshot(statics.load(cfg))


def rows(result: Result) -> list[dict[str, object]]:
    """One row per static host and live binding."""
    out: list[dict[str, object]] = []
    for r in result.records:
        if r.static:
            out.append(
                {
                    "ip": r.ip,
                    "mac": "",
                    "name": r.name,
                    "published": True,
                    "peer": "static",
                    "source": "static",
                    "reported": "",
                    "ends": "",
                    "note": "",
                }
            )
    refused = {id(x.binding): x.reason for x in result.refusals}
    for b in result.bindings:
        name = result.published.get(b.ip, "")
        out.append(
            {
                "ip": b.ip,
                "mac": b.mac,
                "name": name or b.name,
                "published": bool(name),
                "peer": b.peer,
                "source": b.source,
                "reported": format_time(b.start_us),
                "ends": "never" if b.end is None else format_time(b.end * 1_000_000),
                "sent": b.name,
                "note": refused.get(id(b), "") or _rewritten(b.name, name),
            }
        )
    return out


def _rewritten(sent: str, published: str) -> str:
    """A note when the published name is not simply the name the client sent."""
    if not published:
        return ""
    plain = sent.lower().rstrip(".")
    if plain in (published, published.split(".", 1)[0]):
        return ""
    return f"sanitized from {show_name(sent)}"


def as_json(result: Result) -> str:
    """JSON lines, one binding each."""
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows(result))


def as_table(result: Result) -> str:
    """An aligned table for people; refused names shown with the reason."""
    cols = ("ip", "mac", "name", "peer", "reported", "ends", "note")
    data = [
        [
            str(r[c]) if c != "name" or r["published"] else f"({r['name']!r} not published)"
            for c in cols
        ]
        for r in rows(result)
    ]
    data = [[cell.encode("ascii", "backslashreplace").decode() for cell in row] for row in data]
    widths = [max([len(c)] + [len(row[i]) for row in data]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in data
    ]
    return "\n".join(lines) + "\n"


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "show", help="merged bindings: name, address, peer, when"
    )
    p.add_argument("--json", action="store_true", help="JSON lines")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace, cfg: Config, out: TextIO) -> int:
    result = compute(cfg)
    out.write(as_json(result) if args.json else as_table(result))
    return 0
