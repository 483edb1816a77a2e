"""leasedns: DHCP lease events from both failover peers, published in tinydns."""

__version__ = "0.1.0"
