"""Hostile client names: each one's exact fate under the sanitize and strict policies."""

from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leasedns import names
from leasedns.model import NamePolicy
from leasedns.names import Verdict, label_for, protected_fqdns

D = "lab.example"
S, X = NamePolicy.SANITIZE, NamePolicy.STRICT


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("client1", "client1"),
        ("Client_One", "client-one"),
        ("my laptop", "my-laptop"),
        ("host.lab.example", "host"),
        ("host.lab.example.", "host"),
        ("HOST.LAB.EXAMPLE", "host"),
        ("host.corp.local", "host"),  # another domain: cut to the first label
        ("evil\n=www.lab.example:6.6.6.6", "evilwww"),  # newline and '=' dropped, first label kept
        ("evil:1.2.3.4", "evil1"),  # ':' can never reach a data line
        ("back\\slash", "backslash"),
        ("oct\\072al", "oct072al"),  # a literal \072 is text, not an escape
        ("café", "caf"),  # non-ASCII dropped
        ("-dash-", "dash"),
        ("a" * 63, "a" * 63),
        ("*", None),
        ("", None),
        ("lab.example", None),  # the zone apex
        ("a" * 64, None),
        ("\u00e9\u00e9", None),
    ],
)
def test_sanitize(raw: str, label: str | None) -> None:
    assert label_for(raw, D, S).label == label


def test_refusal_reasons_are_specific_and_escaped() -> None:
    assert (
        label_for("a" * 64, D, S).note == f"name {'a' * 64!r} gives a 64-byte label; DNS allows 63"
    )
    apex = label_for("lab.example", D, S)
    assert apex.note == "name 'lab.example' is the zone apex"
    nothing = label_for("\n:\\", D, S)
    assert nothing.label is None
    assert "\n" not in nothing.note and nothing.note.startswith("nothing is left of name")


def test_300_byte_name_without_dots_is_refused() -> None:
    v = label_for("x" * 300, D, S)
    assert v.label is None and "300-byte label" in v.note


def test_300_byte_name_with_dots_keeps_a_valid_first_label() -> None:
    raw = ".".join(["abcdefghij"] * 27)  # 296 bytes
    assert label_for(raw, D, S).label == "abcdefghij"


def test_non_utf8_bytes_are_dropped() -> None:
    raw = b"pc\xff\xfe1".decode("utf-8", "surrogateescape")
    assert label_for(raw, D, S).label == "pc1"


@pytest.mark.parametrize(
    ("raw", "label"),
    [
        ("client1", "client1"),
        ("host.lab.example", "host"),
        ("Client_One", None),
        ("host.corp.local", None),
        ("evil:1", None),
        ("-x", None),
        ("café", None),
    ],
)
def test_strict(raw: str, label: str | None) -> None:
    assert label_for(raw, D, X).label == label


def test_strict_names_the_bad_characters() -> None:
    assert label_for("a_b c", D, X).note == (
        "name 'a_b c' has characters a DNS label may not hold: ' _'"
    )


def test_protected_names_expand_into_the_domain() -> None:
    assert protected_fqdns(frozenset({"www", "ns1.other.example"}), D) == {
        "www.lab.example",
        "ns1.other.example",
    }


def test_long_domain_makes_long_names_fail_the_dns_check() -> None:
    domain = ".".join(["d" * 63] * 3)  # 191 bytes: label + domain may pass 253
    v = label_for("h" * 63, domain, S)
    assert v.label is None and "not a valid DNS name" in v.note


def _slow_label_for(raw: str, domain: str, policy: NamePolicy) -> Verdict:
    """label_for with its dnspython-free fast paths turned off (the reference)."""
    with mock.patch.object(names, "_fits", lambda label, domain: False):
        return label_for(raw, domain, policy)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="abcXYZ09-_. :\\é\udcff", max_size=70),
        st.from_regex(r"[a-z0-9][a-z0-9-]{0,70}", fullmatch=True),
    ),
    st.sampled_from(["lab.example", "lan", ".".join(["d" * 63] * 3), "x" * 60 + ".example"]),
    st.sampled_from(list(NamePolicy)),
)
def test_fast_paths_give_the_dnspython_verdict(raw: str, domain: str, policy: NamePolicy) -> None:
    assert label_for(raw, domain, policy) == _slow_label_for(raw, domain, policy)


def test_plain_label_equal_to_a_one_label_domain_is_the_apex() -> None:
    assert label_for("lan", "lan", S) == Verdict(None, "name 'lan' is the zone apex")
