"""Journal files as a partner may have left them: nothing is followed, only regular files are
read, and no read goes past its bound.

A partner writes its inbox (`journal/.incoming-<partner>/`) and, when the journal root is
shared storage, its own journal directory. A symbolic link there would make leasedns read
(and push back) any file it can read, a FIFO would hang apply, a device or a huge sparse file
would fill memory and disk. So every directory below the journal root is opened with
O_NOFOLLOW and used through its descriptor; an entry is looked at with lstat and opened with
O_NOFOLLOW | O_NONBLOCK only when it is a regular file, checked again with fstat, and read up
to the size fstat gave and never past the caller's bound. The journal root itself is the
operator's (it may be a link). Design: docs/design.md, "Replication".
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from leasedns.errors import LeasednsError
from leasedns.fsutil import write_all

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 1 << 20


class Refused(LeasednsError):
    """A journal file or directory that is not what a journal holds (a link, a FIFO, a
    device, a directory where a file belongs, a file over its bound): never opened or read."""


def kind(mode: int) -> str:
    """What a file's mode says it is, for messages."""
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISREG, "a regular file"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _refusal(path: Path, mode: int, what: str) -> Refused:
    return Refused(f"{path}: {kind(mode)}, not {what}; never followed or read")


class Dir:
    """A journal directory opened without following it: its entries are looked at and opened
    through its descriptor, so a directory swapped for a link meanwhile is never entered."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd

    @classmethod
    def at(cls, path: Path, parent: Dir | None = None) -> Dir:
        """`path` (in `parent`, when given) as a directory; Refused when it is anything else.
        Without `parent`, the directories above `path` are trusted (the journal root)."""
        try:
            if parent is None:
                fd = os.open(path, _DIR)
            else:
                fd = os.open(path.name, _DIR, dir_fd=parent.fd)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            st = os.lstat(path.name, dir_fd=parent.fd) if parent else os.lstat(path)
            raise _refusal(path, st.st_mode, "a directory") from None
        return cls(path, fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Dir:
        return self

    def __exit__(
        self,
        _t: type[BaseException] | None,
        _e: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    def names(self, limit: int) -> list[str]:
        """The names of the entries, unsorted; Refused when there are more than `limit`."""
        out: list[str] = []
        with os.scandir(self.fd) as it:
            for entry in it:
                if len(out) == limit:
                    raise Refused(
                        f"{self.path}: holds more than {limit} entries; a journal directory "
                        "within the bounds holds fewer (see journal.max_bytes)"
                    )
                out.append(entry.name)
        return out

    def lstat(self, name: str) -> os.stat_result:
        """The entry itself, never what it points to (FileNotFoundError when gone)."""
        return os.lstat(name, dir_fd=self.fd)

    def regular(self, name: str, limit: int) -> os.stat_result:
        """lstat of an entry that must be a regular file of at most `limit` bytes."""
        st = self.lstat(name)
        if not stat.S_ISREG(st.st_mode):
            raise _refusal(self.path / name, st.st_mode, "a regular file")
        if st.st_size > limit:
            raise _over(self.path / name, st.st_size, limit)
        return st

    def open_file(self, name: str, limit: int) -> tuple[int, os.stat_result]:
        """A descriptor of a regular file of at most `limit` bytes, and its fstat.

        Looked at first (lstat), so a link, FIFO or device is never opened; opened with
        O_NOFOLLOW | O_NONBLOCK and checked again, so one swapped in meanwhile is not read.
        """
        self.regular(name, limit)
        try:
            fd = os.open(name, _FILE, dir_fd=self.fd)
        except OSError as e:
            if e.errno != errno.ELOOP:
                raise
            raise _refusal(self.path / name, stat.S_IFLNK, "a regular file") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _refusal(self.path / name, st.st_mode, "a regular file")
            if st.st_size > limit:
                raise _over(self.path / name, st.st_size, limit)
        except BaseException:
            os.close(fd)
            raise
        return fd, st

    def read(self, name: str, limit: int) -> bytes:
        """The bytes of a regular file of at most `limit` bytes (up to its size when opened)."""
        fd, st = self.open_file(name, limit)
        try:
            return _read(fd, st.st_size)
        finally:
            os.close(fd)

    def copy(self, name: str, target: Path, limit: int) -> int:
        """Copy a regular file of at most `limit` bytes to `target` (a new file, 0640, its
        modification time kept, fsynced): at most the size it had when opened. Returns it.
        A hole in a sparse file is copied as the zeros it reads as, never past the bound."""
        fd, st = self.open_file(name, limit)
        try:
            out = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640)
            try:
                left = st.st_size
                while left > 0:
                    chunk = os.read(fd, min(left, _CHUNK))
                    if not chunk:
                        break  # shrank meanwhile: the copy is what there was
                    write_all(out, chunk)
                    left -= len(chunk)
                os.fsync(out)
            except BaseException:
                os.close(out)
                with contextlib.suppress(OSError):
                    os.unlink(target)
                raise
            os.close(out)
        finally:
            os.close(fd)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        return st.st_size - left


def _over(path: Path, size: int, limit: int) -> Refused:
    return Refused(
        f"{path}: {size} bytes, over the bound of {limit} (journal.max_bytes); never read"
    )


def _read(fd: int, size: int) -> bytes:
    parts = []
    left = size
    while left > 0:
        chunk = os.read(fd, min(left, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def read(path: Path, limit: int) -> bytes:
    """A journal file (`path`'s directory is not followed either), at most `limit` bytes."""
    with Dir.at(path.parent) as d:
        return d.read(path.name, limit)


@contextlib.contextmanager
def opened(path: Path, limit: int) -> Iterator[BinaryIO]:
    """A journal file as a binary file object, checked as `Dir.open_file` checks it; reads past the
    size it had when opened are the caller's to avoid (`fstat` gives it)."""
    with Dir.at(path.parent) as d:
        fd, _st = d.open_file(path.name, limit)
    with open(fd, "rb") as f:
        yield f
