"""Where events and static input come from: the hook spool, dhcpd's files, static data."""
