"""Operating-system helpers every stage shares: the one reader of an operator's file, atomic
replace, whole writes, durable dirs, locks, how programs are run, and pausing the garbage
collector."""

from __future__ import annotations

import contextlib
import fcntl
import gc
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leasedns.errors import LeasednsError

if TYPE_CHECKING:
    import subprocess

TMP_DATA = ".data.leasedns.tmp"  # not data.tmp: tinydns-data uses that name itself

# How leasedns runs a program (tinydns-data, rsync, ssh): subprocess.run, or a stand-in with
# its signature in tests.
Runner = Callable[..., "subprocess.CompletedProcess[Any]"]


class InputFileError(LeasednsError):
    """An operator's file leasedns will not read: not a regular file, or over its size cap.
    The message names the file; the caller adds what to fix in the config."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def size_text(n: int) -> str:
    """A byte count as the docs state the caps: 64 KiB, 1 MiB."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"


def _regular(path: str, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((k for test, k in _KINDS if test(mode)), "not a plain file")
    raise InputFileError(
        path,
        f"is {kind}, not a regular file; leasedns reads only regular files here "
        "(a symlink to one is fine)",
    )


def _too_big(path: str, size: str, limit: int) -> InputFileError:
    return InputFileError(
        path, f"{size} more than the {size_text(limit)} leasedns reads from such a file"
    )


def open_input(path: Path | str, limit: int) -> int:
    """A descriptor of a file another party writes and leasedns only reads (see `read_input`):
    a regular file (a symlink to one is followed) of at most `limit` bytes, opened without
    blocking. The caller reads no more than `limit` bytes of it (`too_big` says so)."""
    name = str(path)
    st = os.stat(name)
    _regular(name, st.st_mode)
    if st.st_size > limit:
        raise _too_big(name, f"is {st.st_size} bytes,", limit)
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        _regular(name, os.fstat(fd).st_mode)  # what was opened, if it changed since the stat
    except InputFileError:
        os.close(fd)
        raise
    return fd


def too_big(path: Path | str, limit: int) -> InputFileError:
    """The error for a file that grew past `limit` while it was read."""
    return _too_big(str(path), "grew, while read, to", limit)


def read_input(path: Path | str, limit: int) -> bytes:
    """The bytes of a file the operator names (the config, a TSIG key, static data, dhcpd.conf
    and its includes): the one reader of such files.

    Only a regular file is opened (a symlink to one is followed): a directory, device, FIFO or
    socket is refused before it is opened, as is a file over `limit` bytes; the open is
    non-blocking, so a FIFO swapped in after the check cannot hang the read either, and no
    more than `limit` bytes are ever read (a file that grows while read is refused).
    OSError as the system says it (missing, no permission: the caller says what to fix);
    InputFileError for the rest, naming the file.
    """
    name = str(path)
    fd = open_input(name, limit)
    try:
        chunks: list[bytes] = []
        total = 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise too_big(name, limit)
    finally:
        os.close(fd)
    return b"".join(chunks)


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


def create_once(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Create `path` holding `data` unless it exists, atomically and durably: written and
    fsynced under a temporary name, then linked into place (another process that made it
    first wins; its file is kept). OSError when it cannot be made."""
    path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    fsync_dir(path.parent)


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
