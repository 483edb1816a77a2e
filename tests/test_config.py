"""Config errors name the file and line and say what to do."""

from pathlib import Path

import pytest

from leasedns import config
from leasedns.errors import ConfigError
from leasedns.model import ConflictPolicy, NamePolicy, valid_peer

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
            "x.yaml:1: peer: 'a b' is not a plain name (at most 63 letters, digits, '-' or '_', "
            "starting with a letter or digit; it names a journal directory); "
            "use letters, digits and '-'",
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


@pytest.mark.parametrize("name", [".", "..", ".hidden", "a/b", "-a", "a.b", "a\\n", "x" * 64])
def test_a_peer_name_is_a_plain_label_everywhere(name: str) -> None:
    """`..` or `.` would make sync overwrite or delete the partner's journal root."""
    quoted = '"' + name + '"'
    for text, line, where in (
        (f"domain: x.example\npeer: {quoted}\n", 2, "peer"),
        (
            f"peer: a\ndomain: x.example\nsync:\n  partners:\n    - name: {quoted}\n",
            5,
            "sync.partners[].name",
        ),
        (
            f"peer: a\ndomain: x.example\ncheck:\n  servers:\n    {quoted}: 192.0.2.1\n",
            5,
            "check.servers",
        ),
    ):
        with pytest.raises(ConfigError) as info:
            config.parse(text, "x.yaml")
        assert str(info.value).startswith(f"x.yaml:{line}: {where}: ")
        assert "is not a plain name" in str(info.value)
        assert not valid_peer(name)


def test_plain_peer_names_are_accepted() -> None:
    for name in ("a", "peer-a", "dhcp_b", "DHCP1", "x" * 63):
        assert config.parse(f"peer: {name}\ndomain: x.example\n").peer == name
        assert valid_peer(name)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "peer: a\ndomain: x.example\npeer: b\n",
            "x.yaml:3: duplicate key 'peer' (first at line 1)",
        ),
        (
            "peer: a\ndomain: x.example\nbuild:\n  guard_min: 1\n  guard_min: 2\n",
            "x.yaml:5: duplicate key 'guard_min' (first at line 4)",
        ),
        (
            "peer: a\ndomain: x.example\ncheck:\n  servers:\n    b: 192.0.2.1\n    b: 192.0.2.2\n",
            "x.yaml:6: duplicate key 'b' (first at line 5)",
        ),
        (
            "peer: a\ndomain: x.example\nsync:\n  partners:\n    - name: b\n      name: c\n",
            "x.yaml:6: duplicate key 'name' (first at line 5)",
        ),
        (
            "peer: a\ndomain: x.example\nsync:\n  partners:\n    - name: b\n    - name: b\n",
            "x.yaml:6: partner 'b' is listed twice",
        ),
    ],
)
def test_duplicate_keys_are_errors_not_last_wins(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse(text, "x.yaml")
    assert str(info.value) == message


def test_a_number_in_exponent_form_is_a_number() -> None:
    c = config.parse("peer: a\ndomain: x.example\nbuild:\n  guard_fraction: 5e-1\n")
    assert c.guard_fraction == 0.5
    c = config.parse("peer: a\ndomain: x.example\nbuild:\n  coalesce_secs: 2E+0\n")
    assert c.coalesce_secs == 2.0
    for bad in ("half", "'5e-1'", "5e", "0x1p-1", ".nan"):
        with pytest.raises(ConfigError, match=r"x\.yaml:4: guard_fraction must be a number"):
            config.parse(f"peer: a\ndomain: x.example\nbuild:\n  guard_fraction: {bad}\n", "x.yaml")


# --- outputs ---------------------------------------------------------------------------------

HEAD = "peer: a\ndomain: x.example\n"


def test_without_outputs_the_tinydns_section_is_the_one_output() -> None:
    c = config.parse(GOOD, "x.yaml")
    assert c.outputs == (config.TinydnsOutput(),)
    assert c.tinydns_root == Path("/srv/tinydns/root")
    assert config.parse(HEAD, "x.yaml").outputs == (config.TinydnsOutput(),)


def test_outputs_add_to_the_tinydns_section_in_order() -> None:
    c = config.parse(
        GOOD
        + "outputs:\n"
        + "  - type: hosts\n    path: /var/lib/leasedns/hosts\n"
        + "    reload: [kill, -HUP, '1234']\n"
        + "  - type: hosts\n    path: /etc/hosts.d/lan\n",
        "x.yaml",
    )
    assert c.outputs == (
        config.TinydnsOutput(),
        config.HostsOutput(Path("/var/lib/leasedns/hosts"), ("kill", "-HUP", "1234")),
        config.HostsOutput(Path("/etc/hosts.d/lan")),
    )
    assert c.tinydns_root == Path("/srv/tinydns/root")


def test_outputs_alone_need_no_tinydns() -> None:
    c = config.parse(HEAD + "outputs:\n  - {type: hosts, path: /h}\n", "x.yaml")
    assert c.outputs == (config.HostsOutput(Path("/h")),)


def test_a_tinydns_output_entry_takes_the_tinydns_section_keys() -> None:
    c = config.parse(
        HEAD
        + "outputs:\n"
        + "  - type: hosts\n    path: /h\n"
        + "  - type: tinydns\n    root: /srv/t\n    data_program: /opt/tinydns-data\n"
        + "    static: [/etc/s.data]\n",
        "x.yaml",
    )
    assert c.outputs == (config.HostsOutput(Path("/h")), config.TinydnsOutput())
    assert (c.tinydns_root, c.tinydns_data) == (Path("/srv/t"), "/opt/tinydns-data")
    assert c.static_files == (Path("/etc/s.data"),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            HEAD + "outputs:\n  - type: bind\n",
            "x.yaml:4: outputs: unknown type 'bind'; known: hosts, rfc2136, tinydns, unbound",
        ),
        (
            HEAD + "outputs:\n  - type: rfc2136\n    zone: lab.example\n",
            "x.yaml:4: an rfc2136 output needs `server:` (the address of the zone's primary)",
        ),
        (
            HEAD + "outputs:\n  - type: rfc2136\n    server: ns1.x.example\n",
            "x.yaml:5: server: 'ns1.x.example' is not an IP address (the zone's primary)",
        ),
        (
            HEAD + "outputs:\n  - type: rfc2136\n    server: 127.0.0.1\n    zone: y.example\n",
            "x.yaml:6: zone: the names are in 'x.example', which is not in zone 'y.example'",
        ),
        (
            HEAD + "subnets: [192.0.2.0/24]\noutputs:\n  - type: rfc2136\n    server: 127.0.0.1\n"
            "    reverse_zones: [1.0.192.in-addr.arpa]\n",
            "x.yaml:7: reverse_zones: none covers subnet 192.0.2.0/24 (add "
            "'2.0.192.in-addr.arpa', or leave the subnet out)",
        ),
        (
            HEAD + "outputs:\n  - type: rfc2136\n    server: 127.0.0.1\n"
            "    reverse_zones: [x.org]\n",
            "x.yaml:6: reverse_zones: 'x.org' is not an in-addr.arpa zone",
        ),
        (
            HEAD + "outputs:\n  - type: rfc2136\n    server: 127.0.0.1\n    verify_secs: -1\n",
            "x.yaml:6: verify_secs must be a whole number from 0 to 2147483647",
        ),
        (
            HEAD + "outputs:\n  - type: rfc2136\n    server: 127.0.0.1\n    verify_secs: 5m\n",
            "x.yaml:6: verify_secs must be a whole number from 0 to 2147483647",
        ),
        (
            HEAD + "outputs:\n  - type: unbound\n    control: []\n",
            "x.yaml:5: control must name the unbound-control command",
        ),
        (
            HEAD + "outputs:\n  - path: /h\n",
            "x.yaml:4: each output needs a `type:` (hosts, rfc2136, tinydns, unbound)",
        ),
        (
            HEAD + "outputs:\n  - type: hosts\n",
            "x.yaml:4: a hosts output needs `path:` (the file the DNS server reads)",
        ),
        (
            HEAD + "outputs:\n  - type: hosts\n    path: /h\n    root: /x\n",
            "x.yaml:6: unknown key 'outputs[].root'; known: path, reload, type",
        ),
        (
            HEAD + "outputs:\n  - type: tinydns\n    path: /h\n",
            "x.yaml:5: unknown key 'outputs[].path'; known: data_program, root, static, type",
        ),
        (
            HEAD + "outputs:\n  - {type: hosts, path: /h}\n  - {type: hosts, path: /h}\n",
            "x.yaml:5: hosts output '/h' is listed twice (first at line 4)",
        ),
        (
            HEAD + "tinydns:\n  root: /t\noutputs:\n  - type: tinydns\n",
            "x.yaml:6: a second tinydns output (the first: the `tinydns:` section); "
            "leasedns publishes to one tinydns: keep one",
        ),
        (
            HEAD + "outputs:\n  - type: tinydns\n  - type: tinydns\n",
            "x.yaml:5: a second tinydns output (the first: line 4); "
            "leasedns publishes to one tinydns: keep one",
        ),
        (
            HEAD + "outputs:\n  - {type: hosts, path: /h, reload: kill -HUP 1}\n",
            "x.yaml:4: reload must be a list",
        ),
        (
            HEAD + "outputs: []\n",
            "x.yaml:3: outputs must be a list of outputs, each a mapping with `type:` "
            "(hosts, rfc2136, tinydns, unbound)",
        ),
        (
            HEAD + "outputs:\n  type: hosts\n",
            "x.yaml:4: outputs must be a list of outputs, each a mapping with `type:` "
            "(hosts, rfc2136, tinydns, unbound)",
        ),
        (
            HEAD + "outputs:\n  - hosts\n",
            "x.yaml:4: outputs[] must be a mapping of keys to values",
        ),
        (
            HEAD + "outputs:\n  - {type: [hosts]}\n",
            "x.yaml:4: type must be a single value",
        ),
    ],
)
def test_output_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse(text, "x.yaml")
    assert str(info.value) == message


def test_rfc2136_and_unbound_outputs_read_with_their_defaults() -> None:
    cfg = config.parse(
        HEAD + "subnets: [192.0.2.0/24, 10.1.0.0/16]\n"
        "outputs:\n"
        "  - type: rfc2136\n"
        "    server: 127.0.0.1\n"
        "    reverse_zones: [2.0.192.in-addr.arpa., 10.in-addr.arpa]\n"
        "    tsig_key_file: /etc/leasedns/leasedns.key\n"
        "  - type: unbound\n",
        "x.yaml",
    )
    assert cfg.outputs == (
        config.Rfc2136Output(
            server="127.0.0.1",
            zone="x.example",
            port=53,
            reverse_zones=("2.0.192.in-addr.arpa", "10.in-addr.arpa"),
            tsig_key_file=Path("/etc/leasedns/leasedns.key"),
        ),
        config.UnboundOutput(),
    )
    assert cfg.outputs[0].verify_secs == 300  # type: ignore[union-attr]
    one = config.parse(
        HEAD + "outputs:\n  - {type: rfc2136, server: 127.0.0.1, verify_secs: 0}\n", "x.yaml"
    )
    assert one.outputs[0].verify_secs == 0  # type: ignore[union-attr]  # every apply


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("peer:            # this peer's name\ndomain: x.example\n", "x.yaml:1: peer is empty"),
        ("peer: a\ndomain:   # the domain\n", "x.yaml:2: domain is empty"),
    ],
)
def test_an_empty_required_key_says_so_with_its_line(text: str, message: str) -> None:
    """The packaged config leaves `peer:` and `domain:` empty until the admin sets them."""
    with pytest.raises(ConfigError) as e:
        config.parse(text, "x.yaml")
    assert str(e.value) == message + ": set it (see the comment beside it)"


def _alias_bomb(levels: int = 30) -> str:
    """A mapping key made of aliases: each level holds the one before ten times, so its text
    (as `str()` of the key) is 10**levels long though the file is a few lines."""
    items = ["&l0 [x, x, x, x, x, x, x, x, x, x]"]
    items += [f"&l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "peer: a\ndomain: x.example\n? [" + ", ".join(items) + "]\n: 1\n"


def test_an_alias_bomb_is_refused_before_anything_is_expanded() -> None:
    with pytest.raises(ConfigError) as info:
        config.parse(_alias_bomb(), "x.yaml")
    assert str(info.value) == (
        "x.yaml:3: YAML aliases are not supported in leasedns.yaml (the anchor `&l0`); "
        "write each value out in full"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "peer: &p a\ndomain: x.example\n",
            "x.yaml:1: YAML aliases are not supported in leasedns.yaml (the anchor `&p`)",
        ),
        (
            "peer: a\ndomain: x.example\nnames:\n  protected: &n [www]\n",
            "x.yaml:4: YAML aliases are not supported in leasedns.yaml (the anchor `&n`)",
        ),
        (
            # The alias alone (to an anchor never defined) is refused as well.
            "peer: a\ndomain: x.example\nnames:\n  protected: *n\n",
            "x.yaml:4: YAML aliases are not supported in leasedns.yaml (the alias `*n`)",
        ),
        (
            "peer: a\ndomain: x.example\nsync:\n  partners:\n    - name: b\n      <<: *x\n",
            "x.yaml:6: YAML aliases are not supported in leasedns.yaml (the alias `*x`)",
        ),
        (
            "peer: a\ndomain: x.example\n? [peer, domain]\n: 1\n",
            "x.yaml:3: the config: a key must be a plain word, not a list",
        ),
        (
            "peer: a\ndomain: x.example\nbuild:\n  ? {guard_min: 1}\n  : 2\n",
            "x.yaml:4: build: a key must be a plain word, not a mapping",
        ),
        (
            "peer: a\ndomain: x.example\ncheck:\n  servers:\n    a: [192.0.2.1]\n",
            "x.yaml:5: check.servers.a: give one IP address",
        ),
    ],
)
def test_anchors_aliases_and_keys_that_are_not_words_are_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.parse(text, "x.yaml")
    assert str(info.value).startswith(message)
