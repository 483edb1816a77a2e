"""The one root error type, and the errors each stage raises."""


class LeasednsError(Exception):
    """Root of every error leasedns raises on purpose."""


class ConfigError(LeasednsError):
    """The configuration is wrong; the message names file, line and fix."""


class EventError(LeasednsError):
    """A raw event (spool file, command line) is not a valid DHCP event."""


class ParseError(LeasednsError):
    """An input file (lease file, dhcpd.conf, static data) does not parse."""

    def __init__(self, path: str, line: int, problem: str) -> None:
        super().__init__(f"{path}:{line}: {problem}")
        self.path = path
        self.line = line
        self.problem = problem


class GuardError(LeasednsError):
    """A build would remove too many published names; needs --force."""


class PublishError(LeasednsError):
    """Writing or compiling the tinydns data failed; the old data.cdb still serves."""
