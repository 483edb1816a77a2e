"""The types every stage shares: events and rows, times and addresses in canonical form, the
policies, static input, the merge settings, and what the engine hands the outputs."""

from __future__ import annotations

import enum
import ipaddress
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from socket import inet_aton
from typing import NamedTuple, Protocol

from leasedns.errors import EventError

MAX_NAME_BYTES = 1024  # DHCP options hold at most 255; longer is hostile and is cut here
INFINITE_LEASE = 0xFFFFFFFF
SOURCES = ("hook", "record", "reconcile")
# Every time leasedns keeps (journal lines, event files, --time) lies in this window
# (UTC unix microseconds, the end excluded): a clock or a line outside it is wrong, and
# every time in it formats and parses the same everywhere.
PEER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")  # whole name: use fullmatch
PEER_RULE = "at most 63 letters, digits, '-' or '_', starting with a letter or digit"
MIN_TIME_US = 0  # 1970-01-01T00:00:00Z
MAX_TIME_US = 4_102_444_800_000_000  # 2100-01-01T00:00:00Z
TIME_WINDOW = "1970-01-01T00:00:00Z .. 2100-01-01T00:00:00Z"


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


class Row(NamedTuple):
    """An event as a tuple: `Event.key()` without `since`, then whether the lease length was
    absent (the key folds None into -1), then `since`.

    Rows compare, hash and serialise much faster than Events; the merge's aggregates and
    the saved merge state hold rows, and Events are made only for the live bindings. The
    field order is the tuple order and must stay so: rows compare as tuples (the greatest
    commit of an address is the greatest row, see `engine.rules.Aggregates`), and they are
    stored and checked column by column in that order (`engine.cache`). A row equals,
    hashes and compares like the plain tuple of its values. Where many rows are made, make
    them with `new_row`; and unlike plain tuples, rows stay tracked by the garbage
    collector, so do not hold many at once without need (see `journal.parse_segment`).
    """

    t: int  # time_us
    kind: str  # Kind's value
    ip: str
    mac: str
    client: str  # client_name
    host: str  # host_decl
    secs: int  # lease_secs, -1 when absent
    peer: str
    source: str
    no_secs: bool  # the event gave no lease length (lease_secs None): the default applies
    since: int  # Event.since: when the unbroken run of leases began (= t if it began here)


# `new_row(Row, (t, kind, ...))` makes a row as `Row(t, kind, ...)` does, at the cost of a
# C call: Row's own __new__ is a Python function, and a cold build makes a row per journal
# event. The values are not type-checked: keep them in field order.
new_row = tuple.__new__

_MAC_RE = re.compile(r"^[0-9a-fA-F]{1,2}([:-][0-9a-fA-F]{1,2}){5}$")
_CANON_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
KIND_VALUES = frozenset(k.value for k in Kind)
_KINDS = {k.value: k for k in Kind}


def valid_peer(name: str) -> bool:
    """True for a peer name config, journal readers and sync all accept (see PEER_RE): it names
    a journal directory, so never `.`, `..`, a hidden name or a path."""
    return PEER_RE.fullmatch(name) is not None


def normalise_mac(raw: str) -> str:
    """`2:0:0:0:1:A` (as dhcpd's binary-to-ascii writes it) -> `02:00:00:00:01:0a`."""
    if not _MAC_RE.match(raw):
        raise EventError(f"MAC {short(raw)} is not six hex octets like 02:00:5e:00:53:01")
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


def ip_key(ip: str) -> int:
    """An IPv4 address as a number, to sort or mask by (192.0.2.9 < 192.0.2.10).

    `ip` must be a canonical dotted quad (normalise_ip's form), as every address leasedns
    holds is: events and journal lines are normalised on the way in, the lease parsers and
    the dhcpd.conf reader take nothing else. It is not checked again here: two C calls, where
    a tuple of ints made by a generator cost more than parsing the lease file.
    """
    return int.from_bytes(inet_aton(ip), "big")


def reverse_name(ip: str) -> str:
    """The PTR name of an address: `192.0.2.7` -> `7.2.0.192.in-addr.arpa`."""
    return ".".join(reversed(ip.split("."))) + ".in-addr.arpa"


def reverse_address(name: str) -> str | None:
    """The address a PTR name (no trailing dot) is of; None for any other name."""
    if not name.endswith(".in-addr.arpa"):
        return None
    parts = name[: -len(".in-addr.arpa")].split(".")
    if len(parts) != 4:
        return None
    try:
        return str(ipaddress.IPv4Address(".".join(reversed(parts))))
    except ValueError:
        return None


def ip_keys(ips: Iterable[str]) -> list[int]:
    """ip_key of each address, made by C code alone: no Python call per address."""
    return list(map(int.from_bytes, map(inet_aton, ips)))


def normalise_ip(raw: str) -> str:
    """A dotted-quad IPv4 address, strictly (no leading zeros, no shorthand)."""
    try:
        return str(ipaddress.IPv4Address(raw))
    except ValueError:
        raise EventError(f"IP {short(raw)} is not an IPv4 address") from None


def short(v: object) -> str:
    """`repr` of a value for a message, at most about 60 characters whatever its size."""
    if isinstance(v, str) and len(v) > 40:
        return f"{v[:40]!r}... ({len(v)} characters)"
    if isinstance(v, (list, dict)):
        return f"(a JSON {'array' if isinstance(v, list) else 'object'})"
    r = repr(v)
    return r if len(r) <= 60 else f"{r[:60]}..."


def row_of(e: Event) -> Row:
    """An event as a row (see `Row`)."""
    secs = e.lease_secs
    return new_row(
        Row,
        (
            e.time_us,
            e.kind.value,
            e.ip,
            e.mac,
            e.client_name,
            e.host_decl,
            -1 if secs is None else secs,
            e.peer,
            e.source,
            secs is None,
            e.since,
        ),
    )


def event_of(r: Row) -> Event:
    """Inverse of `row_of`."""
    return Event(
        _KINDS[r.kind],
        r.t,
        r.ip,
        r.mac,
        r.client,
        r.host,
        None if r.no_secs else r.secs,
        r.peer,
        r.source,
        None if r.since == r.t else r.since,
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_time(time_us: int) -> str:
    """UTC ISO 8601 with microseconds and a Z; never raises (shows any int).

    A time outside what `datetime` can show (years 1..9999) comes out as
    `invalid-time(<microseconds>)`; only `TIME_WINDOW` is ever kept, but a time
    is often shown to say what is wrong with it.
    """
    s, us = divmod(time_us, 1_000_000)
    try:
        return datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{us:06d}Z"
    except (OverflowError, OSError, ValueError):
        return f"invalid-time({time_us})"


_MINUTES: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM" -> unix microseconds


def parse_time(text: str) -> int:
    """Inverse of `format_time`; accepts any ISO 8601 time with a zone in `TIME_WINDOW`.

    `format_time`'s own form is parsed by slicing, with the minute it starts
    with looked up in a small cache; anything else goes to `datetime`. Raises
    ValueError for anything else. (The window's ends are whole minutes, so the
    check of the minute covers every second in it.)
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
                try:
                    base = _parse_time(text[:16] + ":00.000000Z")
                except ValueError:
                    return _parse_time(text)  # fails too, in its own words
                if len(_MINUTES) >= 65536:
                    _MINUTES.clear()
                _MINUTES[text[:16]] = base
            return base + int(ss) * 1_000_000 + int(us)
    return _parse_time(text)


def _parse_time(text: str) -> int:
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        raise ValueError(f"{text!r} has no zone")
    delta = dt - _EPOCH
    us = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    if not MIN_TIME_US <= us < MAX_TIME_US:
        raise ValueError(f"{text!r} is outside {TIME_WINDOW}")
    return us


# --- policies, static input and the merge settings ----------------------------------------


class NamePolicy(enum.Enum):
    """What to do with characters a DNS label may not hold."""

    SANITIZE = "sanitize"
    STRICT = "strict"


class ConflictPolicy(enum.Enum):
    """Which live dynamic binding keeps a name several clients claim."""

    LATEST = "latest"
    FIRST = "first"


@dataclass(frozen=True, slots=True)
class StaticHost:
    """A name the admin declared (dhcpd.conf fixed-address host): always published, always wins."""

    name: str  # FQDN, lowercase, no trailing dot
    ip: str
    where: str  # file:line it came from


@dataclass(frozen=True, slots=True)
class Statics:
    """Everything static the merge needs."""

    data_files: tuple[tuple[str, str], ...] = ()  # (path, text): copied verbatim into `data`
    names: frozenset[str] = frozenset()  # FQDNs the static data defines
    ptr_ips: frozenset[str] = frozenset()  # addresses the static data gives a PTR
    hosts: tuple[StaticHost, ...] = ()
    problems: tuple[str, ...] = field(default=(), compare=False)

    @property
    def taken(self) -> frozenset[str]:
        """Names no client may claim."""
        return self.names | {h.name for h in self.hosts}


class _MergeConfig(Protocol):
    """The part of `config.Config` the merge settings come from (read only)."""

    @property
    def domain(self) -> str: ...

    @property
    def subnets(self) -> tuple[ipaddress.IPv4Network, ...]: ...

    @property
    def name_policy(self) -> NamePolicy: ...

    @property
    def conflict_policy(self) -> ConflictPolicy: ...

    @property
    def protected(self) -> frozenset[str]: ...

    @property
    def reverse(self) -> bool: ...

    @property
    def default_lease_secs(self) -> int: ...

    @property
    def clock_skew_secs(self) -> int: ...

    @property
    def ttl(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Settings:
    """The part of the config the merge depends on."""

    domain: str
    subnets: tuple[ipaddress.IPv4Network, ...] = ()
    name_policy: NamePolicy = NamePolicy.SANITIZE
    conflict_policy: ConflictPolicy = ConflictPolicy.LATEST
    protected: frozenset[str] = frozenset()
    reverse: bool = True
    default_lease_secs: int = 3600
    # An event dated more than this after "now" is held back until then (a peer's clock
    # running ahead, a mistyped `record --time`): it takes effect when its time comes.
    clock_skew_secs: int = 30
    ttl: int = 300  # of the static records; dynamic ones die at their lease end

    @classmethod
    def from_config(cls, cfg: _MergeConfig) -> Settings:
        return cls(
            cfg.domain,
            cfg.subnets,
            cfg.name_policy,
            cfg.conflict_policy,
            cfg.protected,
            cfg.reverse,
            cfg.default_lease_secs,
            cfg.clock_skew_secs,
            cfg.ttl,
        )

    def horizon(self, now: int) -> int:
        """The latest event time (microseconds) in effect at `now` (unix seconds)."""
        return (now + self.clock_skew_secs) * 1_000_000


# --- what the engine decides, and hands the outputs ------------------------------------------


@dataclass(frozen=True, slots=True)
class Binding:
    """A live lease: the winning commit for its address, not ended, not expired."""

    ip: str
    mac: str
    start_us: int
    end: int | None  # unix seconds the lease ends; None for an infinite lease
    name: str  # the raw name it asks for (host declaration name, else client name)
    peer: str
    source: str
    commit: Event


@dataclass(frozen=True, slots=True)
class Record:
    """One line of tinydns data: A (+PTR) for name -> ip, dying at `ttd` when set."""

    name: str
    ip: str
    ttd: int | None
    ptr: bool
    static: bool


@dataclass(frozen=True, slots=True)
class Refusal:
    """A live binding that publishes nothing, and why."""

    binding: Binding
    reason: str


@dataclass(slots=True)
class Changes:
    """How the dynamic records changed from the outcome `base` to the outcome `token`.

    An output that serves `base` applies these and then serves `token`. With
    `base` "" they are not known (a first or full resolve): an output then
    serves the whole outcome instead. `before` counts the live dynamic records
    of `base` (for the mass-delete guard; None when not known).
    """

    base: str
    token: str
    added: list[Record] = field(default_factory=list)
    removed: list[Record] = field(default_factory=list)
    changed: list[tuple[Record, Record]] = field(default_factory=list)  # (before, after)
    before: int | None = None

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def note(self, was: Record | None, now: Record | None) -> None:
        """Count one name's record going from `was` to `now` (None: no record)."""
        if was == now:
            return
        if was is None:
            assert now is not None
            self.added.append(now)
        elif now is None:
            self.removed.append(was)
        else:
            self.changed.append((was, now))


@dataclass(frozen=True, slots=True)
class Desired:
    """The whole outcome, for an output that serves it from scratch."""

    static: Sequence[Record]  # the fixed-address hosts' records
    dynamic: Callable[[], list[Record]]  # by name; read only when an output needs them all
    # The time (unix seconds) the outcome is for.
    now: int = 0
    # The newest event time (microseconds) known for an address, 0 when none: an output that
    # shares its server with another writer (the partner) tells by it whether a record
    # there was made from an event this peer has seen.
    seen: Callable[[str], int] = lambda _ip: 0
    # The operator accepted this outcome as the whole truth (`apply --force` after a lost
    # journal): no partner's news is awaited, so an output never keeps a record for the events
    # this peer may not have seen yet; it brings its server to exactly this outcome.
    final: bool = False


@dataclass(frozen=True, slots=True)
class Serving:
    """What an output serves: the outcome (its token; "" when not known) and its records."""

    token: str
    records: Callable[[], list[Record]]  # its dynamic records, read when asked for
