"""The leasedns.yaml configuration: read, checked against a schema, errors with file:line."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.exception
import dns.name
import yaml

from leasedns.errors import ConfigError
from leasedns.fsutil import InputFileError, read_input
from leasedns.model import PEER_RULE, ConflictPolicy, NamePolicy, valid_peer

DEFAULT_PATH = "/etc/leasedns/leasedns.yaml"
DEFAULT_STATE = "/var/lib/leasedns"
JOURNAL_MAX_BYTES = 256 << 20  # journal.max_bytes: about a million events


@dataclass(frozen=True, slots=True)
class Partner:
    """A failover partner this peer pushes its journal to and wakes up."""

    name: str
    rsync_target: str = (
        ""  # rsync destination of the journal root (host:/var/lib/leasedns/journal/)
    )
    notify: tuple[str, ...] = ()  # command that makes the partner run `leasedns apply`


@dataclass(frozen=True, slots=True)
class TinydnsOutput:
    """The tinydns output: its settings are the config's `tinydns_root`, `tinydns_data` and
    `static_files` (there is at most one)."""

    type = "tinydns"


@dataclass(frozen=True, slots=True)
class HostsOutput:
    """A hosts file (`IP name` lines) for a server that reads one, such as dnsmasq's
    `addn-hosts`, and the command that makes the server read it again."""

    path: Path
    reload: tuple[str, ...] = ()
    type = "hosts"


@dataclass(frozen=True, slots=True)
class Rfc2136Output:
    """A zone's primary that takes RFC 2136 dynamic updates (BIND, Knot, PowerDNS): A records
    in `zone`, PTR records in `reverse_zones`, signed with the TSIG key of `tsig_key_file`."""

    server: str
    zone: str
    port: int = 53
    reverse_zones: tuple[str, ...] = ()
    tsig_key_file: Path | None = None
    timeout: float = 10.0
    # Marks the names this site's leasedns created (both peers of a pair: the same value).
    owner: str = "leasedns"
    # At most this long (seconds) between two reads of the whole zones (AXFR) compared with
    # what was published, so that a server that lost its updates is repaired (0: every apply).
    verify_secs: int = 300
    type = "rfc2136"


@dataclass(frozen=True, slots=True)
class UnboundOutput:
    """The Unbound resolver's local data, loaded with `unbound-control local_datas`."""

    control: tuple[str, ...] = ("unbound-control",)
    timeout: float = 30.0
    type = "unbound"


OutputSpec = TinydnsOutput | HostsOutput | Rfc2136Output | UnboundOutput
OUTPUT_TYPES = ("hosts", "rfc2136", "tinydns", "unbound")


@dataclass(frozen=True, slots=True)
class Config:
    """Everything leasedns needs to know, with defaults filled in."""

    path: str
    peer: str
    state_dir: Path
    spool_dir: Path
    journal_dir: Path
    domain: str
    subnets: tuple[ipaddress.IPv4Network, ...] = ()
    ttl: int = 300
    name_policy: NamePolicy = NamePolicy.SANITIZE
    conflict_policy: ConflictPolicy = ConflictPolicy.LATEST
    protected: frozenset[str] = frozenset()
    reverse: bool = True
    default_lease_secs: int = 3600
    tinydns_root: Path = Path("/etc/tinydns/root")
    tinydns_data: str = "tinydns-data"
    static_files: tuple[Path, ...] = ()
    dhcpd_conf: Path | None = None
    static_name_order: tuple[str, ...] = ("ddns-hostname", "host-name", "declaration")
    lease_files: tuple[Path, ...] = ()
    coalesce_secs: float = 0.2
    guard_fraction: float = 0.5
    guard_min: int = 10
    clock_skew_secs: int = 30
    max_lease_secs: int = 86400
    compact_grace_secs: int = 3600
    # The most one peer's journal may hold: what a partner's push can make this peer read,
    # copy and keep (README, "What a partner can and cannot do").
    journal_max_bytes: int = JOURNAL_MAX_BYTES
    partners: tuple[Partner, ...] = ()
    rsync: str = "rsync"
    rsync_args: tuple[str, ...] = ()
    sync_timeout_secs: int = 60
    sync_resync_secs: int = 300  # apply pushes again when the last good push is older
    check_servers: tuple[tuple[str, str], ...] = ()  # (peer name, tinydns address)
    # Where apply publishes, in this order: the `tinydns:` section (when given, or when there
    # is no `outputs:` list), then the `outputs:` list.
    outputs: tuple[OutputSpec, ...] = (TinydnsOutput(),)


def default_path() -> str:
    """The config path: $LEASEDNS_CONFIG, else /etc/leasedns/leasedns.yaml."""
    return os.environ.get("LEASEDNS_CONFIG") or DEFAULT_PATH


MAX_BYTES = 1 << 20  # a config is a few KiB; more is not a config


def load(path: str | None = None) -> Config:
    """Read and check the config file; ConfigError names the file and line."""
    path = path or default_path()
    try:
        text = read_input(path, MAX_BYTES).decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such config file; copy conf/leasedns.yaml there or pass --config"
        ) from None
    except InputFileError as e:
        raise ConfigError(f"{e}; pass the config file with --config") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    return parse(text, path)


def parse(text: str, path: str = "leasedns.yaml") -> Config:
    """Build a Config from YAML text (pure)."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except _AliasError as e:
        line = _line_of(text, e.mark.index) if e.mark else 1
        raise ConfigError(
            f"{path}:{line}: YAML aliases are not supported in leasedns.yaml ({e.what}); "
            "write each value out in full"
        ) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        line = _line_of(text, mark.index) if mark else 1
        raise ConfigError(f"{path}:{line}: not valid YAML: {e.problem}") from None
    except yaml.reader.ReaderError as e:  # a control character or bad encoding
        line = text.count("\n", 0, e.position) + 1
        raise ConfigError(f"{path}:{line}: not valid YAML: {e.reason} {e.character!r}") from None
    except (yaml.YAMLError, RecursionError) as e:
        raise ConfigError(f"{path}:1: not valid YAML: {e.__class__.__name__}") from None
    if root is None:
        raise ConfigError(
            f"{path}:1: the config is empty; at least `peer:` and `domain:` are needed"
        )
    r = _Reader(path, text)
    top = r.mapping(root, "", _TOP_KEYS)

    peer = r.text(top, "peer", required=True)
    r.peer_name(top["peer"], "peer", peer)
    state = Path(r.text(top, "state_dir", DEFAULT_STATE))
    domain = r.text(top, "domain", required=True).strip(".").lower()
    _check_domain(r, top["domain"], domain)

    names = r.mapping(top.get("names"), "names", {"policy", "conflict", "protected"})
    tiny = r.mapping(top.get("tinydns"), "tinydns", _TINYDNS_KEYS)
    outs = _outputs(r, top)
    for spec_node, spec in outs:
        if isinstance(spec, TinydnsOutput) and spec_node is not None:
            tiny = r.mapping(spec_node, "outputs[]", _TINYDNS_KEYS | {"type"})
    dhcpd = r.mapping(top.get("dhcpd"), "dhcpd", {"conf", "static_name", "leases"})
    build = r.mapping(
        top.get("build"),
        "build",
        {"coalesce_secs", "guard_fraction", "guard_min", "clock_skew_secs"},
    )
    jour = r.mapping(
        top.get("journal"), "journal", {"max_lease_secs", "compact_grace_secs", "max_bytes"}
    )
    sync = r.mapping(
        top.get("sync"), "sync", {"partners", "rsync", "rsync_args", "timeout_secs", "resync_secs"}
    )
    check = r.mapping(top.get("check"), "check", {"servers"})
    order = tuple(r.text_list(dhcpd, "static_name", ["ddns-hostname", "host-name", "declaration"]))
    for item in order:
        if item not in ("ddns-hostname", "host-name", "declaration"):
            r.fail(
                dhcpd["static_name"],
                f"dhcpd.static_name: unknown source {item!r}; "
                "use ddns-hostname, host-name or declaration",
            )
    conf = r.text(dhcpd, "conf", "")
    return Config(
        path=path,
        peer=peer,
        state_dir=state,
        spool_dir=Path(r.text(top, "spool_dir", str(state / "spool"))),
        journal_dir=Path(r.text(top, "journal_dir", str(state / "journal"))),
        domain=domain,
        subnets=tuple(r.each(top, "subnets", _network)),
        ttl=r.number(top, "ttl", 300, 0, 2**31 - 1),
        name_policy=r.choice(names, "policy", NamePolicy, NamePolicy.SANITIZE),
        conflict_policy=r.choice(names, "conflict", ConflictPolicy, ConflictPolicy.LATEST),
        protected=frozenset(p.strip(".").lower() for p in r.text_list(names, "protected", [])),
        reverse=r.boolean(top, "reverse", True),
        default_lease_secs=r.number(top, "default_lease_secs", 3600, 1, 2**32 - 1),
        tinydns_root=Path(r.text(tiny, "root", "/etc/tinydns/root")),
        tinydns_data=r.text(tiny, "data_program", "tinydns-data"),
        static_files=tuple(Path(p) for p in r.text_list(tiny, "static", [])),
        dhcpd_conf=Path(conf) if conf else None,
        static_name_order=order,
        lease_files=tuple(Path(p) for p in r.text_list(dhcpd, "leases", [])),
        coalesce_secs=r.real(build, "coalesce_secs", 0.2, 0.0, 60.0),
        guard_fraction=r.real(build, "guard_fraction", 0.5, 0.0, 1.0),
        guard_min=r.number(build, "guard_min", 10, 0, 2**31 - 1),
        clock_skew_secs=r.number(build, "clock_skew_secs", 30, 0, 3600),
        max_lease_secs=r.number(jour, "max_lease_secs", 86400, 1, 2**32 - 1),
        compact_grace_secs=r.number(jour, "compact_grace_secs", 3600, 0, 2**31 - 1),
        journal_max_bytes=r.number(jour, "max_bytes", JOURNAL_MAX_BYTES, 4 << 20, 2**40),
        partners=tuple(_partners(r, sync.get("partners"), peer)),
        rsync=r.text(sync, "rsync", "rsync"),
        rsync_args=tuple(r.text_list(sync, "rsync_args", [])),
        sync_timeout_secs=r.number(sync, "timeout_secs", 60, 1, 3600),
        sync_resync_secs=r.number(sync, "resync_secs", 300, 1, 2**31 - 1),
        check_servers=tuple(_servers(r, check.get("servers"))),
        outputs=tuple(spec for _node, spec in outs),
    )


_TINYDNS_KEYS = {"root", "data_program", "static"}
_HOSTS_KEYS = {"type", "path", "reload"}
_RFC2136_KEYS = {
    "type",
    "server",
    "port",
    "zone",
    "reverse_zones",
    "tsig_key_file",
    "timeout",
    "owner",
    "verify_secs",
}
_UNBOUND_KEYS = {"type", "control", "timeout"}


def _outputs(r: _Reader, top: dict[str, yaml.Node]) -> list[tuple[yaml.Node | None, OutputSpec]]:
    """The outputs apply publishes to, each with its node: the `tinydns:` section (given,
    or implied when there is no `outputs:` list), then the `outputs:` entries in order."""
    node = top.get("outputs")
    out: list[tuple[yaml.Node | None, OutputSpec]] = []
    if "tinydns" in top or node is None:
        out.append((None, TinydnsOutput()))
    if node is None:
        return out
    known = ", ".join(OUTPUT_TYPES)
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        r.fail(node, f"outputs must be a list of outputs, each a mapping with `type:` ({known})")
    assert isinstance(node, yaml.SequenceNode)
    first_tinydns = "the `tinydns:` section" if "tinydns" in top else ""
    paths: dict[Path, yaml.Node] = {}
    for item in node.value:
        m = r.mapping(item, "outputs[]", None)
        if "type" not in m:
            r.fail(item, f"each output needs a `type:` ({known})")
        kind = r.text(m, "type")
        if kind == "tinydns":
            if first_tinydns:
                r.fail(
                    m["type"],
                    f"a second tinydns output (the first: {first_tinydns}); leasedns publishes "
                    "to one tinydns: keep one",
                )
            r.mapping(item, "outputs[]", _TINYDNS_KEYS | {"type"})
            first_tinydns = f"line {_line_of(r.source, item.start_mark.index)}"
            out.append((item, TinydnsOutput()))
        elif kind == "hosts":
            m = r.mapping(item, "outputs[]", _HOSTS_KEYS)
            if "path" not in m:
                r.fail(item, "a hosts output needs `path:` (the file the DNS server reads)")
            path = Path(r.text(m, "path"))
            if path in paths:
                line = _line_of(r.source, paths[path].start_mark.index)
                r.fail(
                    m["path"], f"hosts output {str(path)!r} is listed twice (first at line {line})"
                )
            paths[path] = m["path"]
            out.append((item, HostsOutput(path, tuple(r.text_list(m, "reload", [])))))
        elif kind == "rfc2136":
            out.append((item, _rfc2136(r, r.mapping(item, "outputs[]", _RFC2136_KEYS), item, top)))
        elif kind == "unbound":
            m = r.mapping(item, "outputs[]", _UNBOUND_KEYS)
            control = tuple(r.text_list(m, "control", ["unbound-control"]))
            if not control:
                r.fail(m["control"], "control must name the unbound-control command")
            out.append((item, UnboundOutput(control, r.real(m, "timeout", 30.0, 0.1, 3600.0))))
        else:
            r.fail(m["type"], f"outputs: unknown type {kind!r}; known: {known}")
    return out


def _rfc2136(
    r: _Reader, m: dict[str, yaml.Node], item: yaml.Node, top: dict[str, yaml.Node]
) -> Rfc2136Output:
    """One rfc2136 output: the server's address, the zones, the key file's path (the key
    itself is read when the output is used: the file may be readable by the daemon only)."""
    if "server" not in m:
        r.fail(item, "an rfc2136 output needs `server:` (the address of the zone's primary)")
    server = r.text(m, "server")
    try:
        ipaddress.ip_address(server)
    except ValueError:
        r.fail(m["server"], f"server: {server!r} is not an IP address (the zone's primary)")
    domain = str(top["domain"].value).strip(".").lower() if "domain" in top else ""
    zone = r.text(m, "zone", domain).strip(".").lower()
    if "zone" in m:
        _check_domain(r, m["zone"], zone)
        if domain != zone and not domain.endswith("." + zone):
            r.fail(m["zone"], f"zone: the names are in {domain!r}, which is not in zone {zone!r}")
    rev = []
    for z in r.text_list(m, "reverse_zones", []):
        z = z.strip(".").lower()
        if not (z.endswith(".in-addr.arpa") or z == "in-addr.arpa"):
            r.fail(m["reverse_zones"], f"reverse_zones: {z!r} is not an in-addr.arpa zone")
        rev.append(z)
    if rev and "subnets" in top:
        for net in r.each(top, "subnets", _network):
            if not any(_covers(z, net) for z in rev):
                r.fail(
                    m["reverse_zones"],
                    f"reverse_zones: none covers subnet {net} (add "
                    f"{_reverse_zone_of(net)!r}, or leave the subnet out)",
                )
    key = r.text(m, "tsig_key_file", "")
    return Rfc2136Output(
        server=server,
        zone=zone,
        port=r.number(m, "port", 53, 1, 65535),
        reverse_zones=tuple(rev),
        tsig_key_file=Path(key) if key else None,
        timeout=r.real(m, "timeout", 10.0, 0.1, 600.0),
        owner=_owner(r, m),
        verify_secs=r.number(m, "verify_secs", 300, 0, 2**31 - 1),
    )


def _owner(r: _Reader, m: dict[str, yaml.Node]) -> str:
    owner = r.text(m, "owner", "leasedns")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", owner):
        r.fail(m["owner"], "owner must be a short word (letters, digits, '.', '_', '-')")
    return owner


def _reverse_zone_of(net: ipaddress.IPv4Network) -> str:
    """The in-addr.arpa zone of whole octets that holds `net`."""
    octets = str(net.network_address).split(".")[: max(1, net.prefixlen // 8)]
    return ".".join(reversed(octets)) + ".in-addr.arpa"


def _covers(zone: str, net: ipaddress.IPv4Network) -> bool:
    """Every address of `net` has its PTR name in `zone`."""
    labels = zone[: -len("in-addr.arpa")].strip(".").split(".") if zone != "in-addr.arpa" else []
    if len(labels) > 4 or not all(x.isdigit() and int(x) < 256 for x in labels):
        return False
    if net.prefixlen < 8 * len(labels):
        return False
    prefix = ".".join(reversed(labels))
    first = str(net.network_address).split(".")[: len(labels)]
    return ".".join(first) == prefix


def _partners(r: _Reader, node: yaml.Node | None, me: str) -> list[Partner]:
    if node is None:
        return []
    if not isinstance(node, yaml.SequenceNode):
        r.fail(node, "sync.partners must be a list of {name, rsync_target, notify}")
    out = []
    seen: set[str] = set()
    assert isinstance(node, yaml.SequenceNode)
    for item in node.value:
        m = r.mapping(item, "sync.partners[]", {"name", "rsync_target", "notify"})
        if not m or "name" not in m:
            r.fail(item, "each partner needs a `name:` (a peer name other than this peer's)")
        name = r.text(m, "name", required=True)
        r.peer_name(m["name"], "sync.partners[].name", name)
        if name == me:
            r.fail(item, "each partner needs a `name:` (a peer name other than this peer's)")
        if name in seen:
            r.fail(m["name"], f"partner {name!r} is listed twice")
        seen.add(name)
        out.append(
            Partner(name, r.text(m, "rsync_target", ""), tuple(r.text_list(m, "notify", [])))
        )
    return out


def _servers(r: _Reader, node: yaml.Node | None) -> list[tuple[str, str]]:
    if node is None:
        return []
    if not isinstance(node, yaml.MappingNode):
        r.fail(node, "check.servers must map peer names to tinydns addresses")
    out = []
    assert isinstance(node, yaml.MappingNode)
    r.mapping(node, "check.servers", None)  # duplicate keys
    for k, v in node.value:
        r.peer_name(k, "check.servers", str(k.value))
        if not isinstance(v, yaml.ScalarNode):
            r.fail(v, f"check.servers.{k.value}: give one IP address")
        try:
            ip = str(ipaddress.ip_address(str(v.value)))
        except ValueError:
            r.fail(v, f"check.servers.{k.value}: {v.value!r} is not an IP address")
        out.append((str(k.value), ip))
    return out


_TOP_KEYS = {
    "peer",
    "state_dir",
    "spool_dir",
    "journal_dir",
    "domain",
    "subnets",
    "ttl",
    "names",
    "reverse",
    "default_lease_secs",
    "tinydns",
    "outputs",
    "dhcpd",
    "build",
    "journal",
    "sync",
    "check",
}


def _check_domain(r: _Reader, node: yaml.Node, domain: str) -> None:
    try:
        dns.name.from_text(domain)
    except dns.exception.DNSException as e:
        r.fail(node, f"domain {domain!r} is not a valid DNS name: {e}")
    if not domain or not all(c.isascii() and (c.isalnum() or c in "-.") for c in domain):
        r.fail(node, f"domain {domain!r} must be letters, digits, '-' and dots")


def _network(value: str) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(value, strict=False)


_EXP_FLOAT = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+")


class _AliasError(yaml.YAMLError):
    def __init__(self, mark: Any, what: str) -> None:
        super().__init__(what)
        self.mark = mark
        self.what = what


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing anchors and aliases as the parser meets them, before a
    node is built: an alias is a reference, and a few lines of them make a graph whose text
    (`str()` of a key, a value written out) is exponential in the file's size."""

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            raise _AliasError(event.start_mark, f"the alias `*{event.anchor}`")
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            raise _AliasError(event.start_mark, f"the anchor `&{anchor}`")
        return super().compose_node(parent, index)


def _line_of(text: str, index: int) -> int:
    """The line of a character as an editor counts it (by newlines; YAML also counts CRs)."""
    return text.count("\n", 0, index) + 1


class _Reader:
    """Reads typed values out of a YAML node tree, failing with file:line."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.source = text

    def fail(self, node: yaml.Node | None, problem: str) -> None:
        line = _line_of(self.source, node.start_mark.index) if node is not None else 1
        raise ConfigError(f"{self.path}:{line}: {problem}")

    def mapping(
        self, node: yaml.Node | None, where: str, keys: set[str] | None
    ) -> dict[str, yaml.Node]:
        """The keys of a mapping node (any key when `keys` is None); unknown and
        duplicate keys are errors (YAML would silently keep the last)."""
        if node is None or (isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")):
            return {}
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{where or 'the config'} must be a mapping of keys to values")
        out: dict[str, yaml.Node] = {}
        first: dict[str, yaml.Node] = {}
        assert isinstance(node, yaml.MappingNode)
        for knode, vnode in node.value:
            if not isinstance(knode, yaml.ScalarNode):
                self.fail(
                    knode,
                    f"{where or 'the config'}: a key must be a plain word, not a "
                    f"{'list' if isinstance(knode, yaml.SequenceNode) else 'mapping'}",
                )
            key = str(knode.value)
            if key in first:
                line = _line_of(self.source, first[key].start_mark.index)
                self.fail(knode, f"duplicate key {key!r} (first at line {line})")
            first[key] = knode
            if keys is not None and key not in keys:
                known = ", ".join(sorted(keys))
                self.fail(
                    knode, f"unknown key {(where + '.' if where else '') + key!r}; known: {known}"
                )
            out[key] = vnode
        return out

    def peer_name(self, node: yaml.Node, where: str, name: str) -> None:
        if not valid_peer(name):
            self.fail(
                node,
                f"{where}: {name!r} is not a plain name ({PEER_RULE}; it names a journal "
                "directory); use letters, digits and '-'",
            )

    def _scalar(self, m: dict[str, yaml.Node], key: str) -> Any:
        node = m[key]
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, f"{key} must be a single value")
        if node.tag.endswith(":null"):
            return None  # `key:` with nothing after it (yaml cannot load a lone null back)
        try:
            return yaml.safe_load(yaml.serialize(node))
        except (yaml.YAMLError, ValueError, KeyError) as e:
            self.fail(
                node,
                f"{key}: {node.value!r} is not a valid {node.tag.rsplit(':', 1)[-1]}: "
                f"{str(e).splitlines()[0] if str(e) else e.__class__.__name__}",
            )

    def text(
        self, m: dict[str, yaml.Node], key: str, default: str = "", required: bool = False
    ) -> str:
        if key not in m:
            if required:
                self.fail(None, f"missing required key {key!r}")
            return default
        v = self._scalar(m, key)
        if v is None and required:
            self.fail(m[key], f"{key} is empty: set it (see the comment beside it)")
        if not isinstance(v, str) or not v or "\0" in v:
            self.fail(m[key], f"{key} must be a non-empty string (without NUL)")
        return str(v)

    def number(self, m: dict[str, yaml.Node], key: str, default: int, lo: int, hi: int) -> int:
        if key not in m:
            return default
        v = self._scalar(m, key)
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            self.fail(m[key], f"{key} must be a whole number from {lo} to {hi}")
        return int(v)

    def real(
        self, m: dict[str, yaml.Node], key: str, default: float, lo: float, hi: float
    ) -> float:
        if key not in m:
            return default
        v = self._scalar(m, key)
        plain = getattr(m[key], "style", None) is None  # not quoted
        if isinstance(v, str) and plain and _EXP_FLOAT.fullmatch(v):
            v = float(v)  # YAML 1.1 reads 5e-1 (no dot in the mantissa) as a string
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not lo <= v <= hi:
            self.fail(m[key], f"{key} must be a number from {lo} to {hi}")
        return float(v)

    def boolean(self, m: dict[str, yaml.Node], key: str, default: bool) -> bool:
        if key not in m:
            return default
        v = self._scalar(m, key)
        if not isinstance(v, bool):
            self.fail(m[key], f"{key} must be true or false")
        return bool(v)

    def choice(self, m: dict[str, yaml.Node], key: str, kind: Any, default: Any) -> Any:
        if key not in m:
            return default
        v = self._scalar(m, key)
        try:
            return kind(v)
        except ValueError:
            allowed = " or ".join(repr(k.value) for k in kind)
            self.fail(m[key], f"{key} must be {allowed}, not {v!r}")

    def text_list(self, m: dict[str, yaml.Node], key: str, default: list[str]) -> list[str]:
        return self.each(m, key, str, default)

    def each(
        self,
        m: dict[str, yaml.Node],
        key: str,
        conv: Callable[[str], Any],
        default: list[Any] | None = None,
    ) -> list[Any]:
        if key not in m:
            return list(default or [])
        node = m[key]
        if not isinstance(node, yaml.SequenceNode):
            self.fail(node, f"{key} must be a list")
        out = []
        assert isinstance(node, yaml.SequenceNode)
        for item in node.value:
            if not isinstance(item, yaml.ScalarNode) or not item.value:
                self.fail(item, f"each item of {key} must be a non-empty value")
            try:
                out.append(conv(str(item.value)))
            except ValueError as e:
                self.fail(item, f"{key}: {item.value!r} is not valid: {e}")
        return out
