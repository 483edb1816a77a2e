"""fsutil's operating-system helpers that have no other test of their own."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from leasedns.fsutil import create_once, gc_paused


@pytest.fixture(autouse=True)
def _gc_restored() -> Iterator[None]:
    was = gc.isenabled()
    yield
    if was:
        gc.enable()
    else:
        gc.disable()


def test_gc_paused_turns_the_collector_off_and_back_on() -> None:
    gc.enable()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the inner pause leaves the outer one alone
    assert gc.isenabled()


def test_gc_paused_leaves_a_disabled_collector_off() -> None:
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()


def test_gc_paused_turns_the_collector_back_on_after_an_error() -> None:
    gc.enable()
    with pytest.raises(KeyError), gc_paused():
        raise KeyError("x")
    assert gc.isenabled()


def test_create_once_makes_the_file_once_and_keeps_the_first(tmp_path: Path) -> None:

    path = tmp_path / "state" / "installation-id"
    create_once(path, b"first\n")
    create_once(path, b"second\n")  # another process made it first: its file is kept
    assert path.read_bytes() == b"first\n"
    assert path.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in path.parent.iterdir()) == ["installation-id"]  # no temp left
