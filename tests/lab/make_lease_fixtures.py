"""Regenerate tests/data/leases/lab-peer-{a,b}.leases from a real dhcpd failover pair.

Run as root from the repository root:  .venv/bin/python -m tests.lab.make_lease_fixtures

Both peers run the real leasedns pipeline (the `dhcpd-snippet` hooks, so the committing
peer's lease file carries the `set leasedns-name`/`leasedns-mac` variables), six clients
split across the peers by load balancing, one of them (alpha) releases its lease, and
the fixed-address host fixed1 asks too (it never appears in dhcpd.leases). Both peers'
dhcpd.leases are copied once every binding update has reached the partner.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from .netlab import FIXED_HOSTS, Lab, lab_missing, wait_for
from .pipeline import Site, snippet_file

OUT = Path(__file__).resolve().parents[1] / "data" / "leases"
CLIENTS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]


def released(leases: str, ip: str) -> bool:
    """True if the last entry for ip in a dhcpd.leases text is no longer active."""
    entries = leases.split(f"lease {ip} {{")
    return len(entries) > 1 and "binding state active" not in entries[-1].split("}")[0]


def main() -> int:
    missing = lab_missing()
    if missing:
        print(f"cannot run the lab here: {missing}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="leasedns-fixtures-"))
    holder: list[Site] = []
    try:
        with Lab(
            work / "lab",
            hooks_snippet=snippet_file(work / "hooks.conf"),
            peer_env=lambda peer: holder[0].peer_env(peer),
        ) as lab:
            site = Site(lab, "rsync")
            holder.append(site)
            lab.start_peers()
            for name in CLIENTS:
                lab.add_client(name)
            lab.add_client("fixed1", mac=FIXED_HOSTS["fixed1"][0])
            addr = {n: lab.wait_address(n) for n in CLIENTS}
            acked = {n: lab.acked_by(n) for n in CLIENTS}
            if set(acked.values()) != {"peer-a", "peer-b"}:
                raise SystemExit(f"expected both peers to ACK some clients: {acked}")
            lab.release_client("alpha")
            for peer in lab.peers:  # every lease, and alpha's release, known to both peers
                wait_for(
                    lambda p=peer: all(f"lease {a} {{" in lab.leases(p) for a in addr.values()),
                    10,
                    f"leases on {peer}",
                )
                wait_for(
                    lambda p=peer: released(lab.leases(p), addr["alpha"]),
                    10,
                    f"alpha's release on {peer}",
                )
            site.quiesce()
            OUT.mkdir(parents=True, exist_ok=True)
            for peer in lab.peers:
                shutil.copyfile(lab.peers[peer].leases, OUT / f"lab-{peer}.leases")
            print(
                f"wrote {OUT}/lab-peer-a.leases and lab-peer-b.leases; granted by: "
                + ", ".join(f"{n} {addr[n]} {acked[n]}" for n in CLIENTS)
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
