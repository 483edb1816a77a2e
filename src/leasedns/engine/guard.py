"""The mass-delete guard: refuse changes that drop many names no event explains (pure)."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from leasedns.errors import GuardError
from leasedns.model import Changes, Record


def changes_between(
    served: Iterable[Record], desired: Iterable[Record], token: str, now: int
) -> Changes:
    """The changes that bring an output from the dynamic records it `served` to the `desired`
    ones (when it cannot say which outcome it serves); `before` counts the live served ones."""
    old = {r.name: r for r in served if not r.static}
    new = {r.name: r for r in desired if not r.static}
    live = sum(1 for r in old.values() if r.ttd is None or r.ttd > now)
    out = Changes("", token, before=live)
    for name in sorted(old.keys() | new.keys()):
        out.note(old.get(name), new.get(name))
    return out


def unexplained_losses(changes: Changes, known_ips: Collection[str], now: int) -> list[Record]:
    """Live names the changes take away (or move to another address) although no event speaks
    of their address: a name that goes because its lease was released, expired, or its address
    leased again is explained; one whose events are simply gone (an empty or truncated journal,
    a lost directory) is not."""
    gone = list(changes.removed)
    gone += [old for old, new in changes.changed if new.ip != old.ip]
    return sorted(
        (r for r in gone if (r.ttd is None or r.ttd > now) and r.ip not in known_ips),
        key=lambda r: r.name,
    )


def check(
    changes: Changes, known_ips: Collection[str], now: int, fraction: float, minimum: int
) -> None:
    """Raise GuardError when the changes drop more than `fraction` of at least `minimum` live
    names with nothing to explain it (one check, before any output)."""
    lost = unexplained_losses(changes, known_ips, now)
    before = changes.before or 0
    if before >= max(minimum, 1) and len(lost) > fraction * before:
        sample = ", ".join(r.name for r in lost[:5])
        raise GuardError(
            f"refusing to publish: {len(lost)} of {before} live dynamic names would vanish with "
            f"no release, expiry or new lease to explain it (e.g. {sample}); a journal directory "
            "may be missing or truncated. Check the journals; if the removal is intended, run "
            "`leasedns apply --force`."
        )
