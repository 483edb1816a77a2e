"""DHCP lease events: validation, normalisation, and their journal form (one JSON line)."""

from __future__ import annotations

import enum
import ipaddress
import json
import re
import socket
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
    # When this client's unbroken run of leases on this address began (the first
    # commit it renews), set when the commit is journaled; None: this commit began it.
    # The `first` conflict policy ranks claimants by it, so renewing keeps a name.
    since_us: int | None = None

    @property
    def since(self) -> int:
        """Start of the unbroken run of leases this commit belongs to (microseconds)."""
        return self.time_us if self.since_us is None else self.since_us

    def key(self) -> tuple[object, ...]:
        """A total order over events, used to break every tie the same way on every peer."""
        return (
            self.time_us,
            self.kind.value,
            self.ip,
            self.mac,
            self.client_name,
            self.host_decl,
            -1 if self.lease_secs is None else self.lease_secs,
            self.peer,
            self.source,
            self.since,
        )


# A row is an event as a plain tuple: `Event.key()` without `since`, then whether the lease
# length was absent (the key folds None into -1), then `since`. Rows compare, hash and
# serialise much faster than Events; the merge's aggregates and the saved merge state hold
# rows, and Events are made only for the live bindings.
Row = tuple[int, str, str, str, str, str, int, str, str, bool, int]

_MAC_RE = re.compile(r"^[0-9a-fA-F]{1,2}([:-][0-9a-fA-F]{1,2}){5}$")
_CANON_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
_SECS_RE = re.compile(r"^[0-9]{1,10}$")
_KIND_VALUES = frozenset(k.value for k in Kind)
_KINDS = {k.value: k for k in Kind}


def normalise_mac(raw: str) -> str:
    """`2:0:0:0:1:A` (as dhcpd's binary-to-ascii writes it) -> `02:00:00:00:01:0a`."""
    if not _MAC_RE.match(raw):
        raise EventError(f"MAC {raw!r} is not six hex octets like 02:00:5e:00:53:01")
    return ":".join(f"{int(p, 16):02x}" for p in re.split("[:-]", raw))


def canonical_mac(raw: str) -> str:
    """`normalise_mac`, fast when `raw` is already canonical (as journal lines hold it)."""
    return raw if _CANON_MAC.fullmatch(raw) else normalise_mac(raw)


def canonical_ip(raw: str) -> str:
    """`normalise_ip`, fast when `raw` is already a canonical dotted quad."""
    try:
        if socket.inet_ntoa(socket.inet_aton(raw)) == raw:
            return raw
    except (OSError, ValueError):
        pass
    return normalise_ip(raw)


def ip_int(ip: str) -> int:
    """A canonical dotted quad as a 32-bit integer (for sorting and subnet tests)."""
    return int.from_bytes(socket.inet_aton(ip), "big")


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


def make_event(args: Sequence[bytes | str], time_us: int, peer: str, source: str = "hook") -> Event:
    """Validate the hook's six arguments (EVENT IP MAC CLIENT-NAME HOST-DECL-NAME LEASE-SECS)."""
    if len(args) != 6:
        raise EventError(
            f"expected 6 arguments (EVENT IP MAC CLIENT-NAME HOST-DECL-NAME "
            f"LEASE-SECS), got {len(args)}"
        )
    kind_s, ip_s, mac_s, name, host, secs_s = (_text(a) for a in args)
    try:
        kind = Kind(kind_s)
    except ValueError:
        raise EventError(
            f"unknown event {kind_s[:40]!r}; expected commit, release or expiry"
        ) from None
    ip = normalise_ip(ip_s)
    if not mac_s:
        raise EventError(
            f"{kind.value} {ip} has no MAC; the dhcpd snippet must pass the hardware "
            "address (on expiry: the leasedns-mac saved in on commit)"
        )
    mac = normalise_mac(mac_s)
    secs: int | None = None
    if secs_s:
        if not _SECS_RE.match(secs_s) or int(secs_s) > INFINITE_LEASE:
            raise EventError(f"lease length {secs_s[:40]!r} is not a number of seconds")
        secs = int(secs_s)
    return Event(kind, time_us, ip, mac, name, host, secs, peer, source)


def to_line(e: Event) -> str:
    """The journal form: one canonical JSON object, newline-terminated."""
    return (
        json.dumps(
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
                **(
                    {"since": format_time(e.since_us)}
                    if e.since_us not in (None, e.time_us)
                    else {}
                ),
            },
            separators=(",", ":"),
            sort_keys=True,
        )
        + "\n"
    )


def from_line(line: str, peer: str) -> Event:
    """Parse one journal line (written by `to_line`); the directory names the peer."""
    return event_of(row_from_line(line, peer))


def row_from_line(line: str, peer: str) -> Row:
    """`from_line` as a row."""
    try:
        d = json.loads(line)
    except ValueError as e:
        raise EventError(f"not a journal event: {e}") from None
    return row_from_json(d, peer)


def row_from_json(d: object, peer: str) -> Row:
    """Validate one decoded journal line; fast when its fields are already canonical."""
    try:
        k = d["kind"]  # type: ignore[index]
        if type(k) is not str or k not in _KIND_VALUES:
            k = Kind(k).value
        time_us = parse_time(d["time"])  # type: ignore[index]
        ip, mac = d["ip"], d["mac"]  # type: ignore[index]
        name, host, secs = d["name"], d["host"], d["secs"]  # type: ignore[index]
        src = d.get("src", "hook")  # type: ignore[attr-defined]
        since_s = d.get("since")  # type: ignore[attr-defined]
        since = time_us if since_s is None else parse_time(since_s)
    except (ValueError, KeyError, TypeError) as e:
        raise EventError(f"not a journal event: {e}") from None
    if not (
        isinstance(ip, str)
        and isinstance(mac, str)
        and isinstance(name, str)
        and isinstance(host, str)
        and (secs is None or isinstance(secs, int))
    ):
        raise EventError("not a journal event: a field has the wrong type")
    return (
        time_us,
        k,
        canonical_ip(ip),
        canonical_mac(mac),
        name,
        host,
        -1 if secs is None else secs,
        peer,
        src,
        secs is None,
        since,
    )


def row_of(e: Event) -> Row:
    """An event as a row (see `Row`)."""
    return (
        e.time_us,
        e.kind.value,
        e.ip,
        e.mac,
        e.client_name,
        e.host_decl,
        -1 if e.lease_secs is None else e.lease_secs,
        e.peer,
        e.source,
        e.lease_secs is None,
        e.since,
    )


def event_of(r: Row) -> Event:
    """Inverse of `row_of`."""
    return Event(
        _KINDS[r[1]],
        r[0],
        r[2],
        r[3],
        r[4],
        r[5],
        None if r[9] else r[6],
        r[7],
        r[8],
        None if r[10] == r[0] else r[10],
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_time(time_us: int) -> str:
    """UTC ISO 8601 with microseconds and a Z."""
    s, us = divmod(time_us, 1_000_000)
    return datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{us:06d}Z"


_MINUTES: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM" -> unix microseconds


def parse_time(text: str) -> int:
    """Inverse of `format_time`; accepts any ISO 8601 time with a zone.

    `format_time`'s own form is parsed by slicing, with the minute it starts
    with looked up in a small cache; anything else goes to `datetime`.
    """
    if (
        type(text) is str
        and len(text) == 27
        and text[26] == "Z"
        and text[16] == ":"
        and text[19] == "."
    ):
        ss, us = text[17:19], text[20:26]
        if ss.isascii() and ss.isdigit() and us.isascii() and us.isdigit() and ss < "60":
            base = _MINUTES.get(text[:16])
            if base is None:
                base = _parse_time(text[:16] + ":00.000000Z")
                if len(_MINUTES) >= 65536:
                    _MINUTES.clear()
                _MINUTES[text[:16]] = base
            return base + int(ss) * 1_000_000 + int(us)
    return _parse_time(text)


def _parse_time(text: str) -> int:
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError(f"time {text!r} has no zone")
    delta = dt - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
