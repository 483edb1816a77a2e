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
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import dns.exception
import dns.rdatatype
import dns.resolver
import dns.reversename

from .netlab import Lab, LabError, Peer

BIN = Path(sys.executable).parent
LEASEDNS = BIN / "leasedns"
HOOK_BIN = BIN / "dhcpd-event"
DOMAIN = "lab.example"
SUBNET = "192.0.2.0/24"
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


class Site:
    """leasedns configured on both peers of a Lab; DNS queries against both tinydns."""

    def __init__(self, lab: Lab, mode: str = "rsync", *, coalesce_secs: float = 0.1) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.lab, self.mode, self.coalesce_secs = lab, mode, coalesce_secs
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
        notify = [str(LEASEDNS), "-c", str(self.remote(other) / "leasedns.yaml"), "apply"]
        lines.append(f"      notify: {q(notify)}")
        return "\n".join(lines) + "\n"

    def peer_env(self, peer: Peer) -> dict[str, str]:
        """dhcpd's environment (the hook gets nothing else)."""
        return {
            "LEASEDNS_SPOOL": str(self.spool(peer.name)),
            "LEASEDNS_CONFIG": str(self.config(peer.name)),
            "PATH": HOOK_PATH,
        }

    # ------------------------------------------------------------ commands

    def leasedns(
        self, name: str, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run `leasedns -c <peer's config> ARGS` as the admin would."""
        p = subprocess.run(
            [str(LEASEDNS), "-c", str(self.config(name)), *args],
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
        peers = list(peers or self.lab.peers)
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
            got = {p: self.answers(p, names, ips) for p in peers}
            if all(g == want for g in got.values()):
                return
            if time.monotonic() > end:
                break
            time.sleep(0.1)
        diff = {p: {k: v for k, v in g.items() if v != want[k]} for p, g in got.items()}
        wanted = {k: want[k] for d in diff.values() for k in d}
        raise AssertionError(
            f"DNS after {timeout} s differs from expected {wanted}: {diff}\n" + self.describe()
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
            rejected = self.spool(name) / "rejected"
            if rejected.is_dir() and any(rejected.iterdir()):
                out.append(f"--- {name} rejected: {sorted(f.name for f in rejected.iterdir())}")
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
