"""The command line: parses, sets up logging, loads the config, calls the command; errors turned
into exit codes here. Each command's arguments and work are in its module under commands/."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from leasedns import __version__
from leasedns.errors import ConfigError, LeasednsError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

# The commands, in the order help lists them, and the module of each: its add_parser(subparsers)
# adds the command and its arguments and sets `run` (and `needs_config=False` for the commands
# that read no config and log nothing). A module is imported only when its command is given, or
# for the full help: most import the config (PyYAML, dnspython), the merge engine or logging,
# and a whole `leasedns leases` run on a small file is mostly start-up.
COMMANDS = {
    "apply": "leasedns.commands.apply",
    "record": "leasedns.commands.record",
    "show": "leasedns.commands.show",
    "status": "leasedns.commands.status",
    "reconcile": "leasedns.commands.reconcile",
    "sync": "leasedns.commands.sync",
    "partner-access": "leasedns.commands.partner_access",
    "check": "leasedns.commands.check",
    "dhcpd-snippet": "leasedns.commands.snippet",
    "leases": "leasedns.commands.leases",
}

if TYPE_CHECKING:
    _SubParsersAction = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    _SubParsersAction = argparse._SubParsersAction


class _Commands(_SubParsersAction):
    """The subcommands of COMMANDS, each added by its module when first needed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the names, known before their modules are imported (argparse only tests membership)
        self.choices = COMMANDS  # type: ignore[assignment]

    def load(self, name: str) -> argparse.ArgumentParser:
        if name not in self._name_parser_map:
            __import__(COMMANDS[name], fromlist=["add_parser"]).add_parser(self)
        return self._name_parser_map[name]

    def load_all(self) -> None:
        for name in COMMANDS:
            self.load(name)
        order = list(COMMANDS)
        self._choices_actions.sort(key=lambda a: order.index(a.dest))

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        assert values is not None and not isinstance(values, str)
        self.load(values[0])  # a name of COMMANDS: argparse checked it against the choices
        super().__call__(parser, namespace, values, option_string)


class _Parser(argparse.ArgumentParser):
    """The top-level parser: its help lists every command, so it imports every command's module
    (only then)."""

    commands: _Commands | None = None

    def format_help(self) -> str:
        if self.commands is not None:
            self.commands.load_all()
        return super().format_help()


class _HelpFormatter(argparse.HelpFormatter):
    """Fills in the default config path when help is shown, not each time the parser is built
    (it is config's, and importing config costs more than a small `leasedns leases`)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text is None or "@DEFAULT_PATH@" not in text:
            return text
        from leasedns.config import DEFAULT_PATH

        return text.replace("@DEFAULT_PATH@", DEFAULT_PATH)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="leasedns",
        description="Publish DHCP clients' names from both ISC dhcpd failover peers in tinydns.",
        formatter_class=_HelpFormatter,
    )
    p.add_argument(
        "-c", "--config", help="config file (default: $LEASEDNS_CONFIG or @DEFAULT_PATH@)"
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="say more (twice: debug)")
    p.add_argument("-q", "--quiet", action="store_true", help="errors only")
    from leasedns.sources.dhcpd.leases import PARSER

    p.add_argument(
        "--version",
        action="version",
        version=f"leasedns {__version__} (lease parser: {PARSER})",
    )
    commands = p.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        action=_Commands,
        parser_class=argparse.ArgumentParser,
    )
    assert isinstance(commands, _Commands)
    p.commands = commands
    return p


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point: returns the exit code (0 ok, 1 failure or warning, 2 usage/config/critical)."""
    # Given neither, main is the whole process (the `leasedns` program): a command may then
    # end it itself rather than return to a caller.
    whole_process = argv is None and out is None
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    needs_config = getattr(args, "needs_config", True)
    if needs_config:
        from leasedns import logs

        hook = getattr(args, "from_hook", False)
        logs.setup(-1 if args.quiet else args.verbose, stderr=not hook)
    try:
        if not needs_config:
            # ... and a command that takes no config may end the process itself
            args.whole_process = whole_process
            rc: int = args.run(args, out)
            return rc
        from leasedns import config

        rc = args.run(args, config.load(args.config), out)
        return rc
    except ConfigError as e:
        print(f"leasedns: {e}", file=sys.stderr)
        return EXIT_USAGE
    except LeasednsError as e:
        print(f"leasedns: {e}", file=sys.stderr)
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
