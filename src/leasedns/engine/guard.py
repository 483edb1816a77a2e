"""The mass-delete guard: refuse a build that drops many names no event explains (pure)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from leasedns.engine.rules import Record
from leasedns.errors import GuardError
from leasedns.outputs.tinydns import Published


def unexplained_losses(
    previous: Iterable[Published], records: Iterable[Record], known_ips: Collection[str], now: int
) -> tuple[list[Published], int]:
    """Previously published live names that vanish although no event speaks of their address.

    A name that goes because its lease was released, expired, or its address
    was leased again is explained; one whose events are simply gone (an empty
    or truncated journal, a lost directory) is not. Returns (lost, live before).
    """
    live = [p for p in previous if p.ttd is None or p.ttd > now]
    kept = {(r.name, r.ip) for r in records if not r.static}
    lost = [p for p in live if (p.name, p.ip) not in kept and p.ip not in known_ips]
    return lost, len(live)


def check(
    previous: Iterable[Published],
    records: Iterable[Record],
    known_ips: Collection[str],
    now: int,
    fraction: float,
    minimum: int,
) -> None:
    """Raise GuardError when more than `fraction` of at least `minimum` live names would vanish."""
    lost, before = unexplained_losses(previous, records, known_ips, now)
    decide([p.name for p in lost], before, fraction, minimum)


def decide(lost: Sequence[str], before: int, fraction: float, minimum: int) -> None:
    """Raise GuardError when `lost` (names, in data-file order) is too many of `before`."""
    if before >= max(minimum, 1) and len(lost) > fraction * before:
        sample = ", ".join(lost[:5])
        raise GuardError(
            f"refusing to publish: {len(lost)} of {before} live dynamic names would vanish with "
            f"no release, expiry or new lease to explain it (e.g. {sample}); a journal directory "
            "may be missing or truncated. Check the journals; if the removal is intended, run "
            "`leasedns apply --force`."
        )
