"""The hook's six arguments (EVENT IP MAC CLIENT-NAME HOST-DECL-NAME LEASE-SECS) -> an Event."""

from __future__ import annotations

import re
from collections.abc import Sequence

from leasedns.errors import EventError
from leasedns.model import (
    INFINITE_LEASE,
    MAX_NAME_BYTES,
    MAX_TIME_US,
    MIN_TIME_US,
    TIME_WINDOW,
    Event,
    Kind,
    format_time,
    normalise_ip,
    normalise_mac,
)

_SECS_RE = re.compile(r"^[0-9]{1,10}$")


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
    if not MIN_TIME_US <= time_us < MAX_TIME_US:
        raise EventError(
            f"event time {format_time(time_us)} is outside {TIME_WINDOW}; is the clock set?"
        )
    return Event(kind, time_us, ip, mac, name, host, secs, peer, source)
