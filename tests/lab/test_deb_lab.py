"""The Debian package doing its job: two dhcpd failover peers include the PACKAGED snippet (so
dhcpd runs /usr/lib/leasedns/dhcpd-event) and every leasedns command, the hook's apply and the
partner's notify run /usr/bin/leasedns (Debian's python3, dnspython and PyYAML). Each peer's
config and state live in the lab's tmp dir, not /etc: two peers share this machine.

Installs the package for this module and purges it afterwards (tests/debpkg.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import debpkg

from .netlab import FIXED_HOSTS, Lab
from .pipeline import DOMAIN, Site

pytestmark = [pytest.mark.lab, pytest.mark.integration]

CLIENTS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]


@pytest.fixture(scope="module")
def package() -> Iterator[Path]:
    with debpkg.installed_package() as deb:
        yield deb


def test_packaged_hook_and_program_publish_both_peers(
    package: Path, make_lab: Callable[..., Lab]
) -> None:
    holder: list[Site] = []
    lab = make_lab(hooks_snippet=debpkg.SNIPPET, peer_env=lambda peer: holder[0].peer_env(peer))
    site = Site(lab, "rsync", program=debpkg.PROGRAM)
    holder.append(site)
    lab.start_peers()
    for peer in lab.peers.values():
        assert f'include "{debpkg.SNIPPET}";' in peer.conf.read_text(), peer.conf
        assert site.peer_env(peer)["LEASEDNS_BIN"] == str(debpkg.PROGRAM)
        assert str(debpkg.PROGRAM) in site.config(peer.name).read_text()  # notify
    # The only leasedns on the hook's PATH is the packaged one (the venv's is not there).
    hook_path = site.peer_env(lab.peers["peer-a"])["PATH"].split(":")
    found = {(Path(d) / "leasedns").resolve() for d in hook_path if (Path(d) / "leasedns").exists()}
    assert found == {debpkg.PROGRAM.resolve()}, found  # /bin is /usr/bin on merged-/usr

    for name in CLIENTS:
        lab.add_client(name)
    addr = {name: lab.wait_address(name) for name in CLIENTS}
    acked = {n: lab.acked_by(n) for n in CLIENTS}
    assert set(acked.values()) == {"peer-a", "peer-b"}, f"both peers must ACK some: {acked}"

    site.wait_dns(addr)  # A and PTR of every client, from both peers' tinydns
    site.quiesce()
    for p in lab.peers:
        for owner in lab.peers:  # its own journal and the partner's, pushed by rsync
            assert list((site.journal(p) / owner).glob("events-*.jsonl")), (
                f"{p} holds no journal of {owner}"
            )
    assert site.data("peer-a") == site.data("peer-b")
    # `leasedns show` of the packaged program: every client and dhcpd.conf's fixed hosts
    want = {f"{n}.{DOMAIN}" for n in [*CLIENTS, *FIXED_HOSTS]}
    shown = {p: {r["name"] for r in site.show(p)} for p in lab.peers}
    assert shown == {p: want for p in lab.peers}, json.dumps(
        {p: sorted(n) for p, n in shown.items()}
    )
