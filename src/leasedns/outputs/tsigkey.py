"""The one reader of BIND key files: the TSIG key an rfc2136 output signs its updates with.

`tsig-keygen -a hmac-sha256 leasedns` (and `rndc-confgen -a`, `ddns-confgen`) write:

    key "leasedns" {
            algorithm hmac-sha256;
            secret "base64...";
    };

Comments (`#`, `//`, `/* */`) may appear anywhere. The file holds one key; an error names
the file, the line and what to do.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path

from leasedns.errors import ConfigError
from leasedns.fsutil import InputFileError, read_input

# The algorithms BIND's tools write (RFC 8945 and RFC 4635).
ALGORITHMS = (
    "hmac-md5",
    "hmac-sha1",
    "hmac-sha224",
    "hmac-sha256",
    "hmac-sha384",
    "hmac-sha512",
)
MAX_BYTES = 64 * 1024  # a key file is a few lines

_TOKEN = re.compile(
    r'(?P<ws>\s+)|(?P<comment>#[^\n]*|//[^\n]*|/\*.*?\*/)|"(?P<str>[^"\n]*)"|(?P<punct>[{};])'
    r"|(?P<word>[^\s{};\"#/]+)",
    re.S,
)


@dataclass(frozen=True, slots=True)
class TsigKey:
    name: str
    algorithm: str  # one of ALGORITHMS
    secret: bytes


def read(path: Path) -> TsigKey:
    """The key of a BIND key file; ConfigError names `path`, the line and the fix."""
    try:
        raw = read_input(path, MAX_BYTES)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such key file; make it with `tsig-keygen -a hmac-sha256 leasedns > "
            f"{path}` and give the DNS server the same key"
        ) from None
    except InputFileError as e:  # a device, FIFO, directory; a file too big to be a key
        raise ConfigError(
            f"{e}; point tsig_key_file at the key file `tsig-keygen` wrote (a few lines)"
        ) from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the key file: {e.strerror}") from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"{path}:{line}: not a key file (a byte that is not ASCII)") from None
    return parse(text, str(path))


def parse(text: str, where: str = "key file") -> TsigKey:
    """The one key `text` declares (pure)."""
    tokens = list(_tokens(text, where))
    keys: list[TsigKey] = []
    i = 0

    def fail(at: int, problem: str) -> ConfigError:
        line = tokens[at][0] if at < len(tokens) else text.count("\n") + 1
        return ConfigError(f"{where}:{line}: {problem}")

    def expect(kind: str, what: str) -> str:
        nonlocal i
        if i >= len(tokens) or tokens[i][1] != kind:
            got = repr(tokens[i][2]) if i < len(tokens) else "the end of the file"
            raise fail(i, f"expected {what}, found {got}")
        i += 1
        return tokens[i - 1][2]

    while i < len(tokens):
        start = i
        if tokens[i][1:] != ("word", "key"):
            raise fail(i, f'expected `key "name" {{ ... }};`, found {tokens[i][2]!r}')
        i += 1
        if i < len(tokens) and tokens[i][1] in ("str", "word"):
            name = tokens[i][2]
            i += 1
        else:
            raise fail(i, 'the key needs a name: key "leasedns" { ... };')
        expect("{", "'{' after the key's name")
        fields: dict[str, str] = {}
        at: dict[str, int] = {}
        while i < len(tokens) and tokens[i][1] != "}":
            field_at = i
            field = expect("word", "`algorithm` or `secret`").lower()
            if i >= len(tokens) or tokens[i][1] not in ("str", "word"):
                raise fail(i, f"{field} needs a value")
            value = tokens[i][2]
            i += 1
            expect(";", f"';' after the {field}")
            if field not in ("algorithm", "secret"):
                raise fail(field_at, f"unknown key field {field!r}; a key has algorithm and secret")
            if field in fields:
                raise fail(field_at, f"the key gives its {field} twice")
            fields[field], at[field] = value, field_at
        expect("}", "'}' closing the key")
        expect(";", "';' after the key's '}'")
        for need in ("algorithm", "secret"):
            if need not in fields:
                raise fail(start, f"key {name!r} has no {need}")
        algorithm = fields["algorithm"].lower().removesuffix(".sig-alg.reg.int")
        if algorithm not in ALGORITHMS:
            raise fail(
                at["algorithm"],
                f"key {name!r}: algorithm {fields['algorithm']!r} is not one of "
                + ", ".join(ALGORITHMS),
            )
        try:
            secret = base64.b64decode(fields["secret"], validate=True)
        except (binascii.Error, ValueError):
            raise fail(at["secret"], f"key {name!r}: the secret is not base64") from None
        if not secret:
            raise fail(at["secret"], f"key {name!r}: the secret is empty")
        keys.append(TsigKey(name.rstrip(".").lower(), algorithm, secret))
    if len(keys) != 1:
        raise ConfigError(
            f"{where}:1: "
            + ("holds no key" if not keys else f"holds {len(keys)} keys; leasedns signs with one")
            + ": the file tsig-keygen writes holds one"
        )
    return keys[0]


def _tokens(text: str, where: str) -> list[tuple[int, str, str]]:
    """(line, kind, text) of each token; kind: word, str, or the punctuation itself."""
    out: list[tuple[int, str, str]] = []
    pos, line = 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            problem = "an unterminated comment" if text.startswith("/*", pos) else f"{ch!r}"
            if ch == '"':
                problem = "a string not closed on its line"
            raise ConfigError(f"{where}:{line}: not a key file: {problem}")
        kind = m.lastgroup or ""
        if kind == "str":
            out.append((line, "str", m.group("str")))
        elif kind == "punct":
            out.append((line, m.group("punct"), m.group("punct")))
        elif kind == "word":
            out.append((line, "word", m.group("word")))
        line += m.group(0).count("\n")
        pos = m.end()
    return out
