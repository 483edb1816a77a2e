"""The dhcpd lexical rules both dhcpd readers share: tokens, escapes, skipped blocks."""

from __future__ import annotations

import pytest

from leasedns.sources.dhcpd.tokens import (
    Tok,
    as_text,
    skip_block,
    tokenize,
    unescape,
    unquote,
)


def kinds(text: str, multiline: bool) -> list[tuple[str, str]]:
    return [(t.kind, t.text) for t in tokenize(text, 0, len(text), multiline_strings=multiline)]


def test_tokens_kinds_and_positions_comments_dropped() -> None:
    text = 'host "a b" { # c { "\n  x=1,2; }'
    toks = tokenize(text, 0, len(text), multiline_strings=False)
    assert [(t.kind, t.text) for t in toks] == [
        ("w", "host"),
        ("s", '"a b"'),
        ("p", "{"),
        ("w", "x"),
        ("p", "="),
        ("w", "1"),
        ("p", ","),
        ("w", "2"),
        ("p", ";"),
        ("p", "}"),
    ]
    assert all(text.startswith(t.text, t.pos) for t in toks)


def test_tokenize_reads_only_the_range_asked_for() -> None:
    text = "a { b; } c;"
    assert [t.text for t in tokenize(text, 4, 8, multiline_strings=False)] == ["b", ";", "}"]
    assert tokenize(text, 4, 8, multiline_strings=False)[0].pos == 4


def test_strings_over_lines_only_in_multiline_mode() -> None:
    text = 'x "a\nb" y'
    # dhcpd.conf: one string over two lines
    assert kinds(text, True) == [("w", "x"), ("s", '"a\nb"'), ("w", "y")]
    # dhcpd.leases: cut off at the end of its line; the next line is read again
    assert kinds(text, False) == [("w", "x"), ("bad", '"a'), ("w", "b"), ("bad", '" y')]


def test_unterminated_string_multiline_runs_to_the_end() -> None:
    assert kinds('x "a\\" b;\nc;', True) == [("w", "x"), ("bad", '"a\\" b;\nc;')]


def test_escaped_quote_and_backslash_newline() -> None:
    assert kinds('"a\\"b" c', False) == [("s", '"a\\"b"'), ("w", "c")]
    # a backslash before a newline escapes it only where strings may run over lines
    assert kinds('"a\\\nb"', True) == [("s", '"a\\\nb"')]
    assert kinds('"a\\\nb"', False)[0] == ("bad", '"a\\')


def toks(text: str) -> list[Tok]:
    return tokenize(text, 0, len(text), multiline_strings=False)


def test_skip_block_counts_nesting_and_ignores_braces_in_strings() -> None:
    t = toks('{ a { b; } "}" c; } d;')
    assert skip_block(t, 1) == (len(t) - 2, True)
    assert t[len(t) - 2].text == "d"


def test_skip_block_not_closed() -> None:
    t = toks("{ a { b; }")
    assert skip_block(t, 1) == (len(t), False)


def test_skip_block_stops_at_a_bad_string_or_where_told() -> None:
    t = toks('{ a "b\n c; }')
    assert skip_block(t, 1) == (2, False)
    assert t[2].kind == "bad"
    t = toks("{ a;\nlease x; }")
    assert skip_block(t, 1, lambda x: x.text == "lease") == (3, False)
    assert skip_block(t, 1) == (len(t), True)


@pytest.mark.parametrize(
    ("body", "value"),
    [
        ("plain", "plain"),
        ("a\\tb\\rc\\nd\\be", "a\tb\rc\nd\be"),
        ("\\x41\\x4g\\x", "A\x04gx"),  # one or two hex digits; \x alone is an x
        ("\\101\\0\\0123", "A\x00\n3"),  # up to three octal digits
        ("\\777", "\xff"),  # dhcpd keeps the low byte
        ('\\"\\\\\\q', '"\\q'),  # anything else stands for itself
    ],
)
def test_unescape_reads_escapes_as_dhcpd_does(body: str, value: str) -> None:
    assert unescape(body) == value
    assert unquote(body) == value.encode("latin-1")


def test_unquote_fast_path_agrees_with_unescape() -> None:
    # the escapes unquote hands to Python's decoder: every \NNN up to \377, \" and \\
    for n in range(256):
        body = f'a\\{n:03o}\\"\\\\z'
        assert unquote(body) == unescape(body).encode("latin-1"), body


def test_as_text_reads_the_bytes_as_utf8_and_keeps_the_rest() -> None:
    assert as_text("caf\\303\\251") == "café"
    assert as_text("caf\xc3\xa9") == "café"  # raw UTF-8 bytes of a latin-1 decoded file
    assert as_text("a\\377") == "a\udcff"
    assert as_text("ascii") == "ascii"


def test_text_above_latin1_is_refused() -> None:
    with pytest.raises(UnicodeEncodeError):
        unquote("\u20ac\\101")
    assert unescape("\u20ac\\101") == "\u20acA"
