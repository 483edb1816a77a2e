"""RFC 2136 UPDATE messages written as bytes, and signed with TSIG (RFC 8945).

The rfc2136 output sends thousands of small, regular changes: each name is created (with the
prerequisite that it is not in use) or replaced or deleted (with the prerequisite that it
holds exactly the records believed), always an A or PTR record and its TXT marker. Writing
those few record shapes straight into the wire form costs a small fraction of building them
as general DNS objects, which matters when a whole zone is loaded at once. Names are written
relative to the zone (a compression pointer to the zone section) and, in the update
section, as a pointer to the same name in the prerequisite section; a message never exceeds
the size it is given, so it always fits TCP's 64 KiB.
"""

from __future__ import annotations

import secrets
import socket
import struct
import time
from dataclasses import dataclass

import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.tsig

A, PTR, TXT, SOA, TSIG, ANY = 1, 12, 16, 6, 250, 255
CLASS_IN, CLASS_NONE, CLASS_ANY = 1, 254, 255
FLAGS_UPDATE = 5 << 11
MAX_WIRE = 65535
TSIG_ROOM = 512  # the signature's record: key name (255), algorithm name, a MAC of up to 64 bytes
_POINTER_MAX = 0x3FFF
_TYPES = {"A": A, "PTR": PTR}


class BadName(ValueError):
    """A name that does not fit DNS (a label over 63 bytes, or over 255 in all)."""


def name_wire(name: str) -> bytes:
    """`name` (no trailing dot) as uncompressed labels ending with the root."""
    out = bytearray()
    for label in name.split("."):
        b = label.encode("ascii")
        if not 0 < len(b) <= 63:
            raise BadName(f"{name}: a label of {len(b)} bytes")
        out.append(len(b))
        out += b
    out.append(0)
    if len(out) > 255:
        raise BadName(f"{name}: {len(out)} bytes in all")
    return bytes(out)


def rdata_wire(rdtype: str, value: str) -> bytes:
    if rdtype == "A":
        return socket.inet_aton(value)
    if rdtype == "PTR":
        return name_wire(value)
    raise ValueError(rdtype)


def txt_wire(text: str) -> bytes:
    b = text.encode("ascii")
    if len(b) > 255:
        raise ValueError("a TXT string over 255 bytes")
    return bytes((len(b),)) + b


@dataclass(frozen=True, slots=True)
class Records:
    """What one name holds (or should hold): its A or PTR record and its TXT marker."""

    rdtype: str  # "A" or "PTR"
    value: str
    marker: str


class Update:
    """One UPDATE message for `zone`, filled name by name up to `limit` bytes."""

    def __init__(self, zone: str, limit: int = MAX_WIRE - TSIG_ROOM) -> None:
        self.zone, self.limit = zone, limit
        self.id = secrets.randbelow(65536)
        self._zone = name_wire(zone)
        self._suffix = "." + zone
        self._prereq = bytearray()
        self._update = bytearray()
        self.prereqs = self.updates = self.names = 0
        self._start = 12 + len(self._zone) + 4  # where the prerequisite section begins

    def size(self) -> int:
        return self._start + len(self._prereq) + len(self._update)

    def _owner(self, name: str) -> bytes:
        """`name` as its labels under the zone, then a pointer to the zone section."""
        if not name.endswith(self._suffix):
            raise BadName(f"{name} is not in zone {self.zone}")
        labels = name_wire(name[: -len(self._suffix)])[:-1]
        return labels + b"\xc0\x0c"

    def add(self, name: str, have: Records | None, want: Records | None, ttl: int) -> bool:
        """Add one name's change: created where it is not in use (`have` None), else replaced
        (or deleted, `want` None) where it holds exactly `have`. False when it does not fit."""
        owner = self._owner(name)
        offset = self._start + len(self._prereq)
        pre = bytearray()
        if have is None:
            pre += owner + struct.pack("!HHIH", ANY, CLASS_NONE, 0, 0)  # name not in use
            npre = 1
        else:
            rd = rdata_wire(have.rdtype, have.value)
            pre += owner + struct.pack("!HHIH", _TYPES[have.rdtype], CLASS_IN, 0, len(rd)) + rd
            tx = txt_wire(have.marker)
            pre += owner + struct.pack("!HHIH", TXT, CLASS_IN, 0, len(tx)) + tx
            npre = 2
        # In the update section the name is a pointer to its first copy, where one can point.
        ref = struct.pack("!H", 0xC000 | offset) if offset <= _POINTER_MAX else owner
        upd = bytearray()
        nupd = 0
        if have is not None:
            upd += ref + struct.pack("!HHIH", _TYPES[have.rdtype], CLASS_ANY, 0, 0)
            upd += ref + struct.pack("!HHIH", TXT, CLASS_ANY, 0, 0)
            nupd += 2
        if want is not None:
            rd = rdata_wire(want.rdtype, want.value)
            upd += ref + struct.pack("!HHIH", _TYPES[want.rdtype], CLASS_IN, ttl, len(rd)) + rd
            tx = txt_wire(want.marker)
            upd += ref + struct.pack("!HHIH", TXT, CLASS_IN, ttl, len(tx)) + tx
            nupd += 2
        if self.names and self.size() + len(pre) + len(upd) > self.limit:
            return False
        self._prereq += pre
        self._update += upd
        self.prereqs += npre
        self.updates += nupd
        self.names += 1
        return True

    def require_in_use(self, name: str) -> None:
        """Add the prerequisite "`name` is in use" (RFC 2136 2.4.4). A message holding only
        that changes nothing; the server answers NOERROR or NXDOMAIN from the name's own
        records: a wildcard never makes a name in use (RFC 2136 3.2), as it makes answers."""
        self._prereq += self._owner(name) + struct.pack("!HHIH", ANY, CLASS_ANY, 0, 0)
        self.prereqs += 1
        self.names += 1

    def wire(self, key: dns.tsig.Key | None = None) -> tuple[bytes, bytes]:
        """The message (signed when `key` is given) and its MAC ("" unsigned), which the
        answer's signature covers."""
        head = struct.pack("!HHHHHH", self.id, FLAGS_UPDATE, 1, self.prereqs, self.updates, 0)
        body = head + self._zone + struct.pack("!HH", SOA, CLASS_IN) + self._prereq + self._update
        if key is None:
            return body, b""
        return sign(body, key, self.id)


def sign(wire: bytes, key: dns.tsig.Key, msg_id: int, fudge: int = 300) -> tuple[bytes, bytes]:
    """`wire` (a message without additional records) with its TSIG record appended."""
    rd = dns.rdtypes.ANY.TSIG.TSIG(  # type: ignore[no-untyped-call]
        dns.rdataclass.ANY, dns.rdatatype.TSIG, key.algorithm, 0, fudge, b"", msg_id, 0, b""
    )
    signed, _ctx = dns.tsig.sign(wire, key, rd, int(time.time()), b"")  # type: ignore[no-untyped-call]
    rdata = signed.to_wire()
    assert rdata is not None
    name = key.name if isinstance(key.name, dns.name.Name) else dns.name.from_text(key.name)
    owner = name.to_wire()
    assert owner is not None
    tsig = owner + struct.pack("!HHIH", TSIG, CLASS_ANY, 0, len(rdata)) + rdata
    out = bytearray(wire)
    out[10:12] = struct.pack("!H", 1)  # one additional record: the signature
    return bytes(out) + tsig, signed.mac
