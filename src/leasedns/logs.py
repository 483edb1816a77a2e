"""Logging: to syslog (daemon facility) when there is one, and to stderr for people."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys

SYSLOG = "/dev/log"  # the syslog socket (a test points it at its own)


def setup(verbosity: int = 0, stderr: bool = True, syslog: bool = True) -> None:
    """Configure the `leasedns` logger; verbosity -1 quiet, 0 warnings, 1 info, 2 debug."""
    logger = logging.getLogger("leasedns")
    logger.handlers.clear()
    logger.propagate = False
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logger.setLevel(min(level, logging.INFO) if syslog else level)
    if stderr:
        h = logging.StreamHandler(sys.stderr)
        h.setLevel(level)
        h.setFormatter(logging.Formatter("leasedns: %(message)s"))
        logger.addHandler(h)
    if syslog and os.path.exists(SYSLOG):
        try:
            s = logging.handlers.SysLogHandler(
                SYSLOG, facility=logging.handlers.SysLogHandler.LOG_DAEMON
            )
        except OSError:
            return
        s.setLevel(logging.INFO)
        s.setFormatter(logging.Formatter(f"leasedns[{os.getpid()}]: %(name)s: %(message)s"))
        logger.addHandler(s)
