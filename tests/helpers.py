"""Shared test helpers: real components or a skip (a failure under CI=true), a config in a
temp dir, a real tinydns on 127.53.x.x.

Tests import these as `from helpers import ...`: pytest puts tests/ on sys.path (rootdir-relative
"prepend" import mode, tests/ has no __init__.py), as it does for conftest.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

# The one test of whether this run is CI: there a missing program, root or namespaces fail the
# test instead of skipping it, and hypothesis runs a fixed sequence of examples.
IN_CI = os.environ.get("CI") == "true"

ROOT = Path(__file__).resolve().parent.parent
HOOK = ROOT / "hooks" / "dhcpd-event"
SBIN_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


def need(reason_ok: bool, reason: str) -> None:
    """Skip when a real component is missing; under CI=true that is a failure, not a skip."""
    if reason_ok:
        return
    if IN_CI:
        pytest.fail(f"CI must run this test, but: {reason}")
    pytest.skip(reason)


def tool(name: str) -> str:
    """Path of an external program, or skip (fail under CI)."""
    path = shutil.which(name, path=SBIN_PATH)
    need(path is not None, f"{name} is not installed (make test installs it when run as root)")
    assert path is not None
    return path


# The zones tinydns must be authoritative for to answer A and PTR queries.
ZONES = ".lab.example:127.53.0.1:ns.lab.example:300\n.2.0.192.in-addr.arpa::ns.lab.example:300\n"


def write_config(tmp: Path, **extra: object) -> Path:
    """A config file for one peer with everything under `tmp`."""
    import yaml

    static = tmp / "static.data"
    static.write_text(ZONES)
    doc: dict[str, object] = {
        "peer": "peer-a",
        "state_dir": str(tmp / "state"),
        "domain": "lab.example",
        "tinydns": {
            "root": str(tmp / "root"),
            "data_program": shutil.which("tinydns-data", path=SBIN_PATH) or "tinydns-data",
            "static": [str(static)],
        },
        "build": {"coalesce_secs": 0},
    }
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(doc.get(k), dict):
            doc[k] = {**doc[k], **v}  # type: ignore[dict-item]
        else:
            doc[k] = v
    (tmp / "root").mkdir(exist_ok=True)
    path = tmp / "leasedns.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def free_loopback() -> str:
    """A 127.53.x.y address nothing listens on (UDP 53), derived from our PID."""
    for i in range(200):
        n = (os.getpid() * 7 + i) % 250 + 2
        ip = f"127.53.{(os.getpid() // 250 + i) % 250 + 1}.{n}"
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((ip, 53))
        except OSError:
            continue
        finally:
            s.close()
        return ip
    raise RuntimeError("no free 127.53.x.y address")


class Tinydns:
    """A real tinydns serving ROOT on a loopback address; stopped by PID."""

    def __init__(self, root: Path) -> None:
        need(os.geteuid() == 0, "tinydns needs root (it chroots and binds port 53)")
        self.binary = tool("tinydns")
        self.root = root
        self.ip = free_loopback()
        self.proc = subprocess.Popen(
            [self.binary],
            env={
                "PATH": "/usr/sbin:/usr/bin",
                "ROOT": str(root),
                "IP": self.ip,
                "UID": "0",
                "GID": "0",
            },
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.1)
        if self.proc.poll() is not None:
            raise RuntimeError(f"tinydns exited with {self.proc.returncode}")

    def resolver(self):  # type: ignore[no-untyped-def]
        import dns.resolver

        r = dns.resolver.Resolver(configure=False)
        r.nameservers = [self.ip]
        r.lifetime = 3
        return r

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def hook(cfg: Any, *args: str) -> None:
    """Run the real hook (`EVENT IP MAC CLIENT HOST SECS`) into `cfg`'s spool, without apply."""
    env = {
        "PATH": os.environ["PATH"],
        "LEASEDNS_SPOOL": str(cfg.spool_dir),
        "LEASEDNS_NO_APPLY": "1",
    }
    subprocess.run([str(HOOK), *args], env=env, check=True, timeout=10)


@contextmanager
def fifo(path: Path, data: bytes = b"from a FIFO\n") -> Iterator[Path]:
    """A FIFO at `path` whose writer waits for a reader. Code that opens it reads `data` and
    then its end, so code that should have refused it fails its test instead of hanging; on
    leaving, a writer still waiting (the FIFO was refused, never opened) is let go."""
    os.mkfifo(path)

    def feed() -> None:
        with suppress(BrokenPipeError), open(path, "wb") as f:  # waits for a reader
            f.write(data)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        yield path
    finally:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a reader: the writer's open returns
        writer.join()
        os.close(fd)
