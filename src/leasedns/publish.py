"""Publish a rendered data file: atomic write into the tinydns root, compile only on change."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PublishError
from .journal import fsync_dir

TMP_NAME = ".data.leasedns.tmp"  # not data.tmp: tinydns-data uses that name itself

Runner = Callable[..., "subprocess.CompletedProcess[Any]"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a publish did."""

    changed: bool  # the data file's bytes changed
    compiled: bool  # tinydns-data ran (and succeeded)
    compile_secs: float


def needs_compile(root: Path) -> bool:
    """data.cdb is missing or older than data (a compile failed or never ran)."""
    try:
        return (root / "data.cdb").stat().st_mtime_ns < (root / "data").stat().st_mtime_ns
    except FileNotFoundError:
        return True


def write_atomic(path: Path, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Write to a temp file in the same directory, fsync, rename over `path`.

    durable=False skips the fsyncs, for caches whose damage is detected on read.
    """
    tmp = path.with_name(TMP_NAME if path.name == "data" else f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
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


def serving(root: Path) -> str:
    """What DNS answers from while a publish fails: said at the end of every publish error."""
    if (root / "data.cdb").is_file():
        return "the old data.cdb keeps serving"
    if not root.is_dir():
        return f"no data.cdb is served: {root} is not a directory (create it, or fix tinydns.root)"
    return "no data.cdb is served yet"


_DATA_LINE = re.compile(r"unable to parse data line (\d+)")


def publish(
    root: Path,
    data: bytes,
    program: str,
    runner: Runner = subprocess.run,
    origin: Callable[[int], str | None] = lambda _n: None,
) -> Outcome:
    """Put `data` in place and run tinydns-data when needed; the old data.cdb serves on failure.

    `origin` names the file:line a line of `data` was copied from (static data),
    so that tinydns-data's complaint points at the line to fix.
    """
    target = root / "data"
    try:
        changed = target.read_bytes() != data
    except FileNotFoundError:
        changed = True
    except OSError as e:
        raise PublishError(f"{target}: cannot read: {e.strerror}; {serving(root)}") from None
    try:
        if changed:
            write_atomic(target, data)
    except OSError as e:
        raise PublishError(f"{target}: cannot write: {e.strerror}; {serving(root)}") from None
    if not changed and not needs_compile(root):
        return Outcome(False, False, 0.0)
    t0 = time.monotonic()
    try:
        proc = runner([program], cwd=root, capture_output=True, timeout=600)
    except FileNotFoundError:
        raise PublishError(
            f"{program}: not found; install tinydns (Debian: apt install tinydns) or "
            f"set tinydns.data_program; {serving(root)}"
        ) from None
    except (OSError, subprocess.TimeoutExpired) as e:
        raise PublishError(f"{program} in {root}: {e}; {serving(root)}") from None
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip() if proc.stderr else ""
        m = _DATA_LINE.search(err)
        where = origin(int(m.group(1))) if m else None
        fix = f"; the line comes from {where}: fix it there" if where else ""
        raise PublishError(
            f"{program} in {root} failed (exit {proc.returncode}): {err}{fix}; {serving(root)}"
        )
    return Outcome(changed, True, time.monotonic() - t0)
