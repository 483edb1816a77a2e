"""Hostile-name rules: what a client-sent name becomes in DNS, or why it is refused (pure)."""

from __future__ import annotations

import string
from dataclasses import dataclass

import dns.exception
import dns.name

from .config import NamePolicy

LABEL_CHARS = frozenset(string.ascii_lowercase + string.digits + "-")
MAX_LABEL = 63


@dataclass(frozen=True, slots=True)
class Verdict:
    """The label to publish (None when refused) and why it was refused or changed."""

    label: str | None
    note: str = ""


def _show(raw: str) -> str:
    """A client name made safe to log: escapes for anything unprintable, cut at 80."""
    shown = raw.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
    shown = shown.encode("unicode_escape").decode("ascii")
    return repr(shown[:80] + ("..." if len(shown) > 80 else ""))


def label_for(raw: str, domain: str, policy: NamePolicy) -> Verdict:
    """Turn a raw client name into one DNS label under `domain`, per DESIGN.md "Names".

    Lowercase; strip trailing dots and our own domain; a name in another domain
    is refused (strict) or cut to its first label (sanitize); spaces and
    underscores become '-' and other characters are dropped (sanitize) or
    refused (strict); labels stay within 63 bytes and the name within 253.
    """
    if not raw:
        return Verdict(None, "no name sent")
    s = raw.lower().rstrip(".")
    notes = []
    if s == domain:
        return Verdict(None, f"name {_show(raw)} is the zone apex")
    if s.endswith("." + domain):
        s = s[: -len(domain) - 1]
    if "." in s:
        if policy is NamePolicy.STRICT:
            return Verdict(None, f"name {_show(raw)} is outside {domain}")
        s = s.split(".", 1)[0]
        notes.append("cut to its first label")
    if policy is NamePolicy.STRICT:
        bad = sorted({c for c in s if c not in LABEL_CHARS})
        if bad:
            return Verdict(None, f"name {_show(raw)} has characters a DNS label may not hold: "
                                 f"{_show(''.join(bad))}")
    else:
        mapped = s.replace(" ", "-").replace("_", "-")
        cleaned = "".join(c for c in mapped if c in LABEL_CHARS)
        if cleaned != mapped:
            notes.append("illegal characters dropped")
        s = cleaned
        if s.strip("-") != s:
            notes.append("leading/trailing '-' removed")
            s = s.strip("-")
    if not s:
        return Verdict(None, f"nothing is left of name {_show(raw)} after removing what DNS "
                             "may not hold")
    if s.startswith("-") or s.endswith("-"):
        return Verdict(None, f"name {_show(raw)} starts or ends with '-'")
    if len(s) > MAX_LABEL:
        return Verdict(None, f"name {_show(raw)} gives a {len(s)}-byte label; DNS allows {MAX_LABEL}")
    try:
        dns.name.from_text(s, origin=dns.name.from_text(domain))
    except dns.exception.DNSException as e:
        return Verdict(None, f"name {_show(raw)} is not a valid DNS name in {domain}: {e}")
    return Verdict(s, "; ".join(notes))


def fqdn(label: str, domain: str) -> str:
    """label.domain, lowercase, without the trailing dot (tinydns style)."""
    return f"{label}.{domain}"


def protected_fqdns(protected: frozenset[str], domain: str) -> frozenset[str]:
    """Protected entries as full names: a bare label means that label in our domain."""
    return frozenset(p if "." in p else fqdn(p, domain) for p in protected)
