"""Two peers under load (bench/bench_load.py with N=500): nothing lost, duplicated or different.

2 peers x 4 concurrent writers x 500 commits through the real hook (which starts
`leasedns apply` itself), with `leasedns apply`, `leasedns sync` and
`leasedns reconcile --check` looping on both peers meanwhile and real rsync between
them; then one sync each way and an apply on both. bench/bench_load.py runs the
same with 5,000 events per writer.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from helpers import ROOT, tool

sys.path.insert(0, str(ROOT / "bench"))

from bench_load import DOMAIN, PEERS, expected, run_load

pytestmark = pytest.mark.integration


def test_two_peers_four_writers_each_lose_nothing_duplicate_nothing_and_agree(
    tmp_path: Path,
) -> None:
    n = int(os.environ.get("LEASEDNS_LOAD_EVENTS", "500"))
    writers = 4
    tool("rsync")
    res = run_load(tmp_path, n, writers, tool("tinydns-data"))
    events = len(PEERS) * writers * n
    rebuilds = sum(res.rebuilds.values())
    print(
        f"\nload: {events} events in {res.write_secs:.1f} s ({res.rate:.0f} events/s through "
        f"the hooks), converged after {res.total_secs:.1f} s; tinydns-data runs {res.rebuilds} "
        f"({rebuilds / events:.3f} per event); apply processes from hooks/notify "
        f"{res.hook_applies}; loops {dict(sorted(res.loops.items()))}"
    )
    assert res.events == events
    assert res.hook_failures == 0, res.problems
    assert (res.lost, res.duplicated, res.rewritten) == (0, 0, 0), res.problems
    assert res.problems == []
    # Every expected name is in both peers' data, and the data files are the same bytes.
    datas = [(tmp_path / p / "root" / "data").read_bytes() for p in PEERS]
    assert datas[0] == datas[1]
    published = {
        line[1:].split(":")[0] for line in datas[0].decode().splitlines() if line[:1] == "="
    }
    assert {f"{name}.{DOMAIN}" for name in expected(n, writers).values()} <= published
    # Coalescing: far fewer builds than events, on each peer.
    for peer, runs in res.rebuilds.items():
        assert 1 <= runs <= events // 20, f"{peer}: {runs} tinydns-data runs for {events} events"
    # The concurrent commands ran, and apply and sync never failed while the writers wrote.
    for peer in PEERS:
        for what in ("apply", "sync", "reconcile --check"):
            assert any(k.startswith(f"{peer} {what} exit") for k in res.loops), (peer, what)
        bad = {
            k: v
            for k, v in res.loops.items()
            if k.startswith((f"{peer} apply exit", f"{peer} sync exit"))
            and not k.endswith("exit 0")
        }
        assert not bad, (bad, res.errors)
