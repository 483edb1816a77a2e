"""`leasedns show`: the merged bindings, who reported each and when, what is published, and
which outputs hold each name (asked of them)."""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from leasedns.config import Config
from leasedns.engine.rules import Result
from leasedns.engine.state import State
from leasedns.errors import PublishError
from leasedns.model import Statics, format_time
from leasedns.names import show_name
from leasedns.outputs import a_bug, reason
from leasedns.sources import statics

if TYPE_CHECKING:
    from leasedns.outputs import Output

log = logging.getLogger("leasedns.show")


def compute(cfg: Config, now: int | None = None, statics_: Statics | None = None) -> Result:
    """What the engine decides from the journals right now (nothing kept, nothing published).

    `statics_`: the static input, when the caller has just read it."""
    now = int(time.time()) if now is None else now
    with State.open(cfg, now, keep=False) as state:
        return state.snapshot(statics.load(cfg) if statics_ is None else statics_)


@dataclass(slots=True)
class Holdings:
    """What each output holds for leasedns, asked of it (`Output.held()`): its dynamic names."""

    outputs: list[str] = field(default_factory=list)  # in the config's order (numbered from 1)
    errors: dict[str, str] = field(default_factory=dict)  # output -> why it could not tell
    pairs: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # output -> (name, ip)

    def holders(self, name: str, ip: str) -> list[str]:
        """The outputs that hold `name` at `ip`."""
        return [o for o in self.outputs if (name, ip) in self.pairs.get(o, ())]


def ask(outs: Sequence[Output]) -> Holdings:
    """Ask every output what it holds; one that cannot tell is noted, the others still asked."""
    h = Holdings()
    for out in outs:
        h.outputs.append(out.name)
        try:
            h.pairs[out.name] = {(r.name, r.ip) for r in out.held()}
        except (PublishError, OSError) as e:
            h.errors[out.name] = reason(out.name, e)
        except Exception as e:  # a bug in one output: the others are still asked
            h.errors[out.name] = a_bug(e)
    return h


def rows(result: Result, holdings: Holdings | None = None) -> list[dict[str, object]]:
    """One row per static host and live binding; with `holdings`, the outputs that hold each
    published dynamic name (`outputs`: None for static hosts, which `held()` does not list)."""
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
                | ({"outputs": None} if holdings is not None else {})
            )
    refused = {id(x.binding): x.reason for x in result.refusals}
    for b in result.bindings:
        name = result.published.get(b.ip, "")
        held = {} if holdings is None else {"outputs": holdings.holders(name, b.ip) if name else []}
        out.append(
            held
            | {
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


def as_json(result: Result, holdings: Holdings | None = None) -> str:
    """JSON lines, one binding each."""
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows(result, holdings))


def as_table(result: Result, holdings: Holdings | None = None) -> str:
    """An aligned table for people; refused names shown with the reason. With `holdings`, a
    column numbers the outputs that hold each published dynamic name ("none": no output
    does), and a legend under the table names the numbers and any output that could not tell."""
    cols: tuple[str, ...] = ("ip", "mac", "name", "peer", "reported", "ends", "note")
    number: dict[str, str] = {}
    if holdings is not None:
        cols = (*cols[:6], "outputs", cols[6])
        number = {name: str(i) for i, name in enumerate(holdings.outputs, 1)}
    data = [[_cell(r, c, number) for c in cols] for r in rows(result, holdings)]
    data = [[cell.encode("ascii", "backslashreplace").decode() for cell in row] for row in data]
    widths = [max([len(c)] + [len(row[i]) for row in data]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in data
    ]
    if holdings is not None:
        lines += [
            f"{number[o]} = {o}"
            + (f": UNREACHABLE ({holdings.errors[o]})" if o in holdings.errors else "")
            for o in holdings.outputs
        ]
    return "\n".join(lines) + "\n"


def _cell(row: dict[str, object], col: str, number: dict[str, str]) -> str:
    """One cell of the table: the outputs column holds the holders' numbers ("none": no
    output holds the name; "": not asked, a static host or a name not published)."""
    if col == "name" and not row["published"]:
        return f"({row['name']!r} not published)"
    if col == "outputs":
        held = row[col]
        if not isinstance(held, list) or not row["published"]:
            return ""
        return ",".join(number[o] for o in held) or "none"
    return str(row[col])


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "show", help="merged bindings: name, address, peer, when, which outputs hold them"
    )
    p.add_argument("--json", action="store_true", help="JSON lines")
    p.add_argument(
        "--no-outputs",
        action="store_true",
        help="do not ask the outputs which names they hold (fast, offline)",
    )
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace, cfg: Config, out: TextIO) -> int:
    """Exit 0, also when an output cannot tell what it holds (the legend, or the log, says so)."""
    from leasedns import outputs

    loaded = statics.load(cfg)
    result = compute(cfg, statics_=loaded)
    holdings = None if args.no_outputs else ask(outputs.configured(cfg, loaded))
    if args.json:
        for name, why in (holdings.errors if holdings else {}).items():
            log.warning("output %s: cannot tell what it holds: %s", name, why)
    out.write(as_json(result, holdings) if args.json else as_table(result, holdings))
    return 0
