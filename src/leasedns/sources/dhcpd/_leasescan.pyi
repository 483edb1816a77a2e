"""Types of the optional C accelerator (src/leasedns/sources/dhcpd/_leasescan.c)."""

from leasedns.sources.dhcpd.leases import Lease

def scan(
    text: str,
    pos: int,
    line_pos: int,
    line: int,
    leases: dict[str, Lease],
    path: str,
    lease_type: type[Lease],
    /,
) -> tuple[int, int, int, int, int] | None: ...
def json_lines(
    leases: list[Lease], lease_type: type[Lease], live_at: int | None = None, /
) -> str | None: ...
