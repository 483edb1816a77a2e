"""The mass-delete guard: explained removals pass, unexplained mass removals raise."""

import pytest

from leasedns.engine.guard import changes_between, check, unexplained_losses
from leasedns.errors import GuardError
from leasedns.model import Changes, Record

NOW = 1_800_000_000
PREV = [
    Record(f"pc{i}.lab.example", f"192.0.2.{100 + i}", NOW + 600, True, False) for i in range(20)
]


def between(served: list[Record], desired: list[Record]) -> Changes:
    return changes_between(served, desired, "t1", NOW)


def test_losing_all_names_with_no_events_is_refused() -> None:
    with pytest.raises(GuardError, match="20 of 20 live dynamic names would vanish"):
        check(between(PREV, []), frozenset(), NOW, 0.5, 10)


def test_names_whose_addresses_have_events_are_explained() -> None:
    known = {p.ip for p in PREV}  # released, expired or re-leased: a commit speaks of each
    check(between(PREV, []), known, NOW, 0.5, 10)
    assert unexplained_losses(between(PREV, []), known, NOW) == []


def test_expired_names_are_not_counted() -> None:
    expired = [Record(p.name, p.ip, NOW - 1, True, False) for p in PREV]
    changes = between(expired, [])
    assert unexplained_losses(changes, frozenset(), NOW) == [] and changes.before == 0
    check(changes, frozenset(), NOW, 0.5, 10)


def test_below_the_fraction_passes_and_above_raises() -> None:
    check(between(PREV, PREV[:10]), frozenset(), NOW, 0.5, 10)  # exactly half lost: allowed
    with pytest.raises(GuardError):
        check(between(PREV, PREV[:9]), frozenset(), NOW, 0.5, 10)


def test_small_zones_are_not_guarded() -> None:
    check(between(PREV[:9], []), frozenset(), NOW, 0.5, 10)


def test_a_name_moved_to_an_address_no_event_speaks_of_is_lost_a_new_ttd_is_not() -> None:
    moved = [Record(p.name, "198.51.100.1", p.ttd, True, False) for p in PREV]
    renewed = [Record(p.name, p.ip, NOW + 3600, True, False) for p in PREV]
    assert len(unexplained_losses(between(PREV, moved), frozenset(), NOW)) == 20
    assert unexplained_losses(between(PREV, renewed), frozenset(), NOW) == []
    changes = between(PREV, renewed)
    assert len(changes.changed) == 20 and not changes.added and not changes.removed


def test_changes_between_lists_each_kind_once_by_name() -> None:
    a, b, c = (
        Record(f"{n}.lab.example", f"192.0.2.{i}", None, True, False)
        for i, n in enumerate("abc", 1)
    )
    b2 = Record(b.name, b.ip, NOW + 5, True, False)
    changes = between([a, b], [b2, c])
    assert changes.removed == [a] and changes.added == [c] and changes.changed == [(b, b2)]
    assert changes.before == 2 and changes.base == "" and changes.token == "t1"
