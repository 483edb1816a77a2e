"""The Debian package under test: built once per session by `make deb`, installed with apt,
always purged afterwards.

Installing a package changes the machine (a system user, /etc, /var/lib), so this refuses to
start when leasedns is already installed, left as config files, or its user or directories
exist: an admin's install is never touched, and what the tests install they purge again, also
when a test fails. Tests import it as `import debpkg` (tests/ is on sys.path, as for helpers).
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import ROOT, SBIN_PATH, need, tool

PKG = "leasedns"
PROGRAM = Path("/usr/bin/leasedns")
HOOK = Path("/usr/lib/leasedns/dhcpd-event")
SNIPPET = Path("/etc/dhcp/leasedns-hooks.conf")
CONFIG = Path("/etc/leasedns/leasedns.yaml")
STATE = Path("/var/lib/leasedns")
SYSTEMD = Path("/lib/systemd/system")
DROPIN = SYSTEMD / "isc-dhcp-server.service.d" / "leasedns.conf"
APPARMOR = Path("/etc/apparmor.d/dhcpd.d/leasedns")
UNITS = (
    "leasedns-apply.path",
    "leasedns-apply.service",
    "leasedns-apply.timer",
    "leasedns-reconcile.service",
    "leasedns-reconcile.timer",
)

# Every file the package must install (root:root), with its mode.
FILES: dict[Path, int] = {
    PROGRAM: 0o755,
    HOOK: 0o755,
    SNIPPET: 0o644,
    CONFIG: 0o644,
    DROPIN: 0o644,
    APPARMOR: 0o644,
    **{SYSTEMD / u: 0o644 for u in UNITS},
    Path("/usr/share/man/man8/leasedns.8.gz"): 0o644,
    Path("/usr/share/doc/leasedns/README.md.gz"): 0o644,
    Path("/usr/share/doc/leasedns/copyright"): 0o644,
}

# The conffiles dpkg must keep on remove and upgrade.
CONFFILES = (CONFIG, SNIPPET, APPARMOR)

APT_ENV = {
    "PATH": SBIN_PATH,
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
}


def run(
    *cmd: str | Path, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run cmd without a terminal; with check, a failure shows the command and its output."""
    p = subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=APT_ENV,
        cwd=ROOT,
    )
    if check and p.returncode != 0:
        raise AssertionError(
            f"`{' '.join(map(str, cmd))}` exited {p.returncode}\n"
            f"stdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}"
        )
    return p


def status() -> str:
    """dpkg's state of the package: 'installed', 'config-files', ... or '' when unknown."""
    p = run("dpkg-query", "-W", "-f=${db:Status-Status}", PKG, check=False)
    return p.stdout.strip() if p.returncode == 0 else ""


def gone() -> bool:
    """True when dpkg no longer knows the package (purged)."""
    return status() in ("", "not-installed")


def user_exists() -> bool:
    try:
        pwd.getpwnam(PKG)
    except KeyError:
        return False
    return True


def need_dpkg() -> None:
    """Skip (fail under CI=true) without root or the Debian tools."""
    need(os.geteuid() == 0, "installing the Debian package needs root")
    for prog in ("dpkg", "dpkg-query", "apt-get", "dpkg-buildpackage", "make", "git"):
        tool(prog)


@functools.cache
def build() -> Path:
    """`make deb` in the repository, once per session; the .deb in dist/."""
    p = run("make", "deb")
    name = p.stdout.strip().splitlines()[-1]
    deb = ROOT / name
    assert name.startswith("dist/leasedns_") and deb.is_file(), (
        f"make deb did not end with the path of the .deb it built: {name!r}\n{p.stdout[-2000:]}"
    )
    return deb


def apt_install(deb: Path) -> None:
    """Install (or reinstall over itself) the .deb, dependencies resolved by apt."""
    run("apt-get", "install", "-y", "--reinstall", deb)
    assert status() == "installed", f"after installing {deb}, dpkg says: {status()!r}"


def purge() -> None:
    """Purge the package and check dpkg has forgotten it."""
    if not gone():
        run("apt-get", "purge", "-y", PKG)
    assert gone(), f"after apt-get purge {PKG}, dpkg still says: {status()!r}"


def refuse_foreign_install() -> None:
    """Fail when this machine already has leasedns (an admin's, or a crashed run's leftovers)."""
    left = []
    if not gone():
        left.append(f"dpkg status {status()!r}")
    if user_exists():
        left.append(f"user {PKG}")
    left += [str(p) for p in (STATE, CONFIG.parent) if p.exists()]
    if left:
        pytest.fail(
            f"leasedns is already on this machine ({', '.join(left)}): the package test installs"
            " and purges it, so it does not touch an existing install. Purge it first"
            f" (apt-get purge {PKG}) on a machine meant for tests."
        )


@contextlib.contextmanager
def installed_package() -> Iterator[Path]:
    """Build, install with apt, yield the .deb; purge afterwards even when the test failed."""
    need_dpkg()
    refuse_foreign_install()
    deb = build()
    try:
        apt_install(deb)
        yield deb
    finally:
        purge()
