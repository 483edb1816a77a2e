"""Config errors name the file and line and say what to do."""

from pathlib import Path

import pytest

from leasedns import config
from leasedns.config import ConflictPolicy, NamePolicy
from leasedns.errors import ConfigError

GOOD = """\
peer: peer-a
domain: Lab.Example.
subnets: [192.0.2.0/24]
names:
  policy: strict
  conflict: first
  protected: [www, ns]
tinydns:
  root: /srv/tinydns/root
  static: [/etc/leasedns/static.data]
dhcpd:
  conf: /etc/dhcp/dhcpd.conf
"""


def test_good_config_with_defaults() -> None:
    c = config.parse(GOOD, "x.yaml")
    assert c.peer == "peer-a" and c.domain == "lab.example"
    assert c.name_policy is NamePolicy.STRICT and c.conflict_policy is ConflictPolicy.FIRST
    assert c.protected == {"www", "ns"}
    assert str(c.spool_dir) == "/var/lib/leasedns/spool"
    assert str(c.journal_dir) == "/var/lib/leasedns/journal"
    assert c.dhcpd_conf == Path("/etc/dhcp/dhcpd.conf")
    assert c.static_name_order == ("ddns-hostname", "host-name", "declaration")
    assert c.guard_fraction == 0.5 and c.coalesce_secs == 0.2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "peer: a\ndomain: x.example\nnames:\n  policy: lenient\n",
            "x.yaml:4: policy must be 'sanitize' or 'strict', not 'lenient'",
        ),
        (
            "peer: a\ndomain: x.example\nttl: -1\n",
            "x.yaml:3: ttl must be a whole number from 0 to 2147483647",
        ),
        (
            "peer: a\ndomain: x.example\ntinydns:\n  rot: /x\n",
            "x.yaml:4: unknown key 'tinydns.rot'; known: data_program, root, static",
        ),
        ("domain: x.example\n", "x.yaml:1: missing required key 'peer'"),
        (
            "peer: a\ndomain: x.example\nsubnets: [192.0.2.0/33]\n",
            "x.yaml:3: subnets: '192.0.2.0/33' is not valid: '33' is not a valid netmask",
        ),
        (
            "peer: a\ndomain: bad_domain!\n",
            "x.yaml:2: domain 'bad_domain!' must be letters, digits, '-' and dots",
        ),
        (
            "peer: a b\ndomain: x.example\n",
            "x.yaml:1: peer must be a short name of letters, digits, '-', '_' or '.'",
        ),
        ("peer: a\n  domain: [\n", "x.yaml:2: not valid YAML: mapping values are not allowed here"),
        ("", "x.yaml:1: the config is empty; at least `peer:` and `domain:` are needed"),
    ],
)
def test_config_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse(text, "x.yaml")
    assert str(info.value) == message


def test_missing_config_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such config file; copy conf/leasedns\.yaml"):
        config.load(str(tmp_path / "nope.yaml"))


def test_example_config_in_conf_is_valid() -> None:
    c = config.load(str(Path(__file__).parent.parent / "conf" / "leasedns.yaml"))
    assert c.peer and c.domain


def test_example_config_sync_and_check_sections_parse_when_uncommented() -> None:
    text = (Path(__file__).parent.parent / "conf" / "leasedns.yaml").read_text()
    lines = []
    on = False
    for line in text.splitlines():
        if line in ("#sync:", "#check:"):
            on = True
        elif not line.startswith("#"):
            on = False
        lines.append(line[1:] if on else line)
    c = config.parse("\n".join(lines), "leasedns.yaml")
    (p,) = c.partners
    assert p.name == "dhcp-b" and p.rsync_target == "leasedns@dhcp-b:/var/lib/leasedns/journal/"
    assert p.notify[-2:] == ("-q", "apply")
    assert c.check_servers == (("dhcp-a", "192.0.2.2"), ("dhcp-b", "192.0.2.3"))
    assert c.rsync_args == ("-e", "ssh -i /var/lib/leasedns/.ssh/id_ed25519")


def test_partner_must_not_be_this_peer() -> None:
    with pytest.raises(ConfigError, match=r"x\.yaml:5: each partner needs a `name:`"):
        config.parse("peer: a\ndomain: x.example\nsync:\n  partners:\n    - name: a\n", "x.yaml")


def test_line_numbers_count_newlines_as_an_editor_does() -> None:
    # YAML also breaks lines at a lone CR; an editor on this system does not.
    with pytest.raises(ConfigError) as info:
        config.parse("peer: a\rdomain: x.example\r\rttl: -1\n", "x.yaml")
    assert str(info.value).startswith("x.yaml:1: ttl must be")
    with pytest.raises(ConfigError) as info:
        config.parse("peer: a\r\ndomain: x.example\r\nttl: -1\r\n", "x.yaml")
    assert str(info.value).startswith("x.yaml:3: ttl must be")
