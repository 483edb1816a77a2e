"""The Debian package as an admin gets it: `make deb`, installed with apt, checked file by file,
then upgraded over itself, removed, reinstalled and purged.

Needs root and dpkg (skips without them, fails under CI=true); refuses to run on a machine that
already has leasedns; purges the package afterwards even when a test fails. The package's lab
scenario (two dhcpd peers running the packaged hook) is tests/lab/test_deb_lab.py.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import debpkg
from debpkg import CONFIG, HOOK, PROGRAM, SNIPPET, STATE, run
from helpers import tool

pytestmark = pytest.mark.integration

JOURNAL = STATE / "journal"
SPOOL = STATE / "spool"
ADMIN_LINE = "# admin: kept across upgrade, remove and reinstall\n"


@pytest.fixture(scope="module")
def package() -> Iterator[Path]:
    with debpkg.installed_package() as deb:
        yield deb


def owner(path: Path) -> tuple[str, str, int]:
    """(user, group, mode) of path."""
    st = path.lstat()
    return (
        pwd.getpwuid(st.st_uid).pw_name,
        grp.getgrgid(st.st_gid).gr_name,
        stat.S_IMODE(st.st_mode),
    )


def dhcpd_group() -> str:
    """The group the hook runs as: dhcpd's where it has one (Ubuntu), else leasedns (Debian's
    dhcpd runs as root)."""
    try:
        grp.getgrnam("dhcpd")
    except KeyError:
        return "leasedns"
    return "dhcpd"


def expected_layout() -> dict[Path, tuple[str, str, int]]:
    g = dhcpd_group()
    return {
        STATE: ("leasedns", g, 0o750),
        JOURNAL: ("leasedns", "leasedns", 0o750),
        SPOOL: ("leasedns", g, 0o2770),
    }


def test_every_file_is_installed_with_its_owner_and_mode(package: Path) -> None:
    wrong = {}
    for path, mode in debpkg.FILES.items():
        if not path.is_file() or path.is_symlink():
            wrong[str(path)] = "missing (or not a regular file)"
        elif owner(path) != ("root", "root", mode):
            wrong[str(path)] = f"{owner(path)}, expected ('root', 'root', {oct(mode)})"
    assert not wrong, f"{package.name} installed wrongly: {wrong}"
    listed = run("dpkg", "-L", debpkg.PKG).stdout.splitlines()
    assert {str(p) for p in debpkg.FILES} <= set(listed), "dpkg -L does not list them all"


def test_state_layout_and_system_user(package: Path) -> None:
    got = {p: owner(p) for p in expected_layout()}
    assert got == expected_layout()
    user = pwd.getpwnam("leasedns")
    assert user.pw_uid < 1000, f"leasedns must be a system user: {user}"
    assert user.pw_dir == str(STATE)
    assert user.pw_shell in ("/usr/sbin/nologin", "/bin/false"), user.pw_shell
    writable = [
        str(Path(d) / n)
        for d, dirs, files in os.walk(STATE)
        for n in [".", *dirs, *files]
        if os.lstat(Path(d) / n).st_mode & stat.S_IWOTH
    ]
    assert not writable, f"world-writable under {STATE}: {writable}"


def test_version_names_the_c_lease_parser(package: Path) -> None:
    out = run(PROGRAM, "--version").stdout
    assert "lease parser: C" in out, f"{PROGRAM} --version: {out!r}"


def test_dhcpd_accepts_the_packaged_snippet(package: Path, tmp_path: Path) -> None:
    text = SNIPPET.read_text()
    assert f'"{HOOK}"' in text, f"{SNIPPET} does not run {HOOK}:\n{text}"
    assert os.access(HOOK, os.X_OK)
    conf = tmp_path / "dhcpd.conf"
    conf.write_text(
        "authoritative;\nddns-update-style none;\n"
        "subnet 192.0.2.0 netmask 255.255.255.0 { range 192.0.2.100 192.0.2.200; }\n"
        f'include "{SNIPPET}";\n'
    )
    p = run(tool("dhcpd"), "-t", "-4", "-cf", conf, check=False)
    assert p.returncode == 0, f"dhcpd -t rejects {conf} with {SNIPPET}:\n{p.stderr}"


def test_nothing_runs_until_peer_and_domain_are_set(package: Path) -> None:
    p = run(PROGRAM, "-c", CONFIG, "status", check=False)
    assert p.returncode != 0, f"leasedns ran with the unedited {CONFIG}: {p.stdout}"
    assert str(CONFIG) in p.stderr and "peer" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr, p.stderr


def test_units_installed_but_not_enabled(package: Path) -> None:
    dropin = debpkg.DROPIN.read_text().splitlines()
    for line in (
        f"Environment=LEASEDNS_SPOOL={SPOOL}",
        f"Environment=LEASEDNS_CONFIG={CONFIG}",
        "Environment=LEASEDNS_NO_APPLY=1",
    ):
        assert line in dropin, f"{debpkg.DROPIN} lacks {line!r}"
    for unit in (u for u in debpkg.UNITS if u.endswith(".service")):
        assert f"ExecStart={PROGRAM} " in (debpkg.SYSTEMD / unit).read_text(), (
            f"{unit} does not run {PROGRAM}"
        )
    enabled = sorted(str(p) for p in Path("/etc/systemd/system").glob("*/leasedns-*"))
    assert not enabled, f"the package enabled units before peer/domain are set: {enabled}"


def test_conffiles(package: Path) -> None:
    out = run("dpkg-query", "-W", "-f=${Conffiles}", debpkg.PKG).stdout
    listed = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert {str(p) for p in debpkg.CONFFILES} <= listed, f"conffiles: {listed}"


def test_upgrade_remove_reinstall_purge(package: Path) -> None:
    """Ends installed again (freshly, after a purge): the other tests do not depend on order."""
    # The admin edits the config; the peer has a journal and merge state.
    with CONFIG.open("a") as f:
        f.write(ADMIN_LINE)
    config = CONFIG.read_text()
    journal = JOURNAL / "dhcp-a" / "events-00000001.jsonl"
    journal.parent.mkdir()
    journal.write_text('{"kept": true}\n')
    merge = STATE / "merge-state.sqlite"
    merge.write_bytes(b"merge state\n")
    for p in (journal.parent, journal, merge):
        os.chown(p, pwd.getpwnam("leasedns").pw_uid, grp.getgrnam("leasedns").gr_gid)
    os.chmod(merge, 0o640)
    kept = [*expected_layout(), journal.parent, journal, merge]
    before = {p: owner(p) for p in kept}
    uid = pwd.getpwnam("leasedns").pw_uid

    # Upgrade path, twice: dpkg -i over the installed version runs every maintainer script
    # again (prerm upgrade, postrm upgrade, postinst configure).
    for _ in range(2):
        run("dpkg", "-i", package)
        assert debpkg.status() == "installed"
        assert CONFIG.read_text() == config, "the upgrade replaced the admin's config"
        assert journal.read_text() == '{"kept": true}\n' and merge.read_bytes() == b"merge state\n"
        assert {p: owner(p) for p in kept} == before, "the upgrade changed owners or modes"
        assert pwd.getpwnam("leasedns").pw_uid == uid

    # remove keeps config, journals, merge state and the user; the programs go.
    run("apt-get", "remove", "-y", debpkg.PKG)
    assert debpkg.status() == "config-files"
    assert not PROGRAM.exists() and not HOOK.exists()
    assert CONFIG.read_text() == config and SNIPPET.is_file()
    assert journal.is_file() and merge.is_file()
    assert {p: owner(p) for p in kept} == before, "remove changed owners or modes"
    assert pwd.getpwnam("leasedns").pw_uid == uid
    run("apt-get", "remove", "-y", debpkg.PKG)  # a second remove is a no-op

    # reinstall over the kept files
    debpkg.apt_install(package)
    assert PROGRAM.is_file() and HOOK.is_file()
    assert CONFIG.read_text() == config, "reinstall replaced the admin's config"
    assert journal.is_file() and merge.is_file()
    assert {p: owner(p) for p in kept} == before, "reinstall changed owners or modes"
    assert pwd.getpwnam("leasedns").pw_uid == uid

    # purge removes state, config, snippet and the user
    debpkg.purge()
    left = [
        str(p)
        for p in (STATE, CONFIG, CONFIG.parent, SNIPPET, debpkg.APPARMOR, PROGRAM)
        if p.exists()
    ]
    assert not left, f"purge left {left}"
    assert not debpkg.user_exists(), "purge left the leasedns user"
    with pytest.raises(KeyError):
        grp.getgrnam("leasedns")

    # install after purge: a fresh config and state layout, the user made again
    debpkg.apt_install(package)
    assert ADMIN_LINE not in CONFIG.read_text()
    assert {p: owner(p) for p in expected_layout()} == expected_layout()
    assert not journal.exists()
