"""ISC dhcpd: dhcpd.conf hosts and dhcpd.leases files."""
