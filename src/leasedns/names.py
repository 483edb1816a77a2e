"""Hostile-name rules: what a client-sent name becomes in DNS, or why it is refused (pure)."""

from __future__ import annotations

import functools
import re
import string
from dataclasses import dataclass

import dns.exception
import dns.name

from leasedns.model import NamePolicy

LABEL_CHARS = frozenset(string.ascii_lowercase + string.digits + "-")
MAX_LABEL = 63
MAX_WIRE = 255  # a name's wire form: 253 text bytes without the trailing dot
_PLAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")  # a label dnspython always takes
_NOT_LABEL = re.compile(r"[^a-z0-9-]")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The label to publish (None when refused) and why it was refused or changed."""

    label: str | None
    note: str = ""


def show_name(raw: str) -> str:
    """A client name made safe to log: escapes for anything unprintable, cut at 80."""
    shown = raw.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
    shown = shown.encode("unicode_escape").decode("ascii")
    return repr(shown[:80] + ("..." if len(shown) > 80 else ""))


def label_for(raw: str, domain: str, policy: NamePolicy) -> Verdict:
    """Turn a raw client name into one DNS label under `domain`, per docs/design.md, "Names".

    Lowercase; strip trailing dots and our own domain; a name in another domain
    is refused (strict) or cut to its first label (sanitize); spaces and
    underscores become '-' and other characters are dropped (sanitize) or
    refused (strict); labels stay within 63 bytes and the name within 253.
    """
    if not raw:
        return Verdict(None, "no name sent")
    if _PLAIN.fullmatch(raw) and raw != domain and _fits(raw, domain):
        return Verdict(raw)  # already a clean label: what the rules below would make of it
    s = raw.lower().rstrip(".")
    notes = []
    if s == domain:
        return Verdict(None, f"name {show_name(raw)} is the zone apex")
    if s.endswith("." + domain):
        s = s[: -len(domain) - 1]
    if "." in s:
        if policy is NamePolicy.STRICT:
            return Verdict(None, f"name {show_name(raw)} is outside {domain}")
        s = s.split(".", 1)[0]
        notes.append("cut to its first label")
    if policy is NamePolicy.STRICT:
        bad = sorted({c for c in s if c not in LABEL_CHARS}) if _NOT_LABEL.search(s) else []
        if bad:
            return Verdict(
                None,
                f"name {show_name(raw)} has characters a DNS label may not hold: "
                f"{show_name(''.join(bad))}",
            )
    else:
        mapped = s.replace(" ", "-").replace("_", "-")
        cleaned = _NOT_LABEL.sub("", mapped)
        if cleaned != mapped:
            notes.append("illegal characters dropped")
        s = cleaned
        if s.strip("-") != s:
            notes.append("leading/trailing '-' removed")
            s = s.strip("-")
    if not s:
        return Verdict(
            None, f"nothing is left of name {show_name(raw)} after removing what DNS may not hold"
        )
    if s.startswith("-") or s.endswith("-"):
        return Verdict(None, f"name {show_name(raw)} starts or ends with '-'")
    if len(s) > MAX_LABEL:
        return Verdict(
            None, f"name {show_name(raw)} gives a {len(s)}-byte label; DNS allows {MAX_LABEL}"
        )
    if not _fits(s, domain):
        try:
            dns.name.from_text(s, origin=dns.name.from_text(domain))
        except dns.exception.DNSException as e:
            return Verdict(None, f"name {show_name(raw)} is not a valid DNS name in {domain}: {e}")
    return Verdict(s, "; ".join(notes))


def _fits(label: str, domain: str) -> bool:
    """A plain label (`_PLAIN`) that surely makes a valid name under `domain`, without dnspython."""
    wire = _domain_wire(domain)
    return wire is not None and len(label) + 1 + wire <= MAX_WIRE


@functools.lru_cache(maxsize=64)
def _domain_wire(domain: str) -> int | None:
    """The wire length of `domain` as an origin, None when dnspython refuses it."""
    try:
        return len(dns.name.from_text(domain).to_wire() or b"")
    except dns.exception.DNSException:
        return None


def fqdn(label: str, domain: str) -> str:
    """label.domain, lowercase, without the trailing dot (tinydns style)."""
    return f"{label}.{domain}"


def protected_fqdns(protected: frozenset[str], domain: str) -> frozenset[str]:
    """Protected entries as full names: a bare label means that label in our domain."""
    return frozenset(p if "." in p else fqdn(p, domain) for p in protected)
