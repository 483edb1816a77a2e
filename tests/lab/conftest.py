"""Lab fixtures: skip (or, under CI=true, fail) when the lab cannot run here."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import need

from .netlab import HOOK, Lab, Peer, lab_missing, leasedns_snippet


@functools.cache
def lab_skip_reason() -> str | None:
    """Why lab tests cannot run here (not root, no ip netns, no dhcpd...), or None."""
    return lab_missing()


def require_lab() -> None:
    """Skip the test when the lab is unavailable; under CI=true fail it instead."""
    reason = lab_skip_reason()
    need(reason is None, reason or "")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("lab") is not None:
        require_lab()


def spool_env(peer: Peer) -> dict[str, str]:
    """dhcpd environment for the hook: spool into the peer's dir, never start apply."""
    return {"LEASEDNS_SPOOL": str(peer.spool), "LEASEDNS_NO_APPLY": "1"}


@pytest.fixture
def hooks_snippet(tmp_path: Path) -> Path:
    """The project's dhcpd hooks snippet rendered for hooks/dhcpd-event."""
    path = tmp_path / "leasedns-hooks.conf"
    path.write_text(leasedns_snippet(HOOK))
    return path


@pytest.fixture
def make_lab(tmp_path: Path, hooks_snippet: Path) -> Iterator[Callable[..., Lab]]:
    """Factory for entered Labs under tmp_path; all are closed after the test."""
    require_lab()
    with contextlib.ExitStack() as stack:
        count = 0

        def make(**kw: Any) -> Lab:
            nonlocal count
            count += 1
            kw.setdefault("hooks_snippet", hooks_snippet)
            kw.setdefault("peer_env", spool_env)
            return stack.enter_context(Lab(tmp_path / f"lab{count}", **kw))

        yield make
