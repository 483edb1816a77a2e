"""Parse ISC dhcpd.leases files: the last block per address, damage reported as path:line."""

from __future__ import annotations

import calendar
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from operator import attrgetter
from typing import NamedTuple

from leasedns.errors import ParseError
from leasedns.fsutil import gc_paused, open_input, too_big
from leasedns.model import ip_key, ip_keys
from leasedns.sources.dhcpd import tokens
from leasedns.sources.dhcpd.tokens import Tok

__all__ = [
    "PARSER",
    "FailoverState",
    "Lease",
    "LeaseFile",
    "OmapiHost",
    "address_key",
    "address_keys",
    "in_force",
    "live_leases",
    "newest_per_address",
    "parse_leases",
    "read_leases",
]


class Lease(NamedTuple):
    """The last `lease ADDR { ... }` block of one address in one file.

    A NamedTuple rather than a frozen dataclass on purpose: a 100,000-lease file builds
    100,000 of these, and a frozen dataclass's __init__ (one object.__setattr__ per field)
    alone costs more than the whole rest of the parse. It is just as immutable.
    Times are unix seconds (UTC); None means absent or `never`.
    `state` is the binding state as dhcpd reads it (parse_lease_declaration): `bootp` and
    `reserved` are `active`; a bare `abandoned;` is `abandoned`; a block with neither is
    `active` when it has an `ends` (live until then, like any active lease: dhcpd calls it
    active while ends is in the future, else free) and `free` when it has none.
    """

    ip: str
    starts: int | None
    ends: int | None
    cltt: int | None
    tstp: int | None
    tsfp: int | None
    atsfp: int | None
    state: str
    next_state: str | None
    rewind_state: str | None
    mac: str | None  # normalised: zero-padded lowercase aa:bb:cc:dd:ee:ff
    uid: bytes | None
    client_hostname: str | None  # decoded as UTF-8 with surrogateescape
    set_vars: tuple[tuple[str, str], ...]  # quoted values decoded, others as written
    options: tuple[tuple[str, str], ...]  # ("agent.circuit-id", "..."), as written
    abandoned: bool  # state == "abandoned"
    path: str
    line: int


@dataclass(frozen=True, slots=True)
class OmapiHost:
    """A `host NAME { ... }` block that OMAPI wrote into the lease file."""

    name: str
    mac: str | None
    fixed_addresses: tuple[str, ...]
    deleted: bool
    dynamic: bool
    path: str
    line: int


@dataclass(frozen=True, slots=True)
class FailoverState:
    """A `failover peer "NAME" state { ... }` block (the last one per peer)."""

    peer: str
    my_state: str | None
    my_since: int | None
    partner_state: str | None
    partner_since: int | None
    mclt: int | None
    line: int


@dataclass(frozen=True, slots=True)
class LeaseFile:
    """One parsed dhcpd.leases: what dhcpd itself would load, plus what was wrong."""

    path: str
    leases: tuple[Lease, ...]  # one per address, the last block wins, in order of those blocks
    hosts: tuple[OmapiHost, ...]  # one per name, the last block wins (deleted ones included)
    failover_states: tuple[FailoverState, ...]
    problems: tuple[ParseError, ...]
    ia_blocks: int  # DHCPv6 ia-na/ia-ta/ia-pd blocks seen (parsed for syntax, not kept)


# --- time -----------------------------------------------------------------------------------


class _MinuteSeconds(dict[str, int]):
    """ "YYYY/MM/DD HH:MM" (UTC) -> unix seconds, computed once per distinct minute."""

    def __missing__(self, key: str) -> int:
        # imported here, not at the top: the C scanner computes times itself, and calendar
        # (datetime with it) is over a millisecond of every `leasedns leases` run otherwise

        date, _, hm = key.partition(" ")
        y, mo, d = (int(x) for x in date.split("/"))
        h, mi = (int(x) for x in hm.split(":"))
        if not 1 <= mo <= 12 or not 1 <= d <= calendar.monthrange(y, mo)[1] or h > 23 or mi > 59:
            raise ValueError(f"no such time {key}")
        value = calendar.timegm((y, mo, d, h, mi, 0, 0, 0, 0))
        if len(self) > 100_000:  # a file spanning years; keep the cache bounded
            self.clear()
        self[key] = value
        return value


class _Seconds(dict[str, int]):
    """ "SS" -> int; dhcpd writes 00-60 (60 for a leap second)."""

    def __missing__(self, key: str) -> int:
        value = int(key)
        if value > 60:
            raise ValueError(f"no such second {key}")
        self[key] = value
        return value


# Module-level caches: both are pure functions of their key, so sharing them is safe.
_MINUTES = _MinuteSeconds()
_SECS = _Seconds()
_DATE_RE = re.compile(r"\d{4}/\d\d?/\d\d?\Z")
_HMS_RE = re.compile(r"(\d\d?:\d\d?):(\d\d?)\Z")
_OFFSET_RE = re.compile(r"-?[0-9]{1,10}\Z")


def _time_value(words: list[str]) -> int | None:
    """Convert the words of a time statement (`W Y/M/D H:M:S [OFFSET]`, `epoch N`, `never`).

    OFFSET is what dhcpd's parse_date_core reads after the time: seconds it adds to it (an
    int there, so at most 10 digits; dhcpd itself writes none)."""
    if words == ["never"]:
        return None
    if len(words) == 2 and words[0] == "epoch" and words[1].isdigit():
        return int(words[1])
    hms = _HMS_RE.match(words[2]) if len(words) in (3, 4) else None
    offset = words[3] if len(words) == 4 else "0"
    if (
        hms
        and words[0].isdigit()
        and _DATE_RE.match(words[1])
        and _OFFSET_RE.match(offset)
        and abs(int(offset)) < 2**31
    ):
        # the caches raise ValueError for 2024/02/30 and the like
        return _MINUTES[f"{words[1]} {hms.group(1)}"] + _SECS[hms.group(2)] + int(offset)
    raise ValueError(
        f"bad time {' '.join(words)!r}; expected 'W YYYY/MM/DD HH:MM:SS', 'epoch N' or 'never'"
    )


# --- strings --------------------------------------------------------------------------------

# Quoted strings are decoded by tokens.unquote (bytes) and tokens.as_text (text).

_HEX_LIST = re.compile(r"[0-9a-fA-F]{1,2}(?::[0-9a-fA-F]{1,2})*\Z")


def _hex_bytes(word: str) -> bytes:
    """`01:2:ab` -> bytes; dhcpd drops leading zeros in some places, so 1 or 2 digits."""
    if not _HEX_LIST.match(word):
        raise ValueError(f"{word!r} is neither a quoted string nor colon-separated hex")
    return bytes(int(x, 16) for x in word.split(":"))


def _mac(word: str) -> str:
    """Normalise a hardware address: zero-padded lowercase, colon-separated."""
    return ":".join(f"{b:02x}" for b in _hex_bytes(word))


# --- the fast path: blocks exactly as dhcpd writes them -----------------------------------

# A quoted string on one line, written "unrolled" so the regex engine runs tight loops
# instead of an alternation per character (3x faster over a 30 MB file).
_QBODY = r'[^"\\\n]*(?:\\.[^"\\\n]*)*'
# Groups: "YYYY/MM/DD HH:MM" and "SS". Both caches then hit nearly always (a file spans a few
# days: some thousand minutes; 60 seconds), where a cache of whole times would mostly miss.
# The date is exactly YYYY/MM/DD as print_time() writes it: a looser [0-9/]{10} let the fast
# path accept 2024/5/010, which the general path (and so the tests' reference) refuses.
_TIME = r"(?:\d ([0-9]{4}/[0-9]{2}/[0-9]{2} [0-9]{2}:[0-9]{2}):([0-9]{2})|never);\n"
# One match per lease for the layout write_lease() produces (server/db.c): statements in its
# fixed order, two-space indent, one per line. A block that deviates at all (epoch times, hex
# uid, comments, hand edits, damage) does not match and goes to the general tokenizer below,
# which reads the same statements the same way; the tests check that both agree.
# _leasescan.c (beside this file) reads exactly this grammar too: change one, change the
# other (tests/test_leasescan.py compares the C scanner with this path).
_FAST = re.compile(
    r"^lease ([0-9.]{7,15}) \{\n"
    r"(?:  starts " + _TIME + r")?"
    r"(?:  ends " + _TIME + r")?"
    r"(?:  tstp " + _TIME + r")?"
    r"(?:  tsfp " + _TIME + r")?"
    r"(?:  atsfp " + _TIME + r")?"
    r"(?:  cltt " + _TIME + r")?"
    r"  binding state ([a-z-]+);\n"
    r"(?:  next binding state ([a-z-]+);\n)?"
    r"(?:  rewind binding state ([a-z-]+);\n)?"
    r"(?:  hardware ethernet ([0-9a-f]{2}(?::[0-9a-f]{2}){5});\n)?"
    r'(?:  uid "(' + _QBODY + r')";\n)?'
    r'((?:  set [A-Za-z0-9_.-]+ = (?:"' + _QBODY + r'"|[0-9a-fA-F:]+|%-?\d+|true|false);\n)*)'
    r"((?:  option agent\.[a-z-]+ [^;\n]*;\n)*)"
    r'(?:  client-hostname "(' + _QBODY + r')";\n)?'
    # `on expiry or release { ... }` etc.: dhcpd indents their statements by 4 or more, so
    # the first line that is exactly "  }" closes the block. Their contents are not kept.
    r"(?:  on [a-z ]+ \{\n(?:    [^\n]*\n)*  \}\n)*"
    r"\}\n?",
    re.M,
)
# The binding states dhcpd knows (parse_lease_declaration), each to the state it reads it as:
# `bootp` and `reserved` are kept "for compatibleness with older versions" and are active.
# A block with any other word there is dropped by dhcpd, so by both paths here too. The
# values are interned: 100,000 leases share a handful of strings instead of holding one each.
# src/leasedns/sources/dhcpd/_leasescan.c has the same table (STATE_WORD).
_STATES = {
    **{s: s for s in ("abandoned", "active", "backup", "expired", "free", "released", "reset")},
    "bootp": "active",
    "reserved": "active",
}
_SET_ITEM = re.compile(r'  set ([^ ]+) = ("' + _QBODY + r'"|[^;]*);\n')
_OPTION_ITEM = re.compile(r"  option ([^ ]+) ([^;\n]*);\n")


def _set_value(raw: str) -> str:
    return tokens.as_text(raw[1:-1]) if raw[:1] == '"' else raw


# --- the general path: everything else, token by token (tokens.tokenize) ------------------

# Words that only ever start a top-level statement. Seeing one at the start of a line inside a
# block means that block was cut off: dhcpd resumes there, and so do we.
_TOP_WORDS = frozenset(
    {
        "lease",
        "host",
        "failover",
        "ia-na",
        "ia-ta",
        "ia-pd",
        "server-duid",
        "authoring-byte-order",
        "lease-id-format",
        "group",
        "class",
        "subclass",
    }
)
_TIME_WORDS = ("starts", "ends", "cltt", "tstp", "tsfp", "atsfp")
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(_OCTET + r"(?:\." + _OCTET + r"){3}\Z")


class _Damage(Exception):
    """Raised inside the general parser; turned into a problem, never escapes."""

    def __init__(self, pos: int, problem: str, resume: int | None = None) -> None:
        super().__init__(problem)
        self.pos = pos
        self.problem = problem
        self.resume = resume  # token index to go on from, when not "after this block"


Stmt = list[Tok]


class _Acc:
    """Everything one file yields, in file order; shared by the fast and general paths."""

    def __init__(self, text: str, path: str) -> None:
        self.text = text  # the chunk being parsed; positions are offsets into it
        self.path = path
        self.leases: dict[str, Lease] = {}
        self.hosts: dict[str, OmapiHost] = {}
        self.failover: dict[str, FailoverState] = {}
        self.problems: list[ParseError] = []
        self.ia_blocks = 0
        # Line numbers by counting newlines forward from the last position asked for. Every
        # chunk starts with the char before its first line (a newline at the start of the file),
        # so offset 0 is on "line 0" of the first chunk.
        self._pos = 0
        self._line = 0

    def next_chunk(self, keep: int) -> None:
        """Count lines up to the last `keep` chars, which start the next chunk, and let go of
        this chunk's text (the caller sets the next one)."""
        self.line_at(len(self.text) - keep)
        self._pos = 0
        self.text = ""

    def line_at(self, pos: int) -> int:
        if pos < self._pos:  # rare (a problem found after reading ahead): count back
            return self._line - self.text.count("\n", pos, self._pos)
        self._line += self.text.count("\n", self._pos, pos)
        self._pos = pos
        return self._line

    def problem(self, pos: int, problem: str) -> None:
        self.problems.append(ParseError(self.path, self.line_at(pos), problem))

    def add_lease(self, lease: Lease) -> None:
        # pop first so the dict keeps the order of the winning blocks
        self.leases.pop(lease.ip, None)
        self.leases[lease.ip] = lease


def _at_line_start(text: str, pos: int) -> bool:
    return pos == 0 or text[pos - 1] == "\n"


def _statement(
    text: str, toks: list[Tok], i: int, opener: int, top: bool = False
) -> tuple[Stmt, int]:
    """Read one statement from toks[i]: words up to `;`, or up to a balanced `{ ... }`.

    Returns the statement's tokens (a nested block's contents are dropped, its `{` kept as
    a marker) and the index after it. `opener` is the position of the enclosing block.
    """
    stmt: Stmt = []
    n = len(toks)
    while i < n:
        t = toks[i]
        if t.kind == "bad":
            raise _Damage(t.pos, "unterminated string (cut off?); skipped")
        if (
            t.kind == "w"
            and t.text in _TOP_WORDS
            and _at_line_start(text, t.pos)
            and (stmt or not top)
        ):
            raise _Damage(opener, "block is not closed (cut off?); skipped", resume=i)
        if t.text == ";" and t.kind == "p":
            return stmt, i + 1
        if t.text == "{" and t.kind == "p":
            stmt.append(t)
            return stmt, _skip_block(text, toks, i + 1, opener)
        if t.text == "}" and t.kind == "p":
            if stmt:
                raise _Damage(stmt[0].pos, f"statement '{stmt[0].text}' is missing its ';'")
            return stmt, i  # caller sees the closing brace
        stmt.append(t)
        i += 1
    raise _Damage(opener, "block is not closed (cut off?); skipped", resume=n)


def _skip_block(text: str, toks: list[Tok], i: int, opener: int) -> int:
    """Skip a nested `{ ... }` whose `{` is just before toks[i]; a top-level word at the start
    of a line inside it means it was cut off."""
    j, closed = tokens.skip_block(
        toks, i, lambda t: t.kind == "w" and t.text in _TOP_WORDS and _at_line_start(text, t.pos)
    )
    if closed:
        return j
    if j < len(toks) and toks[j].kind == "bad":
        raise _Damage(toks[j].pos, "unterminated string (cut off?); skipped")
    raise _Damage(opener, "block is not closed (cut off?); skipped", resume=j)


def _body(text: str, toks: list[Tok], i: int, opener: int) -> tuple[list[Stmt], int]:
    """Statements of a block whose `{` is just before toks[i]; returns index after `}`."""
    stmts: list[Stmt] = []
    while True:
        if i < len(toks) and toks[i].kind == "p" and toks[i].text == "}":
            return stmts, i + 1
        stmt, i = _statement(text, toks, i, opener)
        if stmt:
            stmts.append(stmt)


def _words(stmt: Stmt, start: int) -> list[str]:
    return [t.text for t in stmt[start:]]


def _string_or_hex(t: Tok) -> bytes:
    return tokens.unquote(t.text[1:-1]) if t.kind == "s" else _hex_bytes(t.text)


def _value_text(t: Tok) -> str:
    return tokens.as_text(t.text[1:-1]) if t.kind == "s" else t.text


def _binding_state(word: str) -> str:
    """The state dhcpd reads for `binding state WORD` (its keywords ignore case)."""
    state = _STATES.get(word.lower())
    if state is None:
        raise ValueError(f"no binding state {word!r} (dhcpd knows {', '.join(sorted(_STATES))})")
    return state


# client-hostname without quotes: parse_host_name's dotted names (letters, digits, - and _).
_HOST_NAME = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?\Z")


def _lease(acc: _Acc, ip: str, stmts: list[Stmt], pos: int) -> Lease:
    line = acc.line_at(pos)
    times: dict[str, int | None] = {}
    state = next_state = rewind_state = None
    mac = hostname = None
    uid: bytes | None = None
    sets: list[tuple[str, str]] = []
    options: list[tuple[str, str]] = []
    for st in stmts:
        w = st[0].text
        try:
            if w in _TIME_WORDS:
                times[w] = _time_value(_words(st, 1))
            elif w == "binding" and len(st) == 3 and st[1].text == "state":
                state = _binding_state(st[2].text)
            elif (
                w in ("next", "rewind")
                and len(st) == 4
                and _words(st, 1)[:2] == ["binding", "state"]
            ):
                if w == "next":
                    next_state = _binding_state(st[3].text)
                else:
                    rewind_state = _binding_state(st[3].text)
            elif w == "hardware" and len(st) == 3:
                mac = _mac(st[2].text)
            elif w == "uid" and len(st) == 2:
                uid = _string_or_hex(st[1])
            elif w == "client-hostname" and len(st) == 2 and st[1].kind == "s":
                hostname = tokens.as_text(st[1].text[1:-1])
            elif w == "client-hostname" and len(st) == 2 and _HOST_NAME.match(st[1].text):
                hostname = st[1].text
            elif w == "set" and len(st) == 4 and st[2].text == "=":
                sets.append((st[1].text, _value_text(st[3])))
            elif w == "option" and len(st) >= 3:
                options.append((st[1].text, " ".join(t.text for t in st[2:])))
            elif w == "vendor-class-identifier" and len(st) == 2:
                options.append((w, _value_text(st[1])))
            elif w == "abandoned" and len(st) == 1:
                state = "abandoned"  # dhcpd's older form of `binding state abandoned;`
            elif w in (
                "on",
                "reserved",
                "dynamic-bootp",
                "billing",
                "ddns-fwd-name",
                "ddns-rev-name",
                "ddns-txt",
                "ddns-dhcid",
                "ddns-client-fqdn",
            ):
                pass  # valid dhcpd statements that say nothing about who holds the address
            else:
                acc.problem(
                    st[0].pos,
                    f"lease {ip}: statement '{' '.join(_words(st, 0))}' not understood; ignored",
                )
        except ValueError as e:
            raise _Damage(st[0].pos, f"lease {ip}: {w}: {e}; lease skipped") from None
    if state is None:
        # dhcpd makes one up: active if ends is ahead (live_leases checks that against now),
        # else free; without `ends` its ends is 0, so free.
        state = "active" if "ends" in times else "free"
    return Lease(
        ip,
        times.get("starts"),
        times.get("ends"),
        times.get("cltt"),
        times.get("tstp"),
        times.get("tsfp"),
        times.get("atsfp"),
        state,
        next_state,
        rewind_state,
        mac,
        uid,
        hostname,
        tuple(sets),
        tuple(options),
        state == "abandoned",
        acc.path,
        line,
    )


def _host(acc: _Acc, name: str, stmts: list[Stmt], pos: int) -> OmapiHost:
    line = acc.line_at(pos)
    mac = None
    addrs: list[str] = []
    deleted = dynamic = False
    for st in stmts:
        w = st[0].text
        try:
            if w == "hardware" and len(st) == 3:
                mac = _mac(st[2].text)
            elif w == "fixed-address":
                addrs.extend(t.text for t in st[1:] if t.text != ",")
            elif w == "deleted":
                deleted = True
            elif w == "dynamic":
                dynamic = True
        except ValueError as e:
            raise _Damage(st[0].pos, f"host {name}: {w}: {e}; host skipped") from None
    return OmapiHost(name, mac, tuple(addrs), deleted, dynamic, acc.path, line)


def _failover(acc: _Acc, peer: str, stmts: list[Stmt], pos: int) -> FailoverState:
    line = acc.line_at(pos)
    states: dict[str, tuple[str, int | None]] = {}
    mclt = None
    for st in stmts:
        ws = _words(st, 0)
        try:
            # `my state normal at 1 2024/05/01 10:00:00;`
            if len(ws) >= 5 and ws[1] == "state" and ws[3] == "at" and ws[0] in ("my", "partner"):
                states[ws[0]] = (ws[2], _time_value(ws[4:]))
            elif ws[0] == "mclt" and len(ws) == 2 and ws[1].isdigit():
                mclt = int(ws[1])
        except ValueError as e:
            raise _Damage(st[0].pos, f"failover peer {peer}: {e}; block skipped") from None
    my = states.get("my", (None, None))
    partner = states.get("partner", (None, None))
    return FailoverState(peer, my[0], my[1], partner[0], partner[1], mclt, line)


def _parse_region(acc: _Acc, start: int, end: int) -> None:
    """Parse text[start:end] statement by statement, recovering from damage."""
    text = acc.text
    toks = tokens.tokenize(text, start, end, multiline_strings=False)
    i, n = 0, len(toks)
    while i < n:
        t = toks[i]
        head = i
        try:
            if t.kind != "w":
                if t.kind == "bad":
                    raise _Damage(t.pos, "unterminated string (cut off?); skipped")
                raise _Damage(t.pos, f"unexpected '{t.text}' at top level; skipped", resume=i + 1)
            try:
                stmt, j = _statement(text, toks, i, t.pos, top=True)
            except _Damage as d:
                # name the block that is damaged: "lease 192.0.2.9: block is not closed"
                what = " ".join(x.text for x in toks[i : i + 2] if x.text != "{")
                raise _Damage(d.pos, f"{what}: {d.problem}", d.resume) from None
            if j == i:  # _statement stopped at a '}' straight away
                raise _Damage(t.pos, "unexpected '}' at top level; skipped", resume=j + 1)
            try:
                _top_statement(acc, toks, i, stmt)
            except _Damage as d:
                # the block itself was whole: go on right after it
                raise _Damage(d.pos, d.problem, j) from None
            i = j
        except _Damage as d:
            acc.problem(d.pos, d.problem)
            i = d.resume if d.resume is not None else _resync(text, toks, head + 1)


def _top_statement(acc: _Acc, toks: list[Tok], i: int, stmt: Stmt) -> None:
    """Act on one complete top-level statement starting at toks[i]."""
    text = acc.text
    t = toks[i]
    kind = t.text
    has_block = stmt[-1].text == "{" and stmt[-1].kind == "p"
    if kind in ("lease", "host", "failover") and has_block:
        # _statement only skipped the block; read its statements now
        brace = len(stmt) - 1
        stmts, _ = _body(text, toks, i + brace + 1, t.pos)
        if kind == "lease":
            if brace != 2 or not _IPV4.match(stmt[1].text):
                raise _Damage(t.pos, "expected 'lease A.B.C.D {'; block skipped")
            acc.add_lease(_lease(acc, stmt[1].text, stmts, t.pos))
        elif kind == "host":
            if brace != 2:
                raise _Damage(t.pos, "expected 'host NAME {'; block skipped")
            name = _value_text(stmt[1])
            h = _host(acc, name, stmts, t.pos)
            acc.hosts.pop(name, None)
            acc.hosts[name] = h
        else:
            ws = _words(stmt, 0)
            if brace != 4 or ws[1] != "peer" or ws[3] != "state" or stmt[2].kind != "s":
                raise _Damage(t.pos, "expected 'failover peer \"NAME\" state {'; block skipped")
            peer = tokens.as_text(ws[2][1:-1])
            acc.failover.pop(peer, None)
            acc.failover[peer] = _failover(acc, peer, stmts, t.pos)
    elif kind in ("ia-na", "ia-ta", "ia-pd") and has_block:
        acc.ia_blocks += 1
    elif kind in ("lease", "host", "failover", "ia-na", "ia-ta", "ia-pd"):
        raise _Damage(t.pos, f"'{kind}' without a block; skipped")
    elif kind not in _TOP_WORDS:  # the rest of them dhcpd reads and leasedns needs not
        acc.problem(t.pos, f"unknown top-level statement '{kind}'; skipped")


def _resync(text: str, toks: list[Tok], i: int) -> int:
    """Index of the next top-level word at the start of a line: where dhcpd would go on."""
    n = len(toks)
    while i < n:
        t = toks[i]
        if t.kind == "w" and t.text in _TOP_WORDS and _at_line_start(text, t.pos):
            return i
        i += 1
    return n


# --- the fast path in C ---------------------------------------------------------------------

# _leasescan.scan reads the blocks _FAST matches, the same way, and builds the Leases itself;
# it hands every other region back here. It is an optional build: without it (no
# compiler when installed, or LEASEDNS_PURE_PYTHON=1) the regex path above does the same work.
_Scan = Callable[
    [str, int, int, int, dict[str, Lease], str, type[Lease]],
    tuple[int, int, int, int, int] | None,
]
# The module also writes `leases --json`'s lines (cmd_leases.format_json); it is loaded here
# so that one switch (LEASEDNS_PURE_PYTHON) turns off all of it.
_JsonLines = Callable[[list[Lease], type[Lease], int | None], str | None]


def _load_scan() -> tuple[_Scan | None, _JsonLines | None, str]:
    if os.environ.get("LEASEDNS_PURE_PYTHON"):
        return None, None, "pure Python, LEASEDNS_PURE_PYTHON is set"
    try:
        from leasedns.sources.dhcpd._leasescan import json_lines, scan
    except ImportError:
        return None, None, "pure Python, leasedns.sources.dhcpd._leasescan not built"
    return scan, json_lines, "C, leasedns.sources.dhcpd._leasescan"


# PARSER says which path runs (`leasedns --version`); tests switch paths through _scan (and
# cmd_leases._json_lines).
_scan, _json_lines, PARSER = _load_scan()


def _scan_chunk(acc: _Acc, scan: _Scan) -> int | None:
    """_parse_chunk's loop over the fast blocks, done by the C scanner; None if it declines."""
    text = acc.text
    pos = 1
    while True:
        r = scan(text, pos, acc._pos, acc._line, acc.leases, acc.path, Lease)
        if r is None:  # text holds a char above U+00FF: not a latin-1 decoded file
            return None
        a, b, pos, acc._pos, acc._line = r
        if a == b:
            return pos
        _parse_region(acc, a, b)


# --- the entry points -----------------------------------------------------------------------


def parse_leases(text: str, path: str) -> LeaseFile:
    """Parse the text of a dhcpd.leases file (decode files as latin-1: one char per byte).

    Never raises for damage: each problem is a ParseError in `problems`, the damaged block is
    skipped and parsing goes on at the next top-level statement, as dhcpd does on startup.
    """
    # A big file makes ~10**5 tuples that all survive and hold no cycles.
    with gc_paused():
        return _parse(text, path)


def _parse_chunk(acc: _Acc, final: bool) -> int:
    """Parse acc.text from offset 1 (offset 0 is the char before it, or a newline).

    Returns the offset up to which the text is done with: the end of the last block dhcpd
    wrote whole, or the end of the text when `final`. The rest waits for the next chunk, so
    a block cut by a chunk boundary is read whole.
    """
    text = acc.text
    done = None if _scan is None else _scan_chunk(acc, _scan)
    pos = done if done is not None else _match_chunk(acc)
    if final:
        if text[pos:].strip():
            _parse_region(acc, pos, len(text))
        return len(text)
    return pos


def _match_chunk(acc: _Acc) -> int:
    """The pure-Python fast path: the lease blocks _FAST matches, other regions to the general
    parser. Returns the offset after the last block matched."""
    text = acc.text
    # Locals, not globals, in the loop that runs once per lease.
    mins, secs, unquote, as_text = _MINUTES, _SECS, tokens.unquote, tokens.as_text
    states = _STATES
    set_items, option_items = _SET_ITEM.findall, _OPTION_ITEM.findall
    new_lease, add, line_at, path = Lease, acc.add_lease, acc.line_at, acc.path
    pos = 1
    for m in _FAST.finditer(text, 1):
        start = m.start()
        if start != pos and text[pos:start].strip():
            _parse_region(acc, pos, start)
        (
            ip,
            s_m,
            s_s,
            e_m,
            e_s,
            tp_m,
            tp_s,
            tf_m,
            tf_s,
            at_m,
            at_s,
            c_m,
            c_s,
            state,
            nxt,
            rew,
            mac,
            uid,
            sets,
            opts,
            host,
        ) = m.groups()
        try:
            lease = new_lease(
                ip,
                mins[s_m] + secs[s_s] if s_m else None,
                mins[e_m] + secs[e_s] if e_m else None,
                mins[c_m] + secs[c_s] if c_m else None,
                mins[tp_m] + secs[tp_s] if tp_m else None,
                mins[tf_m] + secs[tf_s] if tf_m else None,
                mins[at_m] + secs[at_s] if at_m else None,
                states[state],  # KeyError: a state dhcpd does not know
                nxt and states[nxt],
                rew and states[rew],
                mac,
                None if uid is None else unquote(uid),
                None if host is None else as_text(host),
                tuple([(k, _set_value(v)) for k, v in set_items(sets)]) if sets else (),
                tuple(option_items(opts)) if opts else (),
                state == "abandoned",
                path,
                line_at(start),
            )
            if not _IPV4.match(ip):
                raise ValueError(ip)
        except (KeyError, ValueError):
            # a date like 2024/02/30, an address like 1.2.3.999, an unknown binding state:
            # let the general parser read the block and say what is wrong with it
            _parse_region(acc, start, m.end())
        else:
            add(lease)
        pos = m.end()
    return pos


def _finish(acc: _Acc) -> LeaseFile:
    acc.problems.sort(key=lambda p: p.line)
    return LeaseFile(
        acc.path,
        tuple(acc.leases.values()),
        tuple(acc.hosts.values()),
        tuple(acc.failover.values()),
        tuple(acc.problems),
        acc.ia_blocks,
    )


def _parse(text: str, path: str) -> LeaseFile:
    acc = _Acc("\n" + text, path)
    _parse_chunk(acc, final=True)
    return _finish(acc)


_CHUNK = 1 << 20
# A lease file is dhcpd's (or a partner's copy): read only when a regular file, and never
# more than this (dhcpd.leases holds about 300 bytes a lease: over 3 million leases).
MAX_LEASE_FILE_BYTES = 1 << 30


def _read(path: str) -> LeaseFile:
    acc = _Acc("\n", path)
    rest = bytearray(b"\n")
    # One buffer for every chunk, and the last chunk's text let go before the next is decoded:
    # two chunk-sized objects alive at a time, not four (this is a good part of the peak).
    buf = bytearray()
    total = 0
    with os.fdopen(open_input(path, MAX_LEASE_FILE_BYTES), "rb") as f:
        while True:
            keep = len(rest)
            if len(buf) < keep + _CHUNK:
                buf = bytearray(keep + _CHUNK + (64 << 10))
            buf[:keep] = rest
            acc.next_chunk(keep)
            with memoryview(buf) as view:
                n = f.readinto(view[keep : keep + _CHUNK]) or 0
                total += n
                if total > MAX_LEASE_FILE_BYTES:  # dhcpd appends while it is read: bounded
                    raise too_big(path, MAX_LEASE_FILE_BYTES)
                # latin-1 maps each byte to one char: lossless, and a chunk never splits a char
                text = str(view[: keep + n], "latin-1")
            acc.text = text
            done = _parse_chunk(acc, final=n == 0)
            if n == 0:
                return _finish(acc)
            if done == 1 and len(text) > 4 * _CHUNK:
                # No block in dhcpd's own layout for megabytes (epoch times, hand-written):
                # hand what ends at the last "}" line to the general parser, or every later
                # chunk would rescan all of it.
                cut = text.rfind("\n}\n") + 3
                if cut > 3:
                    _parse_region(acc, 1, cut)
                    done = cut
            rest = buf[done - 1 : keep + n]  # keep the char before, for the regex's ^


def read_leases(path: str) -> LeaseFile:
    """Read and parse one lease file, 1 MiB at a time so a 30 MB file never sits in memory
    whole. The same result as parse_leases(). OSError propagates: unreadable is not damage;
    so does InputFileError: not a regular file, or over MAX_LEASE_FILE_BYTES."""
    with gc_paused():  # see parse_leases
        return _read(path)


_NEVER = 2**63


def _recency(lease: Lease) -> tuple[int, int, int, int, str, str, int]:
    """Sort key: most recently started first; on a tie an ended state beats an active one
    (a release keeps `starts`), then later ends, later cltt; path and line make it total."""
    return (
        -1 if lease.starts is None else lease.starts,
        0 if lease.state == "active" else 1,
        _NEVER if lease.ends is None else lease.ends,
        -1 if lease.cltt is None else lease.cltt,
        lease.mac or "",
        lease.path,
        lease.line,
    )


def newest_per_address(files: Iterable[LeaseFile]) -> Iterator[Lease]:
    """Per address, the lease block across all files that started last (see _recency)."""
    files = list(files)
    if len(files) == 1:  # a file already holds one lease per address
        return iter(files[0].leases)
    # The key is needed only where files overlap: computing it for every lease of two peers'
    # 100,000-lease files cost more than the C scanner's whole parse.
    best: dict[str, Lease] = {}
    for lf in files:
        setdefault = best.setdefault
        for lease in lf.leases:
            old = setdefault(lease.ip, lease)
            if old is not lease and _recency(lease) > _recency(old):
                best[lease.ip] = lease
    return iter(best.values())


def live_leases(files: Iterable[LeaseFile], now: int, *, by_address: bool = True) -> list[Lease]:
    """Leases in force at `now`: per address the most recently started block across files,
    kept only if it is active and not past its end. Sorted by address (by_address=False:
    in newest_per_address's order, for a caller that sorts what it makes of them instead)."""
    live = in_force(newest_per_address(files), now)
    if by_address:
        live.sort(key=address_key)
    return live


def in_force(leases: Iterable[Lease], now: int) -> list[Lease]:
    """Those of `leases` in force at `now`: active, and not past their end. (The C
    accelerator's json_lines makes the same test: change one, change the other.)"""
    return [
        lease
        for lease in leases
        if lease.state == "active" and (lease.ends is None or lease.ends > now)
    ]


def address_key(lease: Lease) -> int:
    """Sort key: the address as a number (model.ip_key); every Lease.ip is a valid dotted quad."""
    return ip_key(lease.ip)


_IP = attrgetter("ip")


def address_keys(leases: Iterable[Lease]) -> list[int]:
    """address_key of each lease, made by C code alone: no Python call per lease."""
    return ip_keys(map(_IP, leases))
