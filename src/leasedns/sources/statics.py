"""Static input: names in static tinydns data files, fixed-address hosts of dhcpd.conf."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable

from leasedns import tinydata
from leasedns.config import Config
from leasedns.errors import LeasednsError
from leasedns.fsutil import InputFileError, read_input
from leasedns.model import StaticHost, Statics, reverse_address
from leasedns.names import fqdn, label_for
from leasedns.sources.dhcpd.conf import HostDecl, publish_name, read_conf


def _owner(name: str) -> str:
    return tinydata.unescape(name).lower().rstrip(".")


def scan_data(text: str) -> tuple[set[str], set[str]]:
    """Names defined and addresses given a PTR by tinydns data lines (pure).

    Every record type's owner name counts, and so do the name-server and
    mail-exchanger host names that `.`, `&`, `@` lines create.
    """
    names: set[str] = set()
    ptrs: set[str] = set()
    for _n, kind, fields in tinydata.records(text):
        if kind == "%":
            continue
        owner = _owner(fields[0])
        if owner:
            names.add(owner)
        if kind in ".&@" and len(fields) > 2 and fields[2]:
            x = _owner(fields[2])
            names.add(x if "." in x else f"{x}.{'ns' if kind != '@' else 'mx'}.{owner}")
        if kind in "=6" and len(fields) > 1:
            with contextlib.suppress(ValueError):
                ptrs.add(str(ipaddress.ip_address(fields[1])))
        if kind == "^":
            ip = reverse_address(owner)
            if ip:
                ptrs.add(ip)
    return names, ptrs


def hosts_from_conf(
    hosts: Iterable[HostDecl], cfg: Config, problems: list[str]
) -> list[StaticHost]:
    """Fixed-address host declarations -> published static hosts (pure).

    The name comes from the configured order (ddns-hostname, option host-name,
    declaration name) and passes the same name rules as a client's.
    """
    out = []
    for h in hosts:
        if not h.addresses:
            continue
        raw = publish_name(h, cfg.static_name_order)
        verdict = label_for(raw or "", cfg.domain, cfg.name_policy)
        if verdict.label is None:
            problems.append(f"{h.where}: host {h.decl_name}: {verdict.note}; not published")
            continue
        for ip in h.addresses:
            out.append(StaticHost(fqdn(verdict.label, cfg.domain), ip, h.where))
    return out


MAX_DATA_BYTES = 64 << 20  # each static tinydns data file (it is copied into `data` whole)


def load(cfg: Config) -> Statics:
    """Read the static data files and dhcpd.conf named in the config."""
    problems: list[str] = []
    files, names, ptrs = [], set(), set()
    for path in cfg.static_files:
        try:
            raw = read_input(path, MAX_DATA_BYTES)
        except InputFileError as e:
            raise LeasednsError(f"{e}; fix tinydns.static in the config") from None
        except OSError as e:
            raise LeasednsError(
                f"{path}: cannot read static tinydns data: {e.strerror}; "
                "fix tinydns.static in the config"
            ) from None
        text = raw.decode("utf-8", errors="surrogateescape")
        if text and not text.endswith("\n"):
            text += "\n"
        files.append((str(path), text))
        n, p = scan_data(text)
        names |= n
        ptrs |= p
    hosts: list[StaticHost] = []
    if cfg.dhcpd_conf is not None:
        try:
            result = read_conf(str(cfg.dhcpd_conf))
        except InputFileError as e:
            raise LeasednsError(f"{e}; fix dhcpd.conf in the config") from None
        except OSError as e:
            raise LeasednsError(
                f"{cfg.dhcpd_conf}: cannot read dhcpd.conf: {e.strerror or e}; "
                "fix dhcpd.conf in the config"
            ) from None
        problems.extend(result.problems)
        hosts = hosts_from_conf(result.hosts, cfg, problems)
    return Statics(tuple(files), frozenset(names), frozenset(ptrs), tuple(hosts), tuple(problems))
