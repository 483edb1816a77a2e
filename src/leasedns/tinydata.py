"""The tinydns-data line format: names escaped as octal, TAI64 time-to-die, lines split into
fields (pure). One reader for the static data files and the `data` file leasedns writes."""

from __future__ import annotations

import re
import string
from collections.abc import Iterator

_SAFE = frozenset(string.ascii_lowercase + string.digits + ".-")
_ALL_SAFE = re.compile(r"[a-z0-9.-]*")
_OCTAL = re.compile(r"\\([0-7]{3})")
TAI64_BASE = 2**62 + 10  # TAI64 label of the unix epoch (TAI is 10 s ahead of UTC then)


def tai64(unix: int) -> str:
    """The 16-hex-digit TAI64 label tinydns-data takes as a timestamp."""
    return f"{TAI64_BASE + unix:016x}"


def from_tai64(label: str) -> int:
    """Inverse of `tai64`."""
    return int(label, 16) - TAI64_BASE


def escape(name: str) -> str:
    """Octal-escape every byte that is not a plain lowercase name byte.

    Names reaching here are already clean; this is the second line of defence
    that keeps ':' and newlines out of the data file whatever happens upstream.
    """
    if _ALL_SAFE.fullmatch(name):
        return name
    raw = name.encode("utf-8", "surrogateescape")
    return "".join(chr(b) if chr(b) in _SAFE else f"\\{b:03o}" for b in raw)


def unescape(field: str) -> str:
    """A name as tinydns-data reads it: `\\ooo` escapes undone (bytes, read as UTF-8)."""
    if "\\" not in field:
        return field
    raw = _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)
    try:
        return raw.encode("latin-1").decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # characters beyond latin-1 around the escapes: as they are
        return raw


def records(text: str) -> Iterator[tuple[int, str, list[str]]]:
    """(line number, record type character, fields) of every record line; comments (`#`),
    blank and `-` (disabled) lines skipped."""
    for n, line in enumerate(text.splitlines(), 1):
        if not line or line[0] in "#-":
            continue
        yield n, line[0], line[1:].split(":")


def name_of(line: str) -> str:
    """The owner name of a record line, as spelled in the file (sort key of dynamic lines)."""
    end = line.find(":")
    return line[1:end] if end >= 0 else line[1:].rstrip("\n")
