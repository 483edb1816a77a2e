"""The mass-delete guard: explained removals pass, unexplained mass removals raise."""

import pytest

from leasedns.engine.guard import check, unexplained_losses
from leasedns.engine.rules import Record
from leasedns.errors import GuardError
from leasedns.outputs.tinydns import Published

NOW = 1_800_000_000
PREV = [Published(f"pc{i}.lab.example", f"192.0.2.{100 + i}", NOW + 600) for i in range(20)]


def test_losing_all_names_with_no_events_is_refused() -> None:
    with pytest.raises(GuardError, match="20 of 20 live dynamic names would vanish"):
        check(PREV, [], frozenset(), NOW, 0.5, 10)


def test_names_whose_addresses_have_events_are_explained() -> None:
    known = {p.ip for p in PREV}  # released, expired or re-leased: a commit speaks of each
    check(PREV, [], known, NOW, 0.5, 10)
    assert unexplained_losses(PREV, [], known, NOW) == ([], 20)


def test_expired_names_are_not_counted() -> None:
    expired = [Published(p.name, p.ip, NOW - 1) for p in PREV]
    assert unexplained_losses(expired, [], frozenset(), NOW) == ([], 0)
    check(expired, [], frozenset(), NOW, 0.5, 10)


def test_below_the_fraction_passes_and_above_raises() -> None:
    kept = [Record(p.name, p.ip, p.ttd, True, False) for p in PREV[:10]]
    check(PREV, kept, frozenset(), NOW, 0.5, 10)  # exactly half lost: allowed
    with pytest.raises(GuardError):
        check(PREV, kept[:9], frozenset(), NOW, 0.5, 10)


def test_small_zones_are_not_guarded() -> None:
    check(PREV[:9], [], frozenset(), NOW, 0.5, 10)
