"""docs/leasedns.8, the manual page the Debian package installs: it documents every command the
program knows, and groff renders it without a warning (lintian and `man` would show them)."""

from __future__ import annotations

import re
import subprocess

from helpers import ROOT, tool
from leasedns.cli import COMMANDS

MANPAGE = ROOT / "docs" / "leasedns.8"


def _section(text: str, name: str) -> str:
    """The roff source of one `.SH name` section, up to the next `.SH`."""
    m = re.search(rf'^\.SH "?{re.escape(name)}"?\n(.*?)(?=^\.SH |\Z)', text, re.M | re.S)
    assert m is not None, f"{MANPAGE}: no `.SH {name}` section"
    return m.group(1)


def _commands_listed(text: str) -> list[str]:
    """The command names the COMMANDS section gives a `.TP` entry: the first word of the line
    after each `.TP`, roff's escaped hyphens read back as `-`."""
    section = _section(text, "COMMANDS")
    heads = re.findall(r"^\.TP\n(.*)$", section, re.M)
    names = []
    for head in heads:
        word = re.sub(r"^\.[BI]R? ", "", head).split()[0].strip('"')
        names.append(word.replace("\\-", "-"))
    return names


def test_the_commands_section_has_an_entry_for_every_command_and_no_other() -> None:
    listed = _commands_listed(MANPAGE.read_text())
    assert sorted(listed) == sorted(COMMANDS)
    assert len(listed) == len(set(listed)), f"a command is listed twice: {listed}"


def test_the_page_has_the_sections_a_manual_page_needs() -> None:
    text = MANPAGE.read_text()
    assert re.search(r"^\.TH LEASEDNS 8 ", text, re.M)
    for name in (
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "COMMANDS",
        "OPTIONS",
        "CONFIGURATION",
        "FILES",
        "ENVIRONMENT",
        "EXIT STATUS",
        "EXAMPLES",
        "SEE ALSO",
    ):
        _section(text, name)


def test_files_names_what_the_package_installs() -> None:
    files = _section(MANPAGE.read_text(), "FILES").replace("\\-", "-")
    for path in (
        "/usr/bin/leasedns",
        "/usr/lib/leasedns/dhcpd-event",
        "/etc/dhcp/leasedns-hooks.conf",
        "/etc/leasedns/leasedns.yaml",
        "/lib/systemd/system/leasedns-apply.path",
        "/lib/systemd/system/isc-dhcp-server.service.d/leasedns.conf",
        "/etc/apparmor.d/dhcpd.d/leasedns",
        "/var/lib/leasedns/spool/",
    ):
        assert f".I {path}\n" in files, f"{MANPAGE}: FILES has no entry for {path}"


def test_groff_renders_the_page_without_a_warning() -> None:
    groff = tool("groff")
    done = subprocess.run(
        [groff, "-man", "-ww", "-z", str(MANPAGE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
