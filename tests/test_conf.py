"""Every dhcpd snippet in conf/ is checked by the real `dhcpd -t`; conf/ matches the package."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from helpers import ROOT, tool
from leasedns.commands.snippet import snippet

CONF = ROOT / "conf"


def dhcpd_t(text: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    f = tmp / "dhcpd.conf"
    f.write_text(text)
    return subprocess.run(
        [tool("dhcpd"), "-t", "-4", "-cf", str(f)], capture_output=True, text=True, timeout=30
    )


BASE = "subnet 192.0.2.0 netmask 255.255.255.0 { range 192.0.2.100 192.0.2.199; }\n"


@pytest.mark.integration
def test_conf_hook_snippet_passes_dhcpd_t(tmp_path: Path) -> None:
    p = dhcpd_t(BASE + f'include "{CONF / "dhcpd-hooks.conf"}";\n', tmp_path)
    assert p.returncode == 0, p.stderr


@pytest.mark.integration
def test_printed_snippet_passes_dhcpd_t(tmp_path: Path) -> None:
    p = dhcpd_t(BASE + snippet("/usr/local/bin/dhcpd-event"), tmp_path)
    assert p.returncode == 0, p.stderr


@pytest.mark.integration
def test_example_failover_config_passes_dhcpd_t(tmp_path: Path) -> None:
    text = (
        (CONF / "dhcpd.conf.example")
        .read_text()
        .replace("/etc/dhcp/leasedns-hooks.conf", str(CONF / "dhcpd-hooks.conf"))
    )
    p = dhcpd_t(text, tmp_path)
    assert p.returncode == 0, p.stderr


@pytest.mark.integration
def test_dhcpd_t_catches_a_broken_snippet(tmp_path: Path) -> None:
    broken = (CONF / "dhcpd-hooks.conf").read_text().replace('"commit",', '"commit"', 1)
    assert dhcpd_t(BASE + broken, tmp_path).returncode != 0


def test_conf_snippet_is_the_package_template_for_opt_leasedns() -> None:
    assert (CONF / "dhcpd-hooks.conf").read_text() == snippet("/opt/leasedns/bin/dhcpd-event")


def test_every_optional_hook_value_is_wrapped_in_pick_first_value() -> None:
    text = (CONF / "dhcpd-hooks.conf").read_text()
    for var in ("option host-name", "host-decl-name", "lease-time", "substring(hardware"):
        for line in (
            ln for ln in text.splitlines() if var in ln and not ln.lstrip().startswith("#")
        ):
            assert "pick-first-value(" in line, line
