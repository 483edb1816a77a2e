"""The command line: argparse, one call per command, errors turned into exit codes here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import asdict
from typing import TextIO

from . import __version__
from .errors import ConfigError, EventError, LeasednsError

# Modules only some commands need (config: PyYAML and dnspython; the merge engine; events;
# logging and json, which `leases` never uses) are imported where those commands run: a
# whole `leasedns leases` run on a small file is mostly start-up.

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class _HelpFormatter(argparse.HelpFormatter):
    """Fills in the default config path when help is shown, not each time the parser is built
    (it is config's, and importing config costs more than a small `leasedns leases`)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text is None or "@DEFAULT_PATH@" not in text:
            return text
        from .config import DEFAULT_PATH

        return text.replace("@DEFAULT_PATH@", DEFAULT_PATH)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="leasedns",
        description="Publish DHCP clients' names from both ISC dhcpd failover peers in tinydns.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument(
        "-c", "--config", help="config file (default: $LEASEDNS_CONFIG or @DEFAULT_PATH@)"
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="say more (twice: debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="errors only")
    from .leases import PARSER

    p.add_argument(
        "--version",
        action="version",
        version=f"leasedns {__version__} (lease parser: {PARSER})",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    a = sub.add_parser("apply", help="journal spooled events, merge all peers, publish data.cdb")
    a.add_argument(
        "--force", action="store_true", help="publish even if the mass-delete guard objects"
    )
    a.add_argument("--from-hook", action="store_true", help=argparse.SUPPRESS)

    r = sub.add_parser("record", help="journal one event given as arguments, then apply")
    r.add_argument("event", help="commit, release or expiry")
    r.add_argument("ip")
    r.add_argument("mac")
    r.add_argument("client_name", nargs="?", default="")
    r.add_argument("host_decl", nargs="?", default="")
    r.add_argument("lease_secs", nargs="?", default="")
    r.add_argument(
        "--time",
        help="event time, ISO 8601 with zone (default: now); at most build.clock_skew_secs "
        "ahead, journal.max_lease_secs + journal.compact_grace_secs back",
    )
    r.add_argument("--no-apply", action="store_true", help="journal only, do not build")

    s = sub.add_parser("show", help="merged bindings: name, address, peer, when")
    s.add_argument("--json", action="store_true", help="JSON lines")

    st = sub.add_parser("status", help="spool, journals per peer, last build (exit 0/1/2)")
    st.add_argument("--json", action="store_true")

    rc = sub.add_parser("reconcile", help="compare with dhcpd.leases and dhcpd.conf; repair drift")
    mode = rc.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="report only (exit 0/1/2)")
    mode.add_argument("--fix", action="store_true", help="journal corrections and build (default)")
    rc.add_argument(
        "--force",
        action="store_true",
        help="remove stale names even when the lease files look empty, damaged or much fewer",
    )
    rc.add_argument("--json", action="store_true")

    sy = sub.add_parser("sync", help="push this peer's journal to its partners, wake them up")
    sy.add_argument("--json", action="store_true")

    ck = sub.add_parser(
        "check", help="query every peer's tinydns for the expected records (exit 0/1/2)"
    )
    ck.add_argument(
        "--server",
        action="append",
        metavar="PEER=IP",
        help="a tinydns to ask (default: check.servers in the config)",
    )

    sn = sub.add_parser("dhcpd-snippet", help="print the dhcpd.conf hook snippet for this install")
    sn.add_argument("--hook", help="hook path (default: dhcpd-event beside this leasedns)")

    from . import cmd_leases

    cmd_leases.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point: returns the exit code (0 ok, 1 failure or warning, 2 usage/config/critical)."""
    # Given neither, main is the whole process (the `leasedns` program): a command may then
    # end it itself rather than return to a caller.
    whole_process = argv is None and out is None
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    hook = getattr(args, "from_hook", False)
    if args.command != "leases":  # it logs nothing: problems go to stderr as path:line
        from . import logs

        logs.setup(-1 if args.quiet else args.verbose, stderr=not hook)
    try:
        return _run(args, out, whole_process)
    except ConfigError as e:
        print(f"leasedns: {e}", file=sys.stderr)
        return EXIT_USAGE
    except LeasednsError as e:
        print(f"leasedns: {e}", file=sys.stderr)
        return EXIT_FAIL


def _run(args: argparse.Namespace, out: TextIO, whole_process: bool = False) -> int:
    if args.command == "dhcpd-snippet":
        out.write(snippet(args.hook))
        return EXIT_OK
    if args.command == "leases":
        from . import cmd_leases

        return cmd_leases.run(args, out, exit_when_done=whole_process)
    from . import config

    cfg = config.load(args.config)
    if args.command == "apply":
        from . import apply

        report = apply.run(cfg, force=args.force, coalesce=args.from_hook)
        if not args.from_hook and not args.quiet:
            out.write(
                f"{report.ingested} new events, {report.rejected} rejected, "
                f"{report.records} records ({report.dynamic} dynamic), "
                f"{report.refused} names refused, "
                f"{'compiled' if report.compiled else 'data unchanged'}\n"
                if report.ok
                else ""
            )
        return EXIT_OK if report.ok else EXIT_FAIL
    if args.command == "record":
        from . import apply
        from .events import parse_time

        try:
            t = parse_time(args.time) if args.time else None
        except ValueError as e:
            raise ConfigError(f"--time: {e}") from None
        ev_args = [args.event, args.ip, args.mac, args.client_name, args.host_decl, args.lease_secs]
        try:
            apply.record(cfg, ev_args, t)
        except EventError as e:
            print(f"leasedns: record: {e}", file=sys.stderr)
            return EXIT_USAGE
        if args.no_apply:
            return EXIT_OK
        return EXIT_OK if apply.run(cfg).ok else EXIT_FAIL
    if args.command == "show":
        from . import show

        result = show.compute(cfg)
        out.write(show.as_json(result) if args.json else show.as_table(result))
        return EXIT_OK
    if args.command == "reconcile":
        from . import reconcile

        drift = reconcile.run(cfg, fix=not args.check, force=args.force)
        out.write(
            reconcile.as_json(drift) if args.json else reconcile.as_text(drift, not args.check)
        )
        return drift.level if args.check else (2 if drift.held or drift.problems else 0)
    if args.command == "sync":
        import json

        from . import sync

        if not cfg.partners:
            raise ConfigError(f"{cfg.path}: no sync.partners configured; nothing to sync")
        results = sync.run(cfg)
        if args.json:
            out.write(json.dumps([asdict(r) for r in results], indent=1) + "\n")
        for r in results:
            if not args.json:
                out.write(
                    f"{r.partner}: {'ok' if r.ok else 'FAILED: ' + r.error}"
                    f"{f', {r.bytes_sent} bytes sent' if r.pushed else ''}\n"
                )
        return EXIT_OK if all(r.ok for r in results) else EXIT_FAIL
    if args.command == "check":
        from . import check, show

        servers = list(cfg.check_servers)
        for s in args.server or []:
            peer, _, ip = s.partition("=")
            if not ip:
                raise ConfigError(f"--server {s!r}: use PEER=IP")
            servers.append((peer, ip))
        if not servers:
            raise ConfigError(f"{cfg.path}: no check.servers configured and no --server given")
        reports = check.run(servers, list(show.compute(cfg).records))
        out.write(check.as_text(reports))
        return check.level(reports)
    if args.command == "status":
        import json

        from . import status

        st = status.gather(cfg)
        out.write(json.dumps(asdict(st), indent=1) + "\n" if args.json else status.as_text(cfg, st))
        return st.level
    raise AssertionError(args.command)  # pragma: no cover


def snippet(hook: str | None = None) -> str:
    """The dhcpd.conf snippet with the hook path filled in."""
    from importlib import resources
    from pathlib import Path

    if hook is None:  # installed beside the interpreter of this virtualenv
        hook = str(Path(sys.executable).parent / "dhcpd-event")
    text = resources.files("leasedns").joinpath("templates/dhcpd-hooks.conf").read_text()
    return text.replace("@HOOK@", hook)
