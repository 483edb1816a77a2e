"""Where the merged truth goes: one module per kind of DNS server."""
