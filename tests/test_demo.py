"""`make demo` works: both peers identical, the expected answers, nothing left behind."""

import os
import subprocess
import sys

import pytest

from helpers import SBIN_PATH, need, tool

pytestmark = pytest.mark.integration


def test_demo_runs_the_whole_pipeline() -> None:
    tool("tinydns-data")
    need(os.geteuid() == 0, "the demo serves with a real tinydns only as root")
    p = subprocess.run(
        [sys.executable, "-m", "leasedns.commands.demo"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": SBIN_PATH},
    )
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "demo: peer-a and peer-b data files are identical" in out
    answers = {
        line.split()[0]: line.split()[1]
        for line in out.split("--- answers", 1)[1].splitlines()[1:]
        if line.strip() and not line.startswith("PTR")
    }
    assert answers == {
        "alice-laptop.demo.example": "192.0.2.100",
        "bobs-pc.demo.example": "192.0.2.101",
        "build-server.demo.example": "192.0.2.102",
        "roaming.demo.example": "192.0.2.150",
        "gone-home.demo.example": "NXDOMAIN",
        "evil1.demo.example": "192.0.2.130",
        "www.demo.example": "NXDOMAIN",
        "printer.demo.example": "192.0.2.50",
    }
    assert "roaming.demo.example." in out.split("PTR 192.0.2.150", 1)[1]
    # the second output: a hosts file, its first lines shown, and both outputs checked
    hosts = out.split("--- the hosts output (peer-a), 6 names, the first ones ---\n", 1)[1]
    assert hosts.split("\n\n", 1)[0].splitlines() == [
        "192.0.2.50 printer.demo.example",
        "192.0.2.100 alice-laptop.demo.example",
        "192.0.2.101 bobs-pc.demo.example",
        "192.0.2.102 build-server.demo.example",
        "192.0.2.130 evil1.demo.example",
    ]
    checked = out.split("--- leasedns check (peer-a): every output asked what it holds ---\n")[1]
    lines = checked.splitlines()
    assert lines[:2] == ["leasedns check OK", "output tinydns: 5 names ok"]
    assert lines[2].startswith("output hosts /tmp/leasedns-demo-")
    assert lines[2].endswith("/peer-a/hosts: 5 names ok")
    assert "\n1 = tinydns\n2 = hosts /tmp/leasedns-demo-" in out  # show's legend
