"""Shared fixtures and pytest settings; the helpers tests import are in helpers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from helpers import IN_CI, Tinydns, write_config
from leasedns import config

# CI runs the property and fuzz tests on a fixed sequence of examples, so that a red CI
# always points at a change, not at luck; a developer's run explores new examples (and
# LEASEDNS_FUZZ_EXAMPLES scales the fuzz budget for a long run).
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if IN_CI:
    hypothesis_settings.load_profile("ci")


@pytest.fixture
def cfg_path(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def cfg(cfg_path: Path) -> config.Config:
    return config.load(str(cfg_path))


@pytest.fixture
def tinydns_factory() -> Iterator[object]:
    started: list[Tinydns] = []

    def start(root: Path) -> Tinydns:
        t = Tinydns(root)
        started.append(t)
        return t

    yield start
    for t in started:
        t.stop()
