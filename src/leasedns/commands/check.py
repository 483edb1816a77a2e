"""`leasedns check`: ask each peer's tinydns for every expected record; report who differs."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import dns.exception
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.reversename

from leasedns.config import Config
from leasedns.errors import ConfigError
from leasedns.model import Record

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


def level(reports: list[ServerReport]) -> int:
    """0 all agree, 1 some answers differ, 2 a server does not answer."""
    if any(r.unreachable for r in reports):
        return 2
    return 1 if any(r.wrong for r in reports) else 0


def as_text(reports: list[ServerReport]) -> str:
    lines = [f"leasedns check {('OK', 'WARNING', 'CRITICAL')[level(reports)]}"]
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


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "check", help="query every peer's tinydns for the expected records (exit 0/1/2)"
    )
    p.add_argument(
        "--server",
        action="append",
        metavar="PEER=IP",
        help="a tinydns to ask (default: check.servers in the config)",
    )
    p.set_defaults(run=main)
    return p


def main(args: argparse.Namespace, cfg: Config, out: TextIO) -> int:
    """`leasedns check`: exit with the level (0 all agree, 1 answers differ, 2 unreachable)."""
    from leasedns.commands import show

    servers = list(cfg.check_servers)
    for s in args.server or []:
        peer, _, ip = s.partition("=")
        if not ip:
            raise ConfigError(f"--server {s!r}: use PEER=IP")
        servers.append((peer, ip))
    if not servers:
        raise ConfigError(f"{cfg.path}: no check.servers configured and no --server given")
    reports = run(servers, list(show.compute(cfg).records))
    out.write(as_text(reports))
    return level(reports)
