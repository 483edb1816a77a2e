"""End to end on loopback: real hook, apply, tinydns-data and tinydns, queried with dnspython."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dns.resolver
import pytest

from helpers import HOOK, tool, write_config
from leasedns import config

pytestmark = pytest.mark.integration


def fire(cfg: config.Config, *args: str) -> None:
    """Run the hook as dhcpd would: its own environment only, stdio on /dev/null."""
    leasedns = shutil.which("leasedns") or str(Path(sys.executable).with_name("leasedns"))
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LEASEDNS_SPOOL": str(cfg.spool_dir),
        "LEASEDNS_CONFIG": str(cfg.path),
        "LEASEDNS_BIN": leasedns,
    }
    p = subprocess.run(
        [str(HOOK), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=10,
    )
    assert p.returncode == 0, p.stderr


def wait_for(check, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, dns.exception.DNSException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def a(r: dns.resolver.Resolver, name: str) -> list[str]:
    return sorted(x.to_text() for x in r.resolve(name, "A"))


def ptr(r: dns.resolver.Resolver, ip: str) -> list[str]:
    return sorted(x.to_text() for x in r.resolve_address(ip))


def test_hook_to_dns_answers_with_time_to_die(tmp_path: Path, tinydns_factory) -> None:  # type: ignore[no-untyped-def]
    tool("tinydns-data")
    cfg = config.load(
        str(write_config(tmp_path, names={"protected": ["www"]}, build={"coalesce_secs": 0.1}))
    )
    cfg.spool_dir.mkdir(parents=True)
    server = tinydns_factory(cfg.tinydns_root)
    r = server.resolver()

    fire(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", "Laptop_7", "", "600")
    fire(cfg, "commit", "192.0.2.101", "2:0:0:0:0:2", "shortlived", "", "3")
    fire(cfg, "commit", "192.0.2.102", "2:0:0:0:0:3", "www", "", "600")
    fire(
        cfg,
        "commit",
        "192.0.2.103",
        "2:0:0:0:0:4",
        "evil:1.2.3.4\n=x.lab.example:6.6.6.6",
        "",
        "600",
    )
    t_commit = time.time()

    assert wait_for(lambda: a(r, "laptop-7.lab.example")) == ["192.0.2.100"]
    assert ptr(r, "192.0.2.100") == ["laptop-7.lab.example."]
    assert a(r, "shortlived.lab.example") == ["192.0.2.101"]
    assert a(r, "evil1.lab.example") == ["192.0.2.103"]  # the injection became one plain name
    with pytest.raises(dns.resolver.NXDOMAIN):
        r.resolve("x.lab.example", "A")
    with pytest.raises(dns.resolver.NXDOMAIN):
        r.resolve("www.lab.example", "A")  # protected: refused, not published
    data = (cfg.tinydns_root / "data").read_text()
    assert "\n=www" not in data and "6.6.6.6" not in data

    # Time-to-die: the record disappears at lease end with no event and no rebuild.
    cdb_mtime = (cfg.tinydns_root / "data.cdb").stat().st_mtime_ns
    ttl = r.resolve("shortlived.lab.example", "A").rrset.ttl
    assert 0 < ttl <= 3
    # The lease ends at floor(start) + 3; tinydns serves a record through its last second.
    time.sleep(max(0.0, int(t_commit) + 4.3 - time.time()))
    with pytest.raises(dns.resolver.NXDOMAIN):
        r.resolve("shortlived.lab.example", "A")
    assert (cfg.tinydns_root / "data.cdb").stat().st_mtime_ns == cdb_mtime
    assert a(r, "laptop-7.lab.example") == ["192.0.2.100"]

    # Release: the name goes with the next build.
    fire(cfg, "release", "192.0.2.100", "2:0:0:0:0:1", "Laptop_7", "", "")

    def gone() -> None:
        try:
            r.resolve("laptop-7.lab.example", "A")
        except dns.resolver.NXDOMAIN:
            return
        raise AssertionError("laptop-7 still resolves")

    wait_for(gone)
    assert not list(cfg.spool_dir.glob("ev-*"))
    assert os.path.exists(cfg.spool_dir / "rejected") is False or not any(
        (cfg.spool_dir / "rejected").iterdir()
    )
