"""Tests for `leasedns leases`: table, JSON lines, --all, problems and exit codes."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

from leasedns import cmd_leases

DATA = Path(__file__).parent / "data" / "leases"
NOW = 1714568400  # 2024-05-01 13:00:00 UTC


def run(*argv: str) -> tuple[int, str, str]:
    ap = argparse.ArgumentParser()
    cmd_leases.add_parser(ap.add_subparsers())
    args = ap.parse_args(["leases", *argv])
    out, err = io.StringIO(), io.StringIO()
    return args.run(args, out, err, now=NOW), out.getvalue(), err.getvalue()


def test_table_two_peers():
    a, b = str(DATA / "two-peers-a.leases"), str(DATA / "two-peers-b.leases")
    code, out, err = run(a, b)
    assert (code, err) == (0, "")
    w = max(len(a), len(b))
    assert out.splitlines() == [
        "ip          mac                state   starts               ends"
        "                 client-hostname  file",
        "192.0.2.30  02:00:00:00:00:bb  active  2024-05-01 12:00:00  2024-05-02 00:00:00"
        "  -                " + f"{b:<{w}}".rstrip(),
        "192.0.2.31  02:00:00:00:00:31  active  2024-05-01 09:00:00  2024-05-01 21:00:00"
        "  only-on-a        " + f"{a:<{w}}".rstrip(),
    ]


def test_json_all_and_problems_exit_1():
    path = str(DATA / "cut-mid-block.leases")
    code, out, err = run("--json", "--all", path)
    assert code == 1
    assert [json.loads(x)["ip"] for x in out.splitlines()] == ["192.0.2.20", "192.0.2.22"]
    assert json.loads(out.splitlines()[0]) == {
        "ip": "192.0.2.20",
        "mac": "02:00:00:00:00:20",
        "state": "active",
        "starts": 1714557600,
        "ends": 1714600800,
        "client-hostname": None,
        "file": path,
    }
    assert err.splitlines() == [
        f"{path}:7: lease 192.0.2.21: block is not closed (cut off?); skipped",
        f"{path}:22: lease 192.0.2.23: unterminated string (cut off?); skipped",
    ]


def test_all_shows_free():
    code, out, _ = run("--json", "--all", str(DATA / "freed-after-active.leases"))
    assert code == 0
    assert [(json.loads(x)["ip"], json.loads(x)["state"]) for x in out.splitlines()] == [
        ("192.0.2.10", "free"),
        ("192.0.2.11", "active"),
    ]


def test_unreadable_file_exit_2(tmp_path):
    missing = str(tmp_path / "nope.leases")
    code, out, err = run(missing, str(DATA / "two-peers-b.leases"))
    assert code == 2
    assert err == f"{missing}: cannot read: No such file or directory\n"
    assert "192.0.2.30" in out
