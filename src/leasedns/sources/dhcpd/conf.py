"""Read static `host` declarations (fixed addresses and their names) from dhcpd.conf."""

from __future__ import annotations

import bisect
import ipaddress
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from leasedns.errors import ParseError
from leasedns.fsutil import InputFileError, read_input, size_text
from leasedns.sources.dhcpd import tokens
from leasedns.sources.dhcpd.tokens import Tok

__all__ = ["DEFAULT_ORDER", "ConfResult", "HostDecl", "parse_conf", "publish_name", "read_conf"]

DEFAULT_ORDER = ("ddns-hostname", "host-name", "declaration")


@dataclass(frozen=True, slots=True)
class HostDecl:
    """One `host NAME { ... }` declaration."""

    decl_name: str
    macs: tuple[str, ...]  # normalised: zero-padded lowercase aa:bb:cc:dd:ee:ff
    addresses: tuple[str, ...]  # fixed-address values that are IPv4 addresses
    host_name: str | None  # option host-name
    ddns_hostname: str | None
    where: str  # "path:line" of the `host` keyword


@dataclass(frozen=True, slots=True)
class ConfResult:
    hosts: tuple[HostDecl, ...]
    problems: tuple[str, ...]  # "path:line: problem"


Loader = Callable[[str], str]

# dhcpd.conf and every file it includes, together (a file included twice counts twice): a
# site's fixed-address hosts are a few MiB; includes that include each other twice over
# would read the same files exponentially often.
MAX_BYTES = 64 << 20

_MAC_PART = re.compile(r"[0-9a-fA-F]{1,2}\Z")
# Scopes that may hold host declarations (or hold scopes that do). dhcpd.conf(5).
_SCOPES = frozenset({"group", "subnet", "subnet6", "shared-network"})


def _string(tok: str) -> str:
    """A quoted token's value: dhcpd's escapes undone, bytes read as UTF-8."""
    body = tok[1:-1]
    if "\\" not in body:
        return body
    try:
        return tokens.unquote(body).decode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # the file had non-latin-1 text around the escapes
        return tokens.unescape(body)


class _File:
    """One file being read: its path, its tokens and the line each token is on."""

    __slots__ = ("_newlines", "path", "toks")

    def __init__(self, text: str, path: str) -> None:
        self.path = path
        self.toks = tokens.tokenize(text, 0, len(text), multiline_strings=True)
        self._newlines = [m.start() for m in re.finditer("\n", text)]
        if self.toks and self.toks[-1].kind == "bad":  # only ever the last token
            raise ParseError(
                path, self.line(self.toks[-1]), "string is not closed; add the missing '\"'"
            )

    def line(self, t: Tok) -> int:
        return bisect.bisect_left(self._newlines, t.pos) + 1


def _mac(word: str) -> str | None:
    parts = word.split(":")
    if len(parts) < 2 or not all(_MAC_PART.match(p) for p in parts):
        return None
    return ":".join(f"{int(p, 16):02x}" for p in parts)


class _Reader:
    def __init__(self, loader: Loader, base_dir: str, limit: int) -> None:
        self.loader = loader
        self.limit = limit
        self.base_dir = base_dir
        self.hosts: list[HostDecl] = []
        self.problems: list[str] = []
        self.stack: list[str] = []
        self.left = limit  # bytes still to be read, all files together

    def file(self, text: str, path: str, where: str | None) -> None:
        if path in self.stack:
            chain = " -> ".join([*self.stack, path])
            raise ParseError(*_split_where(where), f"include loop: {chain}; remove one include")
        self.left -= len(text)
        if self.left < 0:
            raise ParseError(
                *_split_where(where),
                f"dhcpd.conf and its includes are more than {size_text(self.limit)} together "
                f"(at {path}); include each file once",
            )
        self.stack.append(path)
        f = _File(text, path)
        i = self.block(f, 0, closing=False)
        if i < len(f.toks):
            raise ParseError(
                path, f.line(f.toks[i]), "unexpected '}'; remove it or add the '{' it closes"
            )
        self.stack.pop()

    def block(self, f: _File, i: int, closing: bool) -> int:
        """Read statements from f.toks[i] to the `}` closing this block (or the end)."""
        toks, path = f.toks, f.path
        n = len(toks)
        while i < n:
            t = toks[i]
            if t.kind == "p" and t.text == "}":
                return i + 1 if closing else i
            if t.kind == "p" and t.text == ";":
                i += 1
                continue
            j = i
            while j < n and not (toks[j].kind == "p" and toks[j].text in "{};"):
                j += 1
            if j == n:
                raise ParseError(
                    path,
                    f.line(t),
                    f"statement '{t.text}' has no ';' before the end of the file; add it",
                )
            words = toks[i:j]
            end = toks[j].text
            if end == "}":
                raise ParseError(
                    path, f.line(t), f"statement '{t.text}' is missing its ';'; add it"
                )
            if end == ";":
                if t.text == "include" and len(words) == 2 and words[1].kind == "s":
                    self.include(_string(words[1].text), f"{path}:{f.line(t)}")
                i = j + 1
                continue
            # a statement with a block
            if t.text == "host" and t.kind == "w" and len(words) == 2:
                i = self.host(f, j + 1, words[1], f.line(t))
            elif t.text in _SCOPES and t.kind == "w":
                i = self.block(f, j + 1, closing=True)
            else:
                i = _skip(f, j + 1, t)
            if closing and i > n:
                break
        if closing:
            raise ParseError(
                path,
                f.line(toks[-1]) if toks else 1,
                "a '{' is not closed at the end of the file; add the '}'",
            )
        return i

    def include(self, name: str, where: str) -> None:
        path = name if os.path.isabs(name) else os.path.join(self.base_dir, name)
        try:
            text = self.loader(path)
        except InputFileError as e:
            raise ParseError(*_split_where(where), f'include "{name}": {e}; fix the path') from None
        except OSError as e:
            raise ParseError(
                *_split_where(where),
                f'include "{name}": cannot read {path}: {e.strerror or e}; fix the path',
            ) from None
        self.file(text, path, where)

    def host(self, f: _File, i: int, name_tok: Tok, line: int) -> int:
        toks, path = f.toks, f.path
        decl = _string(name_tok.text) if name_tok.kind == "s" else name_tok.text
        where = f"{path}:{line}"
        macs: list[str] = []
        addrs: list[str] = []
        host_name = ddns = None
        n = len(toks)
        while i < n and not (toks[i].kind == "p" and toks[i].text == "}"):
            t = toks[i]
            if t.kind == "p" and t.text == ";":
                i += 1
                continue
            j = i
            while j < n and not (toks[j].kind == "p" and toks[j].text in "{};"):
                j += 1
            if j == n or toks[j].text == "}":
                raise ParseError(
                    path, f.line(t), f"host {decl}: statement '{t.text}' is missing its ';'; add it"
                )
            if toks[j].text == "{":
                i = _skip(f, j + 1, t)
                continue
            ws = toks[i:j]
            key = t.text
            if key == "hardware" and len(ws) == 3:
                mac = _mac(ws[2].text)
                if mac is None:
                    self.problems.append(
                        f"{path}:{f.line(t)}: host {decl}: hardware address "
                        f"{ws[2].text!r} is not valid; ignored"
                    )
                else:
                    macs.append(mac)
            elif key == "fixed-address":
                addrs.extend(self.addresses(ws[1:], f, decl))
            elif (
                key == "option" and len(ws) == 3 and ws[1].text == "host-name" and ws[2].kind == "s"
            ):
                host_name = _string(ws[2].text)
            elif key == "ddns-hostname":
                rest = [w for w in ws[1:] if w.text != "="]
                if len(rest) == 1 and rest[0].kind == "s":
                    ddns = _string(rest[0].text)
                else:
                    self.problems.append(
                        f"{path}:{f.line(t)}: host {decl}: ddns-hostname is "
                        "not a quoted string (an expression?); ignored"
                    )
            i = j + 1
        if i >= n:
            raise ParseError(path, line, f"host {decl}: the '{{' is not closed; add the '}}'")
        self.hosts.append(HostDecl(decl, tuple(macs), tuple(addrs), host_name, ddns, where))
        return i + 1

    def addresses(self, ws: list[Tok], f: _File, decl: str) -> list[str]:
        out: list[str] = []
        for w in ws:
            if w.kind == "p" and w.text == ",":
                continue
            value = _string(w.text) if w.kind == "s" else w.text
            try:
                out.append(str(ipaddress.IPv4Address(value)))
            except ValueError:
                if re.fullmatch(r"[A-Za-z0-9_.-]+", value) and not value.replace(".", "").isdigit():
                    self.problems.append(
                        f'{f.path}:{f.line(w)}: fixed-address "{value}" is a DNS name; leasedns '
                        "does not resolve it, use an address"
                    )
                else:
                    self.problems.append(
                        f"{f.path}:{f.line(w)}: host {decl}: fixed-address "
                        f'"{value}" is not an IPv4 address; ignored'
                    )
        return out


def _skip(f: _File, i: int, head: Tok) -> int:
    """Skip a balanced block whose `{` is just before f.toks[i]."""
    j, closed = tokens.skip_block(f.toks, i)
    if closed:
        return j
    raise ParseError(f.path, f.line(head), f"the '{{' of '{head.text}' is not closed; add the '}}'")


def _split_where(where: str | None) -> tuple[str, int]:
    if where is None:
        return ("<config>", 0)
    path, _, line = where.rpartition(":")
    return path, int(line)


def _read_text(path: str) -> str:
    # Only a regular file, at most MAX_BYTES (see fsutil.read_input); latin-1 keeps every
    # byte, and strings are decoded as UTF-8 later.
    return read_input(path, MAX_BYTES).decode("latin-1")


def parse_conf(
    text: str, path: str, loader: Loader = _read_text, limit: int = MAX_BYTES
) -> ConfResult:
    """Find every host declaration in dhcpd.conf text, following includes via `loader`.

    Relative include paths resolve against the directory of `path` (the main config), not
    dhcpd's working directory: leasedns runs from anywhere, and Debian's dhcpd runs from /,
    where the two agree for the absolute paths dhcpd.conf normally uses. Raises ParseError
    for damage that makes the rest unreadable (unbalanced braces, unclosed strings, an include
    loop, an unreadable include, more than `limit` characters read in all); recoverable
    oddities are returned as problems.
    """
    reader = _Reader(loader, os.path.dirname(path), limit)
    reader.file(text, path, None)
    return ConfResult(tuple(reader.hosts), tuple(reader.problems))


def read_conf(path: str) -> ConfResult:
    """Read dhcpd.conf at `path` and everything it includes (OSError, fsutil.InputFileError
    when dhcpd.conf itself cannot be read; ParseError for an include)."""
    return parse_conf(_read_text(path), path)


def publish_name(host: HostDecl, order: Sequence[str] = DEFAULT_ORDER) -> str | None:
    """The name to publish for a host: the first of `order` that the declaration has.

    Items: "ddns-hostname", "host-name" (option host-name), "declaration" (host NAME).
    """
    for item in order:
        if item == "ddns-hostname" and host.ddns_hostname:
            return host.ddns_hostname
        if item == "host-name" and host.host_name:
            return host.host_name
        if item == "declaration" and host.decl_name:
            return host.decl_name
        if item not in DEFAULT_ORDER:
            raise ValueError(f"unknown name source {item!r}; use one of {DEFAULT_ORDER}")
    return None
