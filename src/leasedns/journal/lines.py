"""The journal's line format: one event as one JSON line with sorted keys; every line read is
checked, whoever wrote it (`row_from_json` says what is wrong, never raises anything else).

A line this installation writes to its own journal also carries `sig`, a MAC of the line
without it under this installation's journal key (`signing`): a partner's copy of this
peer's journal can give back only lines this installation wrote (inbox.py). Readers ignore
fields they do not know, so a line with `sig` reads alike everywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re

from leasedns.errors import EventError
from leasedns.model import (
    INFINITE_LEASE,
    KIND_VALUES,
    MAX_NAME_BYTES,
    SOURCES,
    Event,
    Row,
    canonical_ip,
    canonical_mac,
    event_of,
    format_time,
    new_row,
    parse_time,
    short,
)

SIG = "sig"
SIG_HEX = 32  # HMAC-SHA256 cut to 128 bits, in hex
# The longest line `to_line` writes: the name and the host at MAX_NAME_BYTES characters each,
# every one escaped as a surrogate pair (`\ud83d\ude00`, 12 bytes), and the other fields at
# their longest (about 300 bytes). A line read that is longer than MAX_LINE_CHARS, twice
# that and some (room for fields a newer version may add), is no event: reported, never parsed.
LONGEST_LINE = 2 * 12 * MAX_NAME_BYTES + 512
MAX_LINE_CHARS = 1 << 16


def to_line(e: Event, key: bytes | None = None) -> str:
    """The journal form: one canonical JSON object, newline-terminated; with `key`, signed
    (a `sig` field: `signature` of the line without it)."""
    line = json.dumps(
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
            **({"since": format_time(e.since_us)} if e.since_us not in (None, e.time_us) else {}),
        },
        separators=(",", ":"),
        sort_keys=True,
    )
    line += "\n"
    if key is None:
        return line
    # In its sorted place, before "since" (when there is one) or "src": the last keys but
    # "time", whose values (a time, a token) cannot hold the text searched for.
    cut = line.rfind(',"since":' if e.since_us not in (None, e.time_us) else ',"src":')
    return f'{line[:cut]},"{SIG}":"{signature(key, line)}"{line[cut:]}'


def signature(key: bytes, line: str) -> str:
    """The MAC of an unsigned journal line (as `to_line` writes it) under `key`."""
    mac = hmac.digest(key, line.encode("utf-8", "surrogateescape"), hashlib.sha256)
    return mac[: SIG_HEX // 2].hex()


def signed_by(d: object, e: Event, key: bytes) -> bool:
    """Whether a decoded line `d` (read as `e`) carries a valid signature under `key`: the
    line is one this installation wrote, whatever its bytes look like now."""
    sig = d.get(SIG) if isinstance(d, dict) else None
    return (
        type(sig) is str
        and len(sig) == SIG_HEX
        and hmac.compare_digest(sig, signature(key, to_line(e)))
    )


def signed_events(text: str, peer: str, key: bytes) -> set[Event]:
    """The events of complete journal lines that carry a valid signature under `key` (a line
    that does not parse, or is unsigned, is left out: the caller tells them apart)."""
    out = set()
    for line in text.splitlines():
        if len(line) > MAX_LINE_CHARS or SIG not in line:
            continue
        try:
            d = json.loads(line)
            e = event_of(row_from_json(d, peer))
        except (ValueError, EventError):
            continue
        if signed_by(d, e, key):
            out.add(e)
    return out


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


_SOURCE_SET = frozenset(SOURCES)
# A source this version does not know is accepted when it looks like one: a partner
# running a newer leasedns may add a source, and the source is only a label.
_SOURCE_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")
_TIME_CHARS = 64  # longer is no ISO 8601 time (checked before `datetime` sees it)


def row_from_json(d: object, peer: str) -> Row:
    """Validate one decoded journal line; fast when its fields are already canonical.

    Every field is checked for its type and range, so that what passes compares,
    stores and formats like an event `make_event` made: kind one of `Kind`; time
    and since in `TIME_WINDOW`, since not after time; ip a dotted quad; mac six
    octets; name and host strings of at most MAX_NAME_BYTES characters; secs
    null or 0..INFINITE_LEASE; src a short lower-case token; peer, when present,
    the peer whose directory holds the line. Anything else is an `EventError`
    saying what is wrong (`_problem`).
    """
    try:
        k, t, ip, mac = d["kind"], d["time"], d["ip"], d["mac"]  # type: ignore[index]
        name, host, secs = d["name"], d["host"], d["secs"]  # type: ignore[index]
        get = d.get  # type: ignore[attr-defined]
        src, since_s = get("src", "hook"), get("since")
        # The cheap checks in one pass; the rest fail in parse_time (ValueError, TypeError),
        # canonical_ip and canonical_mac (EventError, TypeError). An unhashable value (a
        # JSON array or object) raises TypeError at `in`. `_problem` then says what is wrong.
        if (
            k in KIND_VALUES
            and type(name) is str
            and len(name) <= MAX_NAME_BYTES
            and type(host) is str
            and len(host) <= MAX_NAME_BYTES
            and (secs is None or (type(secs) is int and 0 <= secs <= INFINITE_LEASE))
            and (src in _SOURCE_SET or (type(src) is str and bool(_SOURCE_RE.fullmatch(src))))
            and get("peer", peer) == peer
        ):
            time_us = parse_time(t)
            since = time_us if since_s is None else parse_time(since_s)
            if since <= time_us:
                return new_row(
                    Row,
                    (
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
                    ),
                )
    except (KeyError, TypeError, AttributeError, ValueError):
        pass
    raise EventError(_problem(d, peer))


_FIELDS = ("kind", "time", "ip", "mac", "name", "host", "secs")


def _problem(d: object, peer: str) -> str:
    """What is wrong with a decoded journal line `row_from_json` did not take."""
    if type(d) is not dict:
        return f"not a journal event: a JSON {_json_type(d)}, not an object"
    for f in _FIELDS:
        if f not in d:
            return f"not a journal event: no {f!r} field"
    k = d["kind"]
    if type(k) is not str or k not in KIND_VALUES:
        return f"kind {short(k)} is not commit, release or expiry"
    times: dict[str, int] = {}
    for f in ("time", "since"):
        v = d.get(f)
        if f == "since" and v is None:
            continue
        if type(v) is not str:
            return f"{f} {short(v)} is not a string"
        if len(v) > _TIME_CHARS:
            return f"{f} {short(v)} is not an ISO 8601 time"
        try:
            times[f] = parse_time(v)
        except ValueError as e:
            return f"{f}: {e}"
    if times.get("since", times["time"]) > times["time"]:
        return f"since {d['since']} is after the event's time {d['time']}"
    for f in ("ip", "mac"):
        if type(d[f]) is not str:
            return f"{f} {short(d[f])} is not a string"
    for f in ("name", "host"):
        v = d[f]
        if type(v) is not str:
            return f"{f} {short(v)} is not a string"
        if len(v) > MAX_NAME_BYTES:
            return f"{f} is {len(v)} characters long; at most {MAX_NAME_BYTES}"
    secs = d["secs"]
    if secs is not None and (type(secs) is not int or not 0 <= secs <= INFINITE_LEASE):
        return f"secs {short(secs)} is not a lease length (null or 0..{INFINITE_LEASE} seconds)"
    src = d.get("src", "hook")
    if type(src) is not str or (src not in _SOURCE_SET and not _SOURCE_RE.fullmatch(src)):
        return f"src {short(src)} is not a source like hook, record or reconcile"
    p = d.get("peer", peer)
    if p != peer:
        return (
            f"the line says peer {short(p)} but is in the journal of {peer!r} "
            "(a moved or forged journal?)"
        )
    return "not a journal event"  # not reached: every check of row_from_json is above


def _json_type(v: object) -> str:
    if isinstance(v, list):
        return "array"
    if isinstance(v, str):
        return "string"
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    return "number"
