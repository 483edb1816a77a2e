"""`leasedns check`: ask every output what it holds, and each peer's tinydns over DNS, for the
records the merge expects; report who differs."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename

from leasedns.config import Config
from leasedns.errors import ConfigError, PublishError
from leasedns.model import Record
from leasedns.outputs import a_bug, reason

if TYPE_CHECKING:
    from leasedns.outputs import Output

SETTLING_SECS = 5  # records this close to their time-to-die may legitimately differ


@dataclass(slots=True)
class ServerReport:
    """What one tinydns answered."""

    peer: str
    address: str
    asked: int = 0
    wrong: list[str] = field(default_factory=list)
    unreachable: str = ""


def _ask(address: str, qname: str, rdtype: str, timeout: float) -> list[str] | None:
    """The answers (None for NXDOMAIN); raises DNSException when the server does not answer."""
    q = dns.message.make_query(qname, rdtype)
    r = dns.query.udp(q, address, timeout=timeout)
    if r.rcode() == dns.rcode.NXDOMAIN:
        return None
    want = dns.rdatatype.from_text(rdtype)
    return sorted(rd.to_text() for rrset in r.answer if rrset.rdtype == want for rd in rrset)


def check_server(
    peer: str, address: str, records: list[Record], now: float, timeout: float = 2.0
) -> ServerReport:
    """Compare one server's answers with the expected records (A, and PTR where published)."""
    rep = ServerReport(peer, address)
    for r in records:
        if r.ttd is not None and r.ttd - now < SETTLING_SECS:
            continue
        try:
            rep.asked += 1
            got = _ask(address, r.name + ".", "A", timeout)
            if got is None or r.ip not in got:
                rep.wrong.append(f"{r.name} A: expected {r.ip}, got {got or 'NXDOMAIN'}")
            if r.ptr:
                rev = dns.reversename.from_address(r.ip).to_text()
                got = _ask(address, rev, "PTR", timeout)
                if got is None or r.name + "." not in got:
                    rep.wrong.append(f"{r.ip} PTR: expected {r.name}, got {got or 'NXDOMAIN'}")
        except dns.exception.DNSException as e:
            rep.unreachable = f"{address}: {e.__class__.__name__}: {e}"
            break
    return rep


def run(servers: list[tuple[str, str]], records: list[Record]) -> list[ServerReport]:
    """Check every configured server against the same expected records."""
    now = time.time()
    return [check_server(peer, ip, records, now) for peer, ip in servers]


@dataclass(slots=True)
class OutputReport:
    """What one output holds for leasedns, against the merge's dynamic records."""

    output: str
    asked: int = 0  # names compared (those settling left out)
    missing: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)  # names it holds at another address
    stale: list[str] = field(default_factory=list)  # names it holds that the merge has not
    unreachable: str = ""

    @property
    def differences(self) -> list[str]:
        return self.missing + self.wrong + self.stale


def compare_held(
    name: str, held: Iterable[Record], records: Iterable[Record], now: float
) -> OutputReport:
    """Compare what an output holds with the merge's records, by name and address (pure).

    Static records are left out (an output's `held()` lists its dynamic ones only), and
    so is every name whose record ends within SETTLING_SECS: the merge's (an apply may not
    have taken it out yet), or the output's (it stops serving it any moment)."""
    rep = OutputReport(name)
    expected = {r.name: r for r in records if not r.static}
    settling = {n for n, r in expected.items() if r.ttd is not None and r.ttd - now < SETTLING_SECS}
    holds: dict[str, set[str]] = {}
    for r in held:
        if r.static or (r.ttd is not None and r.ttd - now < SETTLING_SECS):
            continue
        holds.setdefault(r.name, set()).add(r.ip)
    for n in sorted(expected.keys() - settling):
        rep.asked += 1
        ip, got = expected[n].ip, holds.get(n)
        if got is None:
            rep.missing.append(f"{n}: missing (expected {ip})")
        elif got != {ip}:
            rep.wrong.append(f"{n}: at {', '.join(sorted(got))}, expected {ip}")
    for n in sorted(holds.keys() - expected.keys()):
        rep.stale.append(f"{n}: stale at {', '.join(sorted(holds[n]))}, not in the merge")
    return rep


def check_outputs(
    outs: Sequence[Output],
    records: Callable[[], Sequence[Record]],
    now: float,
    current: tuple[str, int] | None = None,
) -> list[OutputReport]:
    """Ask every output what it holds (`held()`) and compare with `records()`; one that
    cannot tell is UNREACHABLE with its error, and the others are still asked.

    `current`: the token of the outcome the records are and their number. An output whose
    token is proven by what it holds (`Output.proven`) and is that token holds exactly
    those records: it is not asked (reconcile, on a 100,000-line tinydns data file)."""
    reports = []
    wanted: Sequence[Record] | None = None
    for out in outs:
        try:
            if current and current[0] and out.proven and out.serving().token == current[0]:
                reports.append(OutputReport(out.name, asked=current[1]))
                continue
            held = out.held()
        except (PublishError, OSError) as e:
            reports.append(OutputReport(out.name, unreachable=reason(out.name, e)))
            continue
        except Exception as e:  # a bug in one output: the others are still asked
            reports.append(OutputReport(out.name, unreachable=a_bug(e)))
            continue
        if wanted is None:
            wanted = records()
        reports.append(compare_held(out.name, held, wanted, now))
    return reports


def level(reports: Sequence[ServerReport | OutputReport]) -> int:
    """0 all agree, 1 some answers differ, 2 a server or output does not answer."""
    if any(r.unreachable for r in reports):
        return 2
    return (
        1 if any(r.differences if isinstance(r, OutputReport) else r.wrong for r in reports) else 0
    )


def output_lines(r: OutputReport, limit: int = 20) -> list[str]:
    """One output's lines: its state, then its differences (at most `limit`)."""
    diffs = r.differences
    state = (
        f"UNREACHABLE ({r.unreachable})"
        if r.unreachable
        else f"{len(diffs)} differences over {r.asked} names"
        if diffs
        else f"{r.asked} names ok"
    )
    lines = [f"output {r.output}: {state}"]
    lines += [f"  {d}" for d in diffs[:limit]]
    if len(diffs) > limit:
        lines.append(f"  ... and {len(diffs) - limit} more")
    return lines


def as_text(reports: list[ServerReport], outs: Sequence[OutputReport] = ()) -> str:
    lines = [f"leasedns check {('OK', 'WARNING', 'CRITICAL')[level([*reports, *outs])]}"]
    for o in outs:
        lines += output_lines(o)
    for r in reports:
        state = (
            f"UNREACHABLE ({r.unreachable})"
            if r.unreachable
            else f"{len(r.wrong)} wrong of {r.asked} names"
            if r.wrong
            else f"{r.asked} names ok"
        )
        lines.append(f"{r.peer} {r.address}: {state}")
        lines += [f"  {w}" for w in r.wrong[:20]]
        if len(r.wrong) > 20:
            lines.append(f"  ... and {len(r.wrong) - 20} more")
    return "\n".join(lines) + "\n"


def as_json(reports: list[ServerReport], outs: Sequence[OutputReport]) -> str:
    return (
        json.dumps(
            {
                "level": level([*reports, *outs]),
                "outputs": [asdict(o) for o in outs],
                "servers": [asdict(r) for r in reports],
            },
            indent=1,
        )
        + "\n"
    )


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "check",
        help="ask every output, and each peer's tinydns, for the expected records (exit 0/1/2)",
    )
    p.add_argument(
        "--server",
        action="append",
        metavar="PEER=IP",
        help="a tinydns to ask over DNS as well (default: check.servers in the config)",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=main)
    return p


def main(args: argparse.Namespace, cfg: Config, out: TextIO) -> int:
    """`leasedns check`: exit with the level (0 all agree, 1 answers differ, 2 unreachable)."""
    from leasedns import outputs
    from leasedns.commands import show
    from leasedns.sources import statics

    servers = list(cfg.check_servers)
    for s in args.server or []:
        peer, _, ip = s.partition("=")
        if not ip:
            raise ConfigError(f"--server {s!r}: use PEER=IP")
        servers.append((peer, ip))
    if not servers and not cfg.outputs:
        raise ConfigError(
            f"{cfg.path}: nothing to check: no outputs, no check.servers configured and "
            "no --server given"
        )
    loaded = statics.load(cfg)
    records = list(show.compute(cfg, statics_=loaded).records)
    outs = check_outputs(outputs.configured(cfg, loaded), lambda: records, time.time())
    reports = run(servers, records)
    out.write(as_json(reports, outs) if args.json else as_text(reports, outs))
    return level([*reports, *outs])
