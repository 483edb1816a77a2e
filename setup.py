"""Only the optional C accelerator of the lease parser; everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # optional: without a compiler or Python headers the build goes on, and
        # leasedns.leases parses in pure Python (same results, slower)
        Extension(
            "leasedns.sources.dhcpd._leasescan",
            ["src/leasedns/sources/dhcpd/_leasescan.c"],
            optional=True,
        )
    ]
)
