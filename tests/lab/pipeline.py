"""The real leasedns pipeline on both lab peers, as a sysadmin sets it up.

Each peer's dhcpd includes the snippet printed by ``leasedns dhcpd-snippet``; dhcpd runs
the installed hook ``dhcpd-event`` with LEASEDNS_SPOOL/LEASEDNS_CONFIG in its environment;
the hook starts ``leasedns apply`` itself. Each peer has its own leasedns.yaml, its own
state (spool, journal) and its own tinydns root served by a real tinydns.

Journals reach the partner either by ``rsync`` (``sync.partners[].rsync_target``, the
partner's journal root) or because both peers use one shared ``journal_dir`` (the NFS
setup); in both modes the partner's ``notify`` command makes it rebuild.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.reversename

from dnsservers import Bind, Unbound, tsig_key

from .netlab import Lab, LabError, Peer

BIN = Path(sys.executable).parent
LEASEDNS = BIN / "leasedns"
HOOK_BIN = BIN / "dhcpd-event"
DOMAIN = "lab.example"
SUBNET = "192.0.2.0/24"
REVERSE = "2.0.192.in-addr.arpa"
OWNER = "lab-site"  # the rfc2136 owner: the same on both peers (one site)
MODES = ("rsync", "shared")
HOOK_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def snippet_file(path: Path) -> Path:
    """Write what `leasedns dhcpd-snippet --hook <installed hook>` prints to path."""
    p = subprocess.run(
        [str(LEASEDNS), "dhcpd-snippet", "--hook", str(HOOK_BIN)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    path.write_text(p.stdout)
    return path


# ---------------------------------------------------------------- namespace -> host TCP

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def listen_in_netns(ns: str, port: int) -> socket.socket:
    """A TCP socket listening on 127.0.0.1:port inside network namespace `ns`.

    A short-lived thread joins the namespace (setns affects the calling thread only) and
    creates the socket there; the socket stays in that namespace after the thread ends."""
    got: list[socket.socket | BaseException] = []

    def inside() -> None:
        try:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {ns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
            s.listen(64)
            got.append(s)
        except BaseException as e:  # handed to the caller
            got.append(e)

    t = threading.Thread(target=inside, name=f"setns {ns}")
    t.start()
    t.join()
    if isinstance(got[0], BaseException):
        raise LabError(f"cannot listen on 127.0.0.1:{port} in {ns}: {got[0]}")
    return got[0]


class Forward:
    """Every TCP connection to 127.0.0.1:port in namespace `ns` is carried to
    127.0.0.1:port of the host (where BIND listens). Threads of this process; close()
    stops accepting and cuts the open connections (the peer's "network" is down)."""

    def __init__(self, ns: str, port: int) -> None:
        self.ns, self.port = ns, port
        self.listener = listen_in_netns(ns, port)
        self.conns: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.closed = False
        self.thread = threading.Thread(target=self._accept, name=f"forward {ns}", daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                inner, _ = self.listener.accept()
            except OSError:
                return  # closed
            try:
                outer = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                outer.settimeout(None)
            except OSError:
                inner.close()  # BIND is down: the peer's connection is refused-like
                continue
            with self.lock:
                if self.closed:
                    inner.close()
                    outer.close()
                    return
                self.conns |= {inner, outer}
            threading.Thread(target=self._carry, args=(inner, outer), daemon=True).start()

    def _carry(self, inner: socket.socket, outer: socket.socket) -> None:
        """Both directions until both ends are done, then close the pair."""

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        back = threading.Thread(target=pump, args=(outer, inner), daemon=True)
        back.start()
        pump(inner, outer)
        back.join()
        with self.lock:
            self.conns -= {inner, outer}
        inner.close()
        outer.close()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            conns, self.conns = set(self.conns), set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()
        self.thread.join(5)


class Site:
    """leasedns configured on both peers of a Lab; DNS queries against both tinydns."""

    def __init__(
        self,
        lab: Lab,
        mode: str = "rsync",
        *,
        coalesce_secs: float = 0.1,
        outputs: bool = False,
        program: Path = LEASEDNS,
    ) -> None:
        """program: the leasedns the peers run (the hook's LEASEDNS_BIN, notify and every
        command); by default this virtualenv's, /usr/bin/leasedns for the Debian package."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.lab, self.mode, self.coalesce_secs = lab, mode, coalesce_secs
        self.program = program
        self.bind: Bind | None = None
        self.unbounds: dict[str, Unbound] = {}
        self.forwards: dict[str, Forward] = {}
        if outputs:
            try:
                self._start_outputs()
            except BaseException:
                self.close()
                raise
        self.shared_journal = lab.dir / "shared-journal"
        self.static = lab.dir / "static.data"
        for peer in lab.peers.values():
            # README, install step 2: the admin creates the state layout
            self.spool(peer.name).mkdir(parents=True, exist_ok=True)
            self.journal(peer.name).mkdir(parents=True, exist_ok=True)
            lab.start_tinydns(peer.name)
        # One static file for both peers: their data files must be byte-identical.
        self.static.write_text(
            f".{DOMAIN}::ns.{DOMAIN}:300\n.2.0.192.in-addr.arpa::ns.{DOMAIN}:300\n"
        )
        for peer in lab.peers.values():
            self.host_up(peer.name)
            self.config(peer.name).write_text(self.config_text(peer))

    def _start_outputs(self) -> None:
        """One BIND primary for both peers (reached from each peer's namespace through a
        Forward) and one Unbound per peer."""
        self.key = tsig_key(self.lab.dir)
        self.bind = Bind(self.lab.dir, self.key, zone=DOMAIN, reverse_zones=(REVERSE,), records=())
        self.bind.start()
        for peer in self.lab.peers.values():
            self.unbounds[peer.name] = Unbound(
                peer.dir / "unbound", zones=(DOMAIN, REVERSE), local_data=(), local_data_ptr=()
            )
            self.unbounds[peer.name].start()
            self.forwards[peer.name] = Forward(peer.ns, self.bind.port)

    def close(self) -> None:
        """Stop the forwards, the Unbounds and BIND (only what this Site started)."""
        for fwd in self.forwards.values():
            fwd.close()
        self.forwards.clear()
        for ub in self.unbounds.values():
            ub.stop()
        if self.bind is not None:
            self.bind.stop()

    def network_down(self, name: str) -> None:
        """The peer's host is gone for DNS too: its tinydns and Unbound stop, BIND is cut."""
        self.lab.stop_tinydns(name)
        if name in self.unbounds:
            self.unbounds[name].stop()
        fwd = self.forwards.pop(name, None)
        if fwd is not None:
            fwd.close()

    def network_up(self, name: str) -> None:
        """The peer's tinydns and Unbound run again (Unbound empty, as after a reboot), BIND
        is reachable again."""
        self.lab.start_tinydns(name)
        if name in self.unbounds:
            self.unbounds[name].start()
        if self.bind is not None and name not in self.forwards:
            self.forwards[name] = Forward(self.lab.peers[name].ns, self.bind.port)

    # ------------------------------------------------------------ files

    def state(self, name: str) -> Path:
        return self.lab.peers[name].dir / "state"

    def spool(self, name: str) -> Path:
        return self.state(name) / "spool"

    def journal(self, name: str) -> Path:
        return self.shared_journal if self.mode == "shared" else self.state(name) / "journal"

    def config(self, name: str) -> Path:
        return self.lab.peers[name].dir / "leasedns.yaml"

    def data_path(self, name: str) -> Path:
        return self.lab.peers[name].dns_root / "data"

    def data(self, name: str) -> bytes:
        return self.data_path(name).read_bytes()

    def remote(self, name: str) -> Path:
        """How the partner reaches the peer's files (a symlink: host_down removes it)."""
        return self.lab.dir / f"{name}.host"

    def host_down(self, name: str) -> None:
        """The peer's host becomes unreachable: rsync to it and its notify command fail."""
        self.remote(name).unlink()

    def host_up(self, name: str) -> None:
        self.remote(name).symlink_to(self.lab.peers[name].dir, target_is_directory=True)

    def partner(self, name: str) -> str:
        return next(p for p in self.lab.peers if p != name)

    def config_text(self, peer: Peer) -> str:
        other = self.partner(peer.name)
        q = json.dumps  # a JSON string is a valid YAML scalar: paths quoted safely
        lines = [
            f"peer: {peer.name}",
            f"state_dir: {q(str(self.state(peer.name)))}",
        ]
        if self.mode == "shared":
            lines.append(f"journal_dir: {q(str(self.shared_journal))}")
        lines += [
            f"domain: {DOMAIN}",
            f"subnets: [{SUBNET}]",
            "names: {protected: [www]}",
            "tinydns:",
            f"  root: {q(str(peer.dns_root))}",
            "  data_program: /usr/sbin/tinydns-data",
            f"  static: [{q(str(self.static))}]",
            "dhcpd:",
            f"  conf: {q(str(peer.conf))}",
            # reconcile reads both peers' lease files (the partner's as the admin copies it)
            f"  leases: [{q(str(peer.leases))}, {q(str(self.remote(other) / 'dhcpd.leases'))}]",
            f"build: {{coalesce_secs: {self.coalesce_secs}}}",
            "sync:",
            "  partners:",
            f"    - name: {other}",
        ]
        if self.mode == "rsync":
            target = self.remote(other) / "state" / "journal"
            lines.append(f"      rsync_target: {q(str(target) + '/')}")
        notify = [str(self.program), "-c", str(self.remote(other) / "leasedns.yaml"), "apply"]
        lines.append(f"      notify: {q(notify)}")
        if self.bind is not None:
            lines += [
                "outputs:",
                "  - type: rfc2136",
                "    server: 127.0.0.1",
                f"    port: {self.bind.port}",
                f"    reverse_zones: [{REVERSE}]",
                f"    tsig_key_file: {q(str(self.key.path))}",
                f"    owner: {OWNER}",
                "  - type: unbound",
                f"    control: {q(list(self.unbounds[peer.name].control))}",
            ]
        return "\n".join(lines) + "\n"

    def peer_env(self, peer: Peer) -> dict[str, str]:
        """dhcpd's environment (the hook gets nothing else)."""
        env = {
            "LEASEDNS_SPOOL": str(self.spool(peer.name)),
            "LEASEDNS_CONFIG": str(self.config(peer.name)),
            "PATH": HOOK_PATH,
        }
        if self.program != LEASEDNS:  # the venv's hook finds its leasedns beside itself
            env["LEASEDNS_BIN"] = str(self.program)
        return env

    # ------------------------------------------------------------ commands

    def leasedns(
        self, name: str, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run `leasedns -c <peer's config> ARGS` as the admin would."""
        p = subprocess.run(
            [str(self.program), "-c", str(self.config(name)), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env={"PATH": HOOK_PATH, "LANG": "C.UTF-8"},
        )
        if check and p.returncode != 0:
            raise LabError(
                f"leasedns -c {self.config(name)} {' '.join(args)} -> "
                f"{p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
            )
        return p

    def show(self, name: str) -> list[dict[str, object]]:
        out = self.leasedns(name, "show", "--json").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    # ------------------------------------------------------------ waiting

    def busy(self, name: str) -> str:
        """Why the peer's pipeline is not idle ('' when idle)."""
        spool = self.spool(name)
        if any(spool.glob("ev-*")):
            return "events in the spool"
        if (spool / ".apply-due").exists():
            return "an apply is due"
        lock = self.state(name) / "build.lock"
        if lock.exists():
            fd = os.open(lock, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return "a build is running"
            finally:
                os.close(fd)
        return ""

    def quiesce(self, timeout: float = 15) -> None:
        """Wait until no peer has spooled events, a due apply or a running build."""

        def idle() -> bool:
            return not any(self.busy(n) for n in self.lab.peers)

        try:
            _wait(idle, timeout)
        except TimeoutError:
            why = {n: self.busy(n) for n in self.lab.peers}
            raise LabError(f"leasedns did not go idle in {timeout} s: {why}") from None

    # ------------------------------------------------------------ DNS

    def resolver(self, name: str) -> dns.resolver.Resolver:
        r = dns.resolver.Resolver(configure=False)
        ip = self.lab.peers[name].dns_ip
        assert ip, f"no tinydns for {name}"
        r.nameservers = [ip]
        r.lifetime = 0.5
        r.cache = None
        return r

    def a(self, peer: str, host: str) -> set[str] | None:
        """A addresses of HOST.lab.example from peer's tinydns; None for NXDOMAIN."""
        fqdn = host if host.endswith(".") else f"{host}.{DOMAIN}."
        try:
            return {r.address for r in self.resolver(peer).resolve(fqdn, "A")}
        except dns.resolver.NXDOMAIN:
            return None
        except dns.resolver.NoAnswer:
            return set()
        except dns.resolver.NoNameservers:
            return {"(refused)"}
        except dns.exception.Timeout:
            return {"(timeout)"}

    def ptr(self, peer: str, ip: str) -> set[str] | None:
        """PTR targets of ip (relative to lab.example when inside it); None for NXDOMAIN."""
        try:
            answer = self.resolver(peer).resolve(dns.reversename.from_address(ip), "PTR")
        except dns.resolver.NXDOMAIN:
            return None
        except dns.resolver.NoAnswer:
            return set()
        except dns.resolver.NoNameservers:
            return {"(refused)"}
        except dns.exception.Timeout:
            return {"(timeout)"}
        return {_short(r.target.to_text()) for r in answer}

    def answers(self, peer: str, names: Iterable[str], ips: Iterable[str]) -> dict[str, object]:
        """{name: A set or None, ip: PTR set or None} as peer's tinydns answers now."""
        got: dict[str, object] = {}
        if not (self.lab.peers[peer].dns_root / "data.cdb").exists():
            # tinydns drops queries until the first data.cdb exists: do not wait for that
            return {k: "(no data.cdb)" for k in [*names, *(f"ptr {ip}" for ip in ips)]}
        for n in names:
            got[n] = self.a(peer, n)
        for ip in ips:
            got[f"ptr {ip}"] = self.ptr(peer, ip)
        return got

    def wait_dns(
        self,
        expect_a: Mapping[str, str | None] | Callable[[], Mapping[str, str | None]],
        expect_ptr: Mapping[str, str | None] | None = None,
        *,
        peers: Iterable[str] | None = None,
        timeout: float = 10,
    ) -> None:
        """Wait until every peer's tinydns answers as expected, else fail showing the diff.

        expect_a: name -> address (None: NXDOMAIN); expect_ptr: address -> name (None:
        NXDOMAIN). By default every expected A implies its PTR. expect_a may be a callable
        (e.g. the clients' current addresses), then it is asked again on every try.
        """
        self._wait_answers(
            self.answers, list(peers or self.lab.peers), expect_a, expect_ptr, timeout, "DNS"
        )

    # ------------------------------------------------------------ BIND and Unbound

    def servers(self) -> list[str]:
        """The other outputs' servers: "bind" and "unbound <peer>" for each peer."""
        return ["bind", *(f"unbound {p}" for p in self.unbounds)]

    def ask(self, server: str, qname: str, rdtype: str, timeout: float = 2) -> set[str] | None:
        """One query over TCP to BIND ("bind") or a peer's Unbound ("unbound peer-a"): the
        answer's addresses (A) or names (PTR, relative to lab.example when inside it); None
        for NXDOMAIN, empty for no such record, "(RCODE)" or "(error)" otherwise."""
        if server == "bind":
            assert self.bind is not None, "no BIND: Site(..., outputs=True)"
            port = self.bind.port
        else:
            port = self.unbounds[server.removeprefix("unbound ")].port
        q = dns.message.make_query(qname, rdtype)
        try:
            r = dns.query.tcp(q, "127.0.0.1", timeout=timeout, port=port)
        except (OSError, dns.exception.DNSException) as e:
            return {f"(error: {type(e).__name__})"}
        if r.rcode() == dns.rcode.NXDOMAIN:
            return None
        if r.rcode() != dns.rcode.NOERROR:
            return {f"({dns.rcode.to_text(r.rcode())})"}
        kind = dns.rdatatype.from_text(rdtype)
        try:
            rrset = r.find_rrset(r.answer, dns.name.from_text(qname), dns.rdataclass.IN, kind)
        except KeyError:
            return set()
        if kind == dns.rdatatype.PTR:
            return {_short(rd.target.to_text()) for rd in rrset}
        return {rd.to_text() for rd in rrset}

    def server_answers(
        self, server: str, names: Iterable[str], ips: Iterable[str]
    ) -> dict[str, object]:
        """{name: A set or None, "ptr ip": PTR set or None} as the server answers now."""
        got: dict[str, object] = {}
        for n in names:
            got[n] = self.ask(server, f"{n}.{DOMAIN}.", "A")
        for ip in ips:
            got[f"ptr {ip}"] = self.ask(server, dns.reversename.from_address(ip).to_text(), "PTR")
        return got

    def wait_outputs(
        self,
        expect_a: Mapping[str, str | None] | Callable[[], Mapping[str, str | None]],
        expect_ptr: Mapping[str, str | None] | None = None,
        *,
        servers: Iterable[str] | None = None,
        timeout: float = 10,
    ) -> None:
        """wait_dns for BIND and both Unbounds (or `servers`)."""
        self._wait_answers(
            self.server_answers,
            list(servers or self.servers()),
            expect_a,
            expect_ptr,
            timeout,
            "BIND/Unbound",
        )

    def _wait_answers(
        self,
        answers: Callable[[str, list[str], list[str]], dict[str, object]],
        where: list[str],
        expect_a: Mapping[str, str | None] | Callable[[], Mapping[str, str | None]],
        expect_ptr: Mapping[str, str | None] | None,
        timeout: float,
        what: str,
    ) -> None:
        got: dict[str, dict[str, object]] = {}
        end = time.monotonic() + timeout
        while True:
            exp_a = expect_a() if callable(expect_a) else expect_a
            exp_ptr = expect_ptr
            if exp_ptr is None:
                exp_ptr = {ip: n for n, ip in exp_a.items() if ip is not None}
            want: dict[str, object] = {n: (None if ip is None else {ip}) for n, ip in exp_a.items()}
            want.update({f"ptr {ip}": (None if n is None else {n}) for ip, n in exp_ptr.items()})
            names, ips = list(exp_a), list(exp_ptr)
            got = {w: answers(w, names, ips) for w in where}
            if all(g == want for g in got.values()):
                return
            if time.monotonic() > end:
                break
            time.sleep(0.1)
        diff = {w: {k: v for k, v in g.items() if v != want[k]} for w, g in got.items()}
        wanted = {k: want[k] for d in diff.values() for k in d}
        raise AssertionError(
            f"{what} after {timeout} s differs from expected {wanted}: {diff}\n" + self.describe()
        )

    def describe(self) -> str:
        """Data files and last builds of both peers, for failure messages."""
        out = []
        for name in self.lab.peers:
            with contextlib.suppress(OSError):
                out.append(f"--- {name} data:\n{self.data(name).decode(errors='replace')}")
            with contextlib.suppress(OSError):
                out.append(
                    f"--- {name} last-build.json: "
                    f"{(self.state(name) / 'last-build.json').read_text()}"
                )
            if name in self.unbounds and self.unbounds[name].proc is not None:
                p = subprocess.run(
                    [*self.unbounds[name].control, "list_local_data"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                )
                out.append(f"--- {name} unbound local data:\n{p.stdout}{p.stderr}")
            rejected = self.spool(name) / "rejected"
            if rejected.is_dir() and any(rejected.iterdir()):
                out.append(f"--- {name} rejected: {sorted(f.name for f in rejected.iterdir())}")
        if self.bind is not None:
            try:
                held = {z: self.bind.names(z) for z in self.bind.zones}
            except (OSError, dns.exception.DNSException) as e:
                held = {"(AXFR failed)": {str(e): []}}
            out.append(f"--- BIND zones: {json.dumps(held, indent=1)}")
        return "\n".join(out)


def _short(target: str) -> str:
    suffix = f".{DOMAIN}."
    return target[: -len(suffix)] if target.endswith(suffix) else target


def _wait(cond: object, timeout: float, step: float = 0.05) -> None:
    end = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > end:
            raise TimeoutError
        time.sleep(step)


def dynamic_lines(data: bytes) -> list[str]:
    """Record lines of a data file's dynamic section."""
    text = data.decode("utf-8", "surrogateescape")
    _, _, dyn = text.partition("# leasedns: dynamic bindings")
    return [ln for ln in dyn.splitlines()[1:] if ln and not ln.startswith("#")]


def record_fields(data: bytes) -> list[list[str]]:
    """Every record line of a data file split into tinydns fields (':' never escaped here)."""
    text = data.decode("utf-8", "surrogateescape")
    return [ln[1:].split(":") for ln in text.splitlines() if ln and ln[0] in "=+^&.ZC'@-%"]
