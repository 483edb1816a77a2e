"""A throw-away DHCP lab: real ISC dhcpd failover peers, dhclient clients and tinydns.

Topology (every box is a network namespace named ``ldl-<pid>-<n>-<role>``)::

    peer-a 192.0.2.2 ── bra ─┐                ┌─ brb ── peer-b 192.0.2.3
    only-a clients ───── bra │     br0        │ brb ───── only-b clients
                             └─ uplink ─ both-way clients ─ uplink ─┘

All bridges live in one bridge namespace. ``bra``/``brb`` mark their client ports
and their uplink port ``isolated``: isolated ports cannot talk to each other, so an
only-a client reaches peer-a but nothing behind the uplink (peer-b), while peer-a
itself (not isolated) reaches everything. Only iproute2 is needed, no ebtables/nft.

Nothing gets an address outside 192.0.2.0/24, no namespace has a default route,
IPv6 is off. tinydns runs in the host's root namespace on a free 127.53.x.y.
Every namespace and process this module creates is recorded before it is created
and removed by name/PID on ``close()`` (called by ``__exit__`` and by atexit).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
HOOK = REPO / "hooks" / "dhcpd-event"
SNIPPET_TEMPLATE = REPO / "src" / "leasedns" / "templates" / "dhcpd-hooks.conf"

PEERS = {"peer-a": "192.0.2.2", "peer-b": "192.0.2.3"}
POOL = ("192.0.2.100", "192.0.2.199")
FIXED_HOSTS = {"fixed1": ("02:00:00:00:00:50", "192.0.2.50")}
FAILOVER_NAME = "lab"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REACH = ("both", "peer-a", "peer-b")

_labs: set[Lab] = set()
_lab_counter = itertools.count()
_dns_ips_taken: set[str] = set()


class LabError(RuntimeError):
    """A lab step failed; the message says which and shows the relevant log."""


# ---------------------------------------------------------------- small helpers


def run(*args: str, check: bool = True, timeout: float = 20) -> str:
    """Run a command (no shell), return stdout; raise LabError on failure."""
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise LabError(f"{' '.join(args)} -> {p.returncode}: {p.stderr.strip()}")
    return p.stdout


def wait_for(cond: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    """Poll cond() until it returns something truthy; return that or raise LabError."""
    end = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > end:
            raise LabError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def pid_alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (state Z/X counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def norm_mac(mac: str) -> str:
    """'2:0:0:0:1:a' -> '02:00:00:00:01:0a' (dhcpd drops leading zeros)."""
    return ":".join(f"{int(part, 16):02x}" for part in mac.split(":"))


def conf_string(value: str | bytes) -> str:
    """Quote a value for dhcpd/dhclient config, octal-escaping all but plain ASCII."""
    raw = value.encode() if isinstance(value, str) else value
    plain = (chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\{b:03o}" for b in raw)
    return '"' + "".join(plain) + '"'


def leasedns_snippet(hook_path: str | Path) -> str:
    """The project's dhcpd hooks snippet, rendered for hook_path."""
    return SNIPPET_TEMPLATE.read_text().replace("@HOOK@", str(hook_path))


# ---------------------------------------------------------------- spool events


@dataclass(frozen=True)
class Event:
    """One spooled hook event (raw arguments as dhcpd passed them)."""

    event: str
    ip: str
    mac: str
    client_name: str
    host_decl: str
    lease_secs: str
    path: Path

    @property
    def norm_mac(self) -> str:
        return norm_mac(self.mac) if self.mac else ""


def parse_spool_file(path: Path) -> Event | None:
    """Parse one ev-* file; None if it is not (yet) complete."""
    data = path.read_bytes()
    head = b"leasedns-event 1\n"
    if not data.startswith(head) or not data.endswith(b"\0end\n"):
        return None
    parts = data[len(head) : -len(b"\0end\n")].split(b"\0")
    argc, args = int(parts[0]), [p.decode("utf-8", "surrogateescape") for p in parts[1:]]
    if argc != len(args) or argc != 6:
        raise LabError(f"{path}: argc {argc} but {len(args)} args: {args!r}")
    return Event(*args, path=path)


def read_spool(spool: Path) -> list[Event]:
    """All complete events in a spool dir, oldest file first."""
    files = sorted(spool.glob("ev-*"), key=lambda f: (f.stat().st_mtime_ns, f.name))
    return [ev for ev in map(parse_spool_file, files) if ev is not None]


# ---------------------------------------------------------------- config text


def dhcpd_conf(
    role: str,
    *,
    lease_time: int,
    mclt: int,
    hooks: Path | None,
    fixed_hosts: dict[str, tuple[str, str]],
) -> str:
    """dhcpd.conf for one failover peer (role 'primary' or 'secondary')."""
    me, other = (PEERS["peer-a"], PEERS["peer-b"])
    if role == "secondary":
        me, other = other, me
    primary_only = f"    mclt {mclt};\n    split 128;\n" if role == "primary" else ""
    hosts = "".join(
        f"host {name} {{ hardware ethernet {mac}; fixed-address {ip}; }}\n"
        for name, (mac, ip) in fixed_hosts.items()
    )
    include = f'include "{hooks}";\n' if hooks else ""
    return f"""\
# leasedns lab, {role}
authoritative;
ddns-update-style none;
server-id-check true;
default-lease-time {lease_time};
max-lease-time {lease_time};
min-lease-time {lease_time};

failover peer "{FAILOVER_NAME}" {{
    {role};
    address {me};
    port 647;
    peer address {other};
    peer port 647;
    max-response-delay 10;
    max-unacked-updates 10;
    load balance max seconds 3;
{primary_only}}}

{include}
subnet 192.0.2.0 netmask 255.255.255.0 {{
    pool {{
        failover peer "{FAILOVER_NAME}";
        range {POOL[0]} {POOL[1]};
    }}
}}

{hosts}"""


CLIENT_SCRIPT = """\
#!/bin/sh
# leasedns lab dhclient -sf script: addresses only, never resolv.conf or routes.
echo "lab-script: $reason new=${new_ip_address:-} old=${old_ip_address:-}" >&2
case "$reason" in
PREINIT)
    ip link set dev "$interface" up ;;
BOUND|RENEW|REBIND|REBOOT)
    if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
        ip -4 addr del "$old_ip_address/$old_subnet_mask" dev "$interface"
    fi
    ip -4 addr replace "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
EXPIRE|FAIL|RELEASE|STOP)
    if [ -n "$old_ip_address" ]; then
        ip -4 addr del "$old_ip_address/$old_subnet_mask" dev "$interface"
    fi ;;
esac
exit 0
"""


def dhclient_conf(name: str | bytes | None) -> str:
    """dhclient.conf: send our host-name, retry fast."""
    send = f"send host-name {conf_string(name)};\n" if name is not None else ""
    return f"{send}initial-interval 1;\nbackoff-cutoff 2;\ntimeout 60;\nretry 1;\n"


# ---------------------------------------------------------------- lab objects


@dataclass
class Proc:
    """A process we started: Popen plus what to say about it."""

    popen: subprocess.Popen[bytes]
    what: str

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None and pid_alive(self.pid)


@dataclass
class Peer:
    """One dhcpd failover peer and its files."""

    name: str
    role: str
    ip: str
    ns: str
    dir: Path
    proc: Proc | None = None
    tinydns: Proc | None = None
    dns_ip: str | None = None

    conf = property(lambda self: self.dir / "dhcpd.conf")
    leases = property(lambda self: self.dir / "dhcpd.leases")
    pidfile = property(lambda self: self.dir / "dhcpd.pid")
    log = property(lambda self: self.dir / "dhcpd.log")
    spool = property(lambda self: self.dir / "spool")
    dns_root = property(lambda self: self.dir / "tinydns")
    dns_log = property(lambda self: self.dir / "tinydns.log")


@dataclass
class Client:
    """One dhclient host and its files."""

    name: str | bytes | None
    mac: str
    ns: str
    dir: Path
    port: str
    reach: str = "both"
    proc: Proc | None = None

    conf = property(lambda self: self.dir / "dhclient.conf")
    leases = property(lambda self: self.dir / "dhclient.leases")
    pidfile = property(lambda self: self.dir / "dhclient.pid")
    log = property(lambda self: self.dir / "dhclient.log")


class Lab:
    """Network namespaces with two dhcpd failover peers, clients and tinydns.

    Use as a context manager; everything it created is removed on exit.
    """

    def __init__(
        self,
        workdir: str | Path | None = None,
        *,
        lease_time: int = 600,
        mclt: int = 300,
        hooks_snippet: str | Path | None = None,
        peer_env: dict[str, str] | Callable[[Peer], dict[str, str]] | None = None,
        fixed_hosts: dict[str, tuple[str, str]] | None = None,
    ) -> None:
        self.tag = f"ldl-{os.getpid()}-{next(_lab_counter)}"
        self.dir = Path(workdir or tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self.lease_time, self.mclt = lease_time, mclt
        self.hooks_snippet = Path(hooks_snippet) if hooks_snippet else None
        self.peer_env = peer_env
        self.fixed_hosts = FIXED_HOSTS if fixed_hosts is None else fixed_hosts
        self.namespaces: list[str] = []
        self.procs: list[Proc] = []
        self.bridge_ns = f"{self.tag}-br"
        self.peers = {
            name: Peer(name, role, PEERS[name], f"{self.tag}-{name}", self.dir / name)
            for name, role in (("peer-a", "primary"), ("peer-b", "secondary"))
        }
        self.clients: dict[str, Client] = {}
        self._client_seq = itertools.count(1)
        self._script = self.dir / "dhclient-script"

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> Lab:
        _labs.add(self)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every process we started, delete every namespace we created."""
        for proc in reversed(list(self.procs)):
            try:
                self._stop(proc)
            except Exception as e:  # keep going: the namespaces must go regardless
                warnings.warn(f"lab cleanup: {proc.what} (pid {proc.pid}): {e}", stacklevel=2)
        for ns in reversed(self.namespaces):
            run("ip", "netns", "del", ns, check=False)
        self.namespaces.clear()
        for peer in self.peers.values():
            _dns_ips_taken.discard(peer.dns_ip or "")
        _labs.discard(self)

    def _build(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._script.write_text(CLIENT_SCRIPT)
        self._script.chmod(0o755)
        self._add_ns(self.bridge_ns)
        for br in ("br0", "bra", "brb"):
            self._ip(
                self.bridge_ns,
                "link",
                "add",
                br,
                "type",
                "bridge",
                "stp_state",
                "0",
                "forward_delay",
                "0",
            )
            self._ip(self.bridge_ns, "link", "set", br, "up")
        for side in ("a", "b"):  # uplinks br0 <-> bra/brb, isolated on the side bridge
            self._ip(
                self.bridge_ns,
                "link",
                "add",
                f"up{side}0",
                "type",
                "veth",
                "peer",
                "name",
                f"up{side}1",
            )
            self._port(f"up{side}0", "br0")
            self._port(f"up{side}1", f"br{side}", isolated=True)
        for peer in self.peers.values():
            peer.dir.mkdir(parents=True, exist_ok=True)
            peer.spool.mkdir(exist_ok=True)
            self._add_host(peer.ns, f"v{peer.name}", f"br{peer.name[-1]}", isolated=False)
            self._ip(peer.ns, "addr", "add", f"{peer.ip}/24", "dev", "eth0")
            self._ip(peer.ns, "link", "set", "eth0", "up")

    def _add_ns(self, ns: str) -> None:
        self.namespaces.append(ns)  # recorded first: removed even if creation half-fails
        run("ip", "netns", "add", ns)
        run(
            "ip",
            "netns",
            "exec",
            ns,
            "sysctl",
            "-q",
            "-w",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
        )
        self._ip(ns, "link", "set", "lo", "up")

    def _add_host(
        self, ns: str, port: str, bridge: str, *, isolated: bool, mac: str | None = None
    ) -> None:
        """A namespace with eth0, its other end `port` on `bridge`."""
        self._add_ns(ns)
        self._ip(
            self.bridge_ns, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns
        )
        if mac:
            self._ip(ns, "link", "set", "eth0", "address", mac)
        self._port(port, bridge, isolated=isolated)

    def _port(self, port: str, bridge: str, *, isolated: bool = False) -> None:
        self._ip(self.bridge_ns, "link", "set", port, "master", bridge)
        run(
            "bridge",
            "-n",
            self.bridge_ns,
            "link",
            "set",
            "dev",
            port,
            "isolated",
            "on" if isolated else "off",
        )
        self._ip(self.bridge_ns, "link", "set", port, "up")

    @staticmethod
    def _ip(ns: str, *args: str) -> str:
        return run("ip", "-n", ns, *args)

    # ------------------------------------------------------------ processes

    def _spawn(
        self, what: str, argv: list[str], log: Path, env: dict[str, str] | None = None
    ) -> Proc:
        with open(log, "ab") as out:
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env or {"PATH": PATH},
                start_new_session=True,
            )
        proc = Proc(popen, what)
        self.procs.append(proc)
        return proc

    def _stop(self, proc: Proc | None, sig: int = signal.SIGTERM, timeout: float = 3) -> None:
        """Signal one of our processes, SIGKILL it if it lingers, reap it."""
        if proc is None:
            return
        if proc.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, sig)
            with contextlib.suppress(LabError):
                wait_for(lambda: not proc.alive(), timeout, f"{proc.what} to exit")
            if proc.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                wait_for(lambda: not proc.alive(), 5, f"{proc.what} to die")
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=1)
        if proc in self.procs:
            self.procs.remove(proc)

    # ------------------------------------------------------------ peers

    def peer(self, name: str) -> Peer:
        return self.peers[name]

    def _peer_env(self, peer: Peer) -> dict[str, str]:
        extra = self.peer_env(peer) if callable(self.peer_env) else (self.peer_env or {})
        return {"PATH": PATH, **extra}

    def start_peer(self, name: str, *, wait: bool = True, timeout: float = 15) -> None:
        """Write the config, check it with dhcpd -t, start dhcpd; wait for 'to normal'."""
        peer = self.peers[name]
        if peer.proc and peer.proc.alive():
            raise LabError(f"{name}: dhcpd already running (pid {peer.proc.pid})")
        peer.conf.write_text(
            dhcpd_conf(
                peer.role,
                lease_time=self.lease_time,
                mclt=self.mclt,
                hooks=self.hooks_snippet,
                fixed_hosts=self.fixed_hosts,
            )
        )
        peer.leases.touch()
        check = subprocess.run(
            ["dhcpd", "-t", "-4", "-cf", str(peer.conf)], capture_output=True, text=True
        )
        if check.returncode != 0:
            raise LabError(f"{peer.conf} rejected by dhcpd -t:\n{check.stderr}")
        mark = self._log_size(peer.log)
        peer.proc = self._spawn(
            f"dhcpd {name}",
            [
                "ip",
                "netns",
                "exec",
                peer.ns,
                "dhcpd",
                "-4",
                "-d",
                "-cf",
                str(peer.conf),
                "-lf",
                str(peer.leases),
                "-pf",
                str(peer.pidfile),
                "eth0",
            ],
            peer.log,
            env=self._peer_env(peer),
        )
        if wait:
            self.wait_normal(name, since=mark, timeout=timeout)

    def start_peers(self, timeout: float = 15) -> None:
        """Start both dhcpd peers and wait until both are in failover state normal."""
        marks = {name: self._log_size(p.log) for name, p in self.peers.items()}
        # One first, the other once it listens: else the first one's failed connect
        # costs a 5 s retry.
        self.start_peer("peer-b", wait=False)
        self.wait_listening("peer-b", timeout)
        self.start_peer("peer-a", wait=False)
        for name in self.peers:
            self.wait_normal(name, since=marks[name], timeout=timeout)

    def wait_normal(self, name: str, *, since: int = 0, timeout: float = 15) -> None:
        """Wait until the peer's log (from byte `since`) says 'I move from ... to normal'."""
        peer = self.peers[name]

        def normal() -> bool:
            if peer.proc is None or not peer.proc.alive():
                raise LabError(f"{name}: dhcpd exited:\n{self.peer_log(name)[-3000:]}")
            return bool(re.search(r"I move from \S+ to normal", self.peer_log(name, since)))

        try:
            wait_for(normal, timeout, f"{name} to reach failover state normal")
        except LabError as e:
            raise LabError(f"{e}\n--- {peer.log}:\n{self.peer_log(name)[-3000:]}") from None

    def wait_listening(self, name: str, timeout: float = 15) -> None:
        """Wait until the peer's dhcpd listens on the failover port 647."""
        peer = self.peers[name]

        def listening() -> bool:
            if peer.proc is None or not peer.proc.alive():
                raise LabError(f"{name}: dhcpd exited:\n{self.peer_log(name)[-3000:]}")
            return bool(run("ip", "netns", "exec", peer.ns, "ss", "-Hltn", "sport = :647"))

        wait_for(listening, timeout, f"{name} to listen on port 647")

    def stop_peer(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop the peer's dhcpd (SIGTERM by default; SIGKILL to crash it)."""
        peer = self.peers[name]
        self._stop(peer.proc, sig)
        peer.proc = None
        peer.pidfile.unlink(missing_ok=True)  # a stale PID could stop the next start

    def restart_peer(
        self, name: str, sig: int = signal.SIGTERM, *, wait: bool = True, timeout: float = 30
    ) -> None:
        """Stop the peer's dhcpd with sig, start it again on the same lease file."""
        self.stop_peer(name, sig)
        self.start_peer(name, wait=wait, timeout=timeout)

    def peer_log(self, name: str, since: int = 0) -> str:
        with contextlib.suppress(FileNotFoundError), open(self.peers[name].log, "rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")
        return ""

    def leases(self, name: str) -> str:
        """The peer's dhcpd.leases text."""
        return self.peers[name].leases.read_text(errors="replace")

    def events(self, name: str) -> list[Event]:
        """Complete events in the peer's spool dir (when LEASEDNS_SPOOL points there)."""
        return read_spool(self.peers[name].spool)

    @staticmethod
    def _log_size(path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return 0

    # ------------------------------------------------------------ tinydns

    def start_tinydns(self, name: str, timeout: float = 5) -> str:
        """Start tinydns for the peer in the root namespace; return its 127.53.x.y."""
        peer = self.peers[name]
        peer.dns_root.mkdir(parents=True, exist_ok=True)
        ip = peer.dns_ip or pick_dns_ip()
        peer.dns_ip = ip
        env = {
            "PATH": "/usr/sbin:/usr/bin",
            "ROOT": str(peer.dns_root),
            "IP": ip,
            "UID": "0",
            "GID": "0",
        }
        peer.tinydns = self._spawn(f"tinydns {name}", ["tinydns"], peer.dns_log, env=env)

        def bound() -> bool:
            if not peer.tinydns or not peer.tinydns.alive():
                raise LabError(f"tinydns {name} exited: {peer.dns_log.read_text()[-2000:]}")
            # Looked up, never probed by binding: a probe that holds the port for a moment
            # is what made tinydns fail at that moment ("address already used").
            return udp53_listening(ip)

        wait_for(bound, timeout, f"tinydns {name} to bind {ip}:53")
        return ip

    def stop_tinydns(self, name: str) -> None:
        """Stop the peer's tinydns (by its PID)."""
        peer = self.peers[name]
        self._stop(peer.tinydns)
        peer.tinydns = None

    # ------------------------------------------------------------ clients

    def add_client(
        self,
        name: str | bytes | None,
        mac: str | None = None,
        *,
        reach: str = "both",
        key: str | None = None,
        start: bool = True,
    ) -> Client:
        """Create a client namespace (MAC 02:00:00:00:00:NN unless given) and start dhclient.

        name is the host-name sent (None: send none); key is how you refer to the client
        (default: name). reach is 'both', 'peer-a' or 'peer-b'.
        """
        if reach not in REACH:
            raise ValueError(f"reach must be one of {REACH}")
        n = next(self._client_seq)
        key = key or (name.decode() if isinstance(name, bytes) else name) or f"c{n}"
        if key in self.clients:
            raise LabError(f"client {key!r} exists")
        mac = mac or f"02:00:00:00:00:{n:02x}"
        client = Client(name, mac, f"{self.tag}-c{n}", self.dir / f"client-{n}", f"c{n}")
        self.clients[key] = client
        client.dir.mkdir(parents=True)
        client.conf.write_text(dhclient_conf(name))
        self._add_host(client.ns, client.port, "br0", isolated=False, mac=mac)
        self._ip(client.ns, "link", "set", "eth0", "up")
        self.set_reach(key, reach)
        if start:
            self.start_client(key)
        return client

    def set_reach(self, key: str, reach: str) -> None:
        """Move the client's port: 'both' (br0), 'peer-a' (bra), 'peer-b' (brb)."""
        client = self.clients[key]
        bridge = {"both": "br0", "peer-a": "bra", "peer-b": "brb"}[reach]
        self._port(client.port, bridge, isolated=reach != "both")
        client.reach = reach

    def _dhclient(self, client: Client, *extra: str, pidfile: Path | None = None) -> list[str]:
        return [
            "ip",
            "netns",
            "exec",
            client.ns,
            "dhclient",
            "-4",
            *extra,
            "-cf",
            str(client.conf),
            "-lf",
            str(client.leases),
            "-pf",
            str(pidfile or client.pidfile),
            "-sf",
            str(self._script),
            "eth0",
        ]

    def start_client(self, key: str) -> None:
        """Start `dhclient -4 -d -v` for the client."""
        client = self.clients[key]
        if client.proc and client.proc.alive():
            raise LabError(f"client {key}: dhclient already running")
        client.proc = self._spawn(f"dhclient {key}", self._dhclient(client, "-d", "-v"), client.log)

    def address(self, key: str) -> str | None:
        """The client's current IPv4 address on eth0, or None."""
        out = self._ip(self.clients[key].ns, "-4", "-o", "addr", "show", "dev", "eth0")
        m = re.search(r"\binet (\d+\.\d+\.\d+\.\d+)/", out)
        return m.group(1) if m else None

    def wait_address(self, key: str, timeout: float = 15) -> str:
        """Wait until the client has an IPv4 address; return it."""
        try:
            return str(wait_for(lambda: self.address(key), timeout, f"an address on {key}"))
        except LabError as e:
            raise LabError(
                f"{e}\n--- {self.clients[key].log}:\n{self.client_log(key)[-2000:]}"
            ) from None

    def acked_by(self, key: str) -> str | None:
        """Which peer sent the client's last DHCPACK (from the dhclient log)."""
        acks = re.findall(r"DHCPACK of \S+ from (\S+)", self.client_log(key))
        by_ip = {p.ip: p.name for p in self.peers.values()}
        return by_ip.get(acks[-1]) if acks else None

    def kill_client(self, key: str) -> None:
        """SIGKILL the client's dhclient: no release, the lease runs out on the server."""
        client = self.clients[key]
        self._stop(client.proc, signal.SIGKILL)
        client.proc = None
        client.pidfile.unlink(missing_ok=True)

    def release_client(self, key: str, timeout: float = 15) -> None:
        """SIGKILL dhclient, then `dhclient -4 -r` on the same lease file (sends DHCPRELEASE)."""
        client = self.clients[key]
        self.kill_client(key)
        argv = self._dhclient(client, "-r", "-v", pidfile=client.dir / "release.pid")
        with open(client.log, "ab") as out:
            p = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={"PATH": PATH},
                timeout=timeout,
            )
        if p.returncode != 0:
            raise LabError(f"dhclient -r {key} -> {p.returncode}:\n{self.client_log(key)[-2000:]}")

    def client_log(self, key: str) -> str:
        return self.clients[key].log.read_text(errors="replace")


# ---------------------------------------------------------------- tinydns addresses


def udp53_free(ip: str) -> bool:
    """True if nothing holds UDP ip:53 (we can bind it without SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((ip, 53))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def udp53_listening(ip: str) -> bool:
    """True if a UDP socket of this network namespace is bound to ip:53 (read from
    /proc/net/udp, without touching the port)."""
    want = f"{socket.htonl(int.from_bytes(socket.inet_aton(ip), 'big')):08X}:0035"
    with open("/proc/net/udp") as f:
        return any(line.split()[1] == want for line in list(f)[1:])


def _dns_candidates() -> Iterator[str]:
    """127.53.x.y addresses, starting at a spot derived from our PID."""
    start = (os.getpid() * 7) % (254 * 254)
    for i in range(254 * 254):
        x, y = divmod((start + i) % (254 * 254), 254)
        yield f"127.53.{x + 1}.{y + 1}"


def pick_dns_ip() -> str:
    """A free 127.53.x.y for a tinydns of ours."""
    for ip in _dns_candidates():
        if ip not in _dns_ips_taken and udp53_free(ip):
            _dns_ips_taken.add(ip)
            return ip
    raise LabError("no free 127.53.x.y address")


# ---------------------------------------------------------------- preflight, backstop


def lab_missing() -> str | None:
    """Why the lab cannot run here, or None if it can (root, ip netns, daemons)."""
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces)"
    for prog in ("ip", "bridge", "ss", "sysctl", "dhcpd", "dhclient", "tinydns", "tinydns-data"):
        if not shutil.which(prog, path=PATH):
            return (
                f"lab tests need {prog} (apt-get install isc-dhcp-server isc-dhcp-client"
                " tinydns iproute2)"
            )
    ns = f"ldl-{os.getpid()}-probe"
    try:
        run("ip", "netns", "add", ns)
        run("ip", "-n", ns, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        run("ip", "-n", ns, "link", "set", "v0", "master", "br0")
        run("bridge", "-n", ns, "link", "set", "dev", "v0", "isolated", "on")
    except (LabError, OSError) as e:
        return f"cannot build network namespaces with bridges here: {e}"
    finally:
        run("ip", "netns", "del", ns, check=False)
    return None


@atexit.register
def _close_all() -> None:
    for lab in list(_labs):
        lab.close()
