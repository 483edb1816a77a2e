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


def test_example_outputs_section_parses_when_uncommented() -> None:
    from leasedns import config

    lines, on = [], False
    for line in (CONF / "leasedns.yaml").read_text().splitlines():
        if line == "#outputs:":
            on = True
        elif not line.startswith("#  "):
            on = False
        lines.append(line[1:] if on else line)
    c = config.parse("\n".join(lines), "leasedns.yaml")
    assert c.outputs == (
        config.TinydnsOutput(),
        config.HostsOutput(
            Path("/var/lib/leasedns-hosts/hosts"),
            ("sudo", "-n", "/usr/bin/systemctl", "reload", "dnsmasq"),
        ),
        config.Rfc2136Output(
            server="192.0.2.2",
            zone="lan.example",
            reverse_zones=("2.0.192.in-addr.arpa",),
            tsig_key_file=Path("/etc/leasedns/leasedns.key"),
        ),
        config.UnboundOutput(("unbound-control", "-c", "/etc/unbound/unbound.conf")),
    )
    snippet_ = (CONF / "dnsmasq-leasedns.conf").read_text()
    assert "addn-hosts=/var/lib/leasedns-hosts/hosts\n" in snippet_
    assert f"local=/{c.domain}/\n" in snippet_


@pytest.mark.integration
def test_conf_dnsmasq_snippet_passes_dnsmasq_test() -> None:
    p = subprocess.run(
        [tool("dnsmasq"), "--test", f"--conf-file={CONF / 'dnsmasq-leasedns.conf'}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert p.returncode == 0, p.stderr
    assert "syntax check OK" in p.stderr


@pytest.mark.integration
def test_dnsmasq_test_catches_a_broken_snippet(tmp_path: Path) -> None:
    broken = tmp_path / "broken.conf"
    broken.write_text(
        (CONF / "dnsmasq-leasedns.conf").read_text().replace("addn-hosts", "addn-host")
    )
    p = subprocess.run(
        [tool("dnsmasq"), "--test", f"--conf-file={broken}"], capture_output=True, timeout=30
    )
    assert p.returncode != 0
