"""Operating-system helpers every stage shares: atomic replace, whole writes, durable dirs,
locks, how programs are run, and pausing the garbage collector."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

TMP_DATA = ".data.leasedns.tmp"  # not data.tmp: tinydns-data uses that name itself

# How leasedns runs a program (tinydns-data, rsync, ssh): subprocess.run, or a stand-in with
# its signature in tests.
Runner = Callable[..., "subprocess.CompletedProcess[Any]"]


def write_all(fd: int, data: bytes) -> None:
    """Write every byte (os.write may write fewer than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(path: Path) -> None:
    """Make a directory entry (a new or renamed file) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Write to a temp file in the same directory, fsync, rename over `path`.

    durable=False skips the fsyncs, for caches whose damage is detected on read.
    """
    tmp = path.with_name(TMP_DATA if path.name == "data" else f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        # A full disk: leave no empty or partial temp file behind.
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


@contextlib.contextmanager
def flocked(path: Path, mode: int = 0o640) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if missing) for the block; waits its turn."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class gc_paused:  # a class named like the function it is used as: `with gc_paused():`
    """Keep the cyclic garbage collector off for the block (and off after it if it was off).

    For code that builds 100,000s of long-lived objects and no reference cycles (a lease
    file's Leases, the engine's state): the collector would walk them again and again while
    they are built, a third of the run time, and free nothing.

    Not a @contextmanager generator: that allocates right after turning the collector back
    on, which runs the young-generation collection of everything the block made (some 50 ms
    after a 100,000-lease parse) inside the block rather than at the caller's next allocation.
    """

    __slots__ = ("_enabled",)

    def __enter__(self) -> None:
        self._enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self._enabled:
            gc.enable()
