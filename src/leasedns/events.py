"""DHCP lease events: validation, normalisation, and their journal form (one JSON line)."""

from __future__ import annotations

import enum
import ipaddress
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import EventError

MAX_NAME_BYTES = 1024  # DHCP options hold at most 255; longer is hostile and is cut here
INFINITE_LEASE = 0xFFFFFFFF
SOURCES = ("hook", "record", "reconcile")


class Kind(enum.Enum):
    """What happened to a lease."""

    COMMIT = "commit"
    RELEASE = "release"
    EXPIRY = "expiry"


@dataclass(frozen=True, slots=True)
class Event:
    """One lease event as a peer saw it. `time_us` is UTC unix microseconds."""

    kind: Kind
    time_us: int
    ip: str
    mac: str
    client_name: str
    host_decl: str
    lease_secs: int | None
    peer: str
    source: str = "hook"

    def key(self) -> tuple[object, ...]:
        """A total order over events, used to break every tie the same way on every peer."""
        return (
            self.time_us, self.kind.value, self.ip, self.mac, self.client_name,
            self.host_decl, -1 if self.lease_secs is None else self.lease_secs,
            self.peer, self.source,
        )


_MAC_RE = re.compile(r"^[0-9a-fA-F]{1,2}([:-][0-9a-fA-F]{1,2}){5}$")
_SECS_RE = re.compile(r"^[0-9]{1,10}$")


def normalise_mac(raw: str) -> str:
    """`2:0:0:0:1:A` (as dhcpd's binary-to-ascii writes it) -> `02:00:00:00:01:0a`."""
    if not _MAC_RE.match(raw):
        raise EventError(f"MAC {raw!r} is not six hex octets like 02:00:5e:00:53:01")
    return ":".join(f"{int(p, 16):02x}" for p in re.split("[:-]", raw))


def normalise_ip(raw: str) -> str:
    """A dotted-quad IPv4 address, strictly (no leading zeros, no shorthand)."""
    try:
        return str(ipaddress.IPv4Address(raw))
    except ValueError:
        raise EventError(f"IP {raw!r} is not an IPv4 address") from None


def _text(raw: bytes | str) -> str:
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogateescape")
    return raw[:MAX_NAME_BYTES].decode("utf-8", "surrogateescape")


def make_event(
    args: Sequence[bytes | str], time_us: int, peer: str, source: str = "hook"
) -> Event:
    """Validate the hook's six arguments (EVENT IP MAC CLIENT-NAME HOST-DECL-NAME LEASE-SECS)."""
    if len(args) != 6:
        raise EventError(f"expected 6 arguments (EVENT IP MAC CLIENT-NAME HOST-DECL-NAME "
                         f"LEASE-SECS), got {len(args)}")
    kind_s, ip_s, mac_s, name, host, secs_s = (_text(a) for a in args)
    try:
        kind = Kind(kind_s)
    except ValueError:
        raise EventError(f"unknown event {kind_s[:40]!r}; expected commit, release or expiry") from None
    ip = normalise_ip(ip_s)
    if not mac_s:
        raise EventError(f"{kind.value} {ip} has no MAC; the dhcpd snippet must pass the hardware "
                         "address (on expiry: the leasedns-mac saved in on commit)")
    mac = normalise_mac(mac_s)
    secs: int | None = None
    if secs_s:
        if not _SECS_RE.match(secs_s) or int(secs_s) > INFINITE_LEASE:
            raise EventError(f"lease length {secs_s[:40]!r} is not a number of seconds")
        secs = int(secs_s)
    return Event(kind, time_us, ip, mac, name, host, secs, peer, source)


def to_line(e: Event) -> str:
    """The journal form: one canonical JSON object, newline-terminated."""
    return json.dumps(
        {
            "kind": e.kind.value,
            "time": format_time(e.time_us),
            "ip": e.ip,
            "mac": e.mac,
            "name": e.client_name,
            "host": e.host_decl,
            "secs": e.lease_secs,
            "peer": e.peer,
            "src": e.source,
        },
        separators=(",", ":"),
        sort_keys=True,
    ) + "\n"


def from_line(line: str, peer: str) -> Event:
    """Parse one journal line (written by `to_line`); the directory names the peer."""
    try:
        d = json.loads(line)
        kind = Kind(d["kind"])
        time_us = parse_time(d["time"])
        ip, mac = d["ip"], d["mac"]
        name, host, secs, src = d["name"], d["host"], d["secs"], d.get("src", "hook")
    except (ValueError, KeyError, TypeError) as e:
        raise EventError(f"not a journal event: {e}") from None
    if not (isinstance(ip, str) and isinstance(mac, str) and isinstance(name, str)
            and isinstance(host, str) and (secs is None or isinstance(secs, int))):
        raise EventError("not a journal event: a field has the wrong type")
    return Event(kind, time_us, normalise_ip(ip), normalise_mac(mac), name, host, secs, peer, src)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_time(time_us: int) -> str:
    """UTC ISO 8601 with microseconds and a Z."""
    s, us = divmod(time_us, 1_000_000)
    return datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{us:06d}Z"


def parse_time(text: str) -> int:
    """Inverse of `format_time`; accepts any ISO 8601 time with a zone."""
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError(f"time {text!r} has no zone")
    delta = dt - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
