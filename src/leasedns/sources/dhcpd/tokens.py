"""dhcpd's lexical rules, shared by the dhcpd.conf and dhcpd.leases readers.

The tokenizer, the decoding of escapes in quoted strings and the skipping of blocks a reader
does not look into. Texts are files decoded as latin-1 (one char per file byte); a quoted
string's bytes are read as UTF-8 only when its value is wanted.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

__all__ = ["Tok", "as_text", "skip_block", "tokenize", "unescape", "unquote"]


class Tok(NamedTuple):
    text: str
    pos: int  # offset of its first char in the text
    kind: str  # "s" string, "p" punctuation, "w" word, "bad" unterminated string


# Comments, punctuation and words; strings come first and differ between the two files.
_REST = r'|#[^\n]*|[{};,=]|[^\s{};,="#]+'
# dhcpd.conf: a string may run over lines, as dhcpd's lexer lets it; an unterminated one
# runs to the end of the text.
_TOKEN_MULTILINE = re.compile(
    r'"(?:[^"\\]|\\.)*"' r'|(?P<bad>"(?:[^"\\]|\\.)*\Z)' + _REST,
    re.S,
)
# dhcpd.leases: dhcpd never writes a raw newline inside a string, so one that reaches the end
# of its line was cut off; ending it there lets the reader resume at the next line.
_TOKEN_ONE_LINE = re.compile(r'"(?:[^"\\\n]|\\.)*"' r'|(?P<bad>"[^\n]*)' + _REST)


def tokenize(text: str, start: int, end: int, *, multiline_strings: bool) -> list[Tok]:
    """The tokens of text[start:end], comments dropped. An unterminated string is one token
    of kind "bad" (with `multiline_strings` it can only be the last)."""
    pattern = _TOKEN_MULTILINE if multiline_strings else _TOKEN_ONE_LINE
    out: list[Tok] = []
    append = out.append
    for m in pattern.finditer(text, start, end):
        t = m.group()
        if t[0] == "#":
            continue
        if m.group("bad") is not None:
            append(Tok(t, m.start(), "bad"))
        elif t[0] == '"':
            append(Tok(t, m.start(), "s"))
        elif t in "{};,=":
            append(Tok(t, m.start(), "p"))
        else:
            append(Tok(t, m.start(), "w"))
    return out


def skip_block(
    toks: Sequence[Tok], i: int, stop: Callable[[Tok], bool] | None = None
) -> tuple[int, bool]:
    """Skip a `{ ... }` whose `{` is just before toks[i]: nested blocks are counted, strings
    are single tokens. Returns (index after its `}`, True); or, when it is not closed,
    (index of the first "bad" token or token `stop` is true for, else len(toks), False)."""
    depth = 1
    n = len(toks)
    while i < n:
        t = toks[i]
        if t.kind == "p":
            if t.text == "{":
                depth += 1
            elif t.text == "}":
                depth -= 1
                if depth == 0:
                    return i + 1, True
        elif t.kind == "bad" or (stop is not None and stop(t)):
            return i, False
        i += 1
    return n, False


# --- escapes ---------------------------------------------------------------------------------

_ESCAPE = re.compile(r"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)", re.S)
_NAMED_ESCAPES = {"t": "\t", "r": "\r", "n": "\n", "b": "\b"}
# Escapes Python's bytes-literal decoder treats exactly as dhcpd's lexer does: three-digit
# octal up to \377, \" and \\ (all quotify_buf ever writes). Anything else goes the slow way.
_ODD_ESCAPE = re.compile(r'\\(?![0-3][0-7][0-7]|["\\])')


def _escape(m: re.Match[str]) -> str:
    """One escape as dhcpd's lexer reads it: \\t \\r \\n \\b, \\NNN octal, \\xHH, else literal."""
    e = m.group(1)
    if e[0] == "x" and len(e) > 1:
        return chr(int(e[1:], 16))
    if e[0] in "01234567":
        return chr(int(e, 8) & 0xFF)  # dhcpd stores the value in a char
    return _NAMED_ESCAPES.get(e, e)


def unescape(body: str) -> str:
    """A quoted string's body (without its quotes) with dhcpd's escapes undone, char by char:
    an escape becomes the char of its byte value, every other char stays as it is."""
    return _ESCAPE.sub(_escape, body) if "\\" in body else body


def unquote(body: str) -> bytes:
    """The bytes of a quoted string's body (latin-1 text: one char per file byte).

    UnicodeEncodeError (a ValueError) when the body holds a char above U+00FF."""
    if "\\" not in body:
        return body.encode("latin-1")
    if _ODD_ESCAPE.search(body) is None:
        return codecs.escape_decode(body.encode("latin-1"))[0]
    return unescape(body).encode("latin-1")


def as_text(body: str) -> str:
    """A quoted string's body as text: its bytes as UTF-8, undecodable ones kept as surrogates."""
    if "\\" not in body and body.isascii():
        return body
    return unquote(body).decode("utf-8", "surrogateescape")
