"""Real BIND 9 (named), Knot DNS (knotd) and PowerDNS Authoritative (pdns_server) primaries
for the rfc2136 output's tests, and a real Unbound for the unbound output's.

Each server is authoritative for a forward zone and its reverse zones, listens only on
127.0.0.1 at a free port, keeps everything (config, zone files, journals, pid file) under the
test's tmp dir, accepts RFC 2136 updates signed with a TSIG key made by the real tsig-keygen,
and serves AXFR to that key, as conf/named-leasedns.conf and conf/knot-leasedns.conf ask a
sysadmin to set it up (PowerDNS: the same through its zones' metadata). Only the process
started here is ever signalled, by its PID.

Tests import these as `from dnsservers import ...` (tests/ is on sys.path, see helpers.py).
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.tsig

from helpers import tool


@dataclass(frozen=True)
class Key:
    """A TSIG key: what leasedns signs its updates and transfers with."""

    name: str  # "leasedns"
    algorithm: str  # "hmac-sha256"
    secret: str  # base64
    path: Path  # the key file exactly as tsig-keygen writes it

    def tsig(self) -> dns.tsig.Key:
        """The key as dnspython signs with it."""
        return dns.tsig.Key(self.name, self.secret, self.algorithm)


_KEY_FILE = re.compile(
    r'key\s+"(?P<name>[^"]+)"\s*\{\s*algorithm\s+(?P<algorithm>[\w-]+)\s*;'
    r'\s*secret\s+"(?P<secret>[A-Za-z0-9+/=]+)"\s*;\s*\}\s*;'
)


def parse_key_file(path: Path) -> Key:
    """The key in a file as tsig-keygen writes it (`key "NAME" { algorithm A; secret "S"; };`)."""
    text = path.read_text()
    m = _KEY_FILE.search(text)
    if m is None:
        raise ValueError(f"{path}: not a tsig-keygen key file: {text!r}")
    return Key(m["name"], m["algorithm"], m["secret"], path)


def tsig_key(tmp: Path, name: str = "leasedns", algorithm: str = "hmac-sha256") -> Key:
    """A fresh key from the real tsig-keygen, written to tmp/<name>.key."""
    p = subprocess.run(
        [tool("tsig-keygen"), "-a", algorithm, name], capture_output=True, text=True, timeout=30
    )
    if p.returncode != 0:
        raise RuntimeError(f"tsig-keygen -a {algorithm} {name} failed: {p.stderr.strip()}")
    path = tmp / f"{name}.key"
    path.write_text(p.stdout)
    return parse_key_file(path)


# What is in the forward zone before leasedns touches it (ownership tests). The zone also holds
# `ns 300 IN A 127.0.0.1`, the address of its name server, which names() lists as well.
DEFAULT_RECORDS = (
    "www 300 IN A 192.0.2.80",
    "printer 300 IN A 192.0.2.5",
    'mail 300 IN TXT "v=spf1 -all"',
)


def free_port() -> int:
    """A port of 127.0.0.1 free for both TCP and UDP right now (the server binds it next)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no port of 127.0.0.1 free for both TCP and UDP")


def zone_file(zone: str, records: Sequence[str]) -> str:
    """A zone file: SOA and NS naming ns.<forward zone> (the caller adds its A), then records."""
    return (
        f"$ORIGIN {zone}.\n$TTL 300\n"
        f"@ IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 300\n"
        + "".join(f"{r}\n" for r in records)
    )


class _Server:
    """What Bind, Knot and PowerDNS share: the zones, the process, the queries the tests assert
    with. Its state is in tmp/named, tmp/knotd or tmp/pdns_server: one server of a kind per tmp
    dir."""

    program = ""  # set by the subclass: the name tool() finds
    start_timeout = 10.0  # seconds start() waits for every zone's SOA
    denied = ""  # the rcode (text) the server answers an update signed with a key not allowed

    def __init__(
        self,
        tmp: Path,
        key: Key,
        zone: str = "lab.example",
        reverse_zones: Sequence[str] = ("2.0.192.in-addr.arpa",),
        records: Sequence[str] = DEFAULT_RECORDS,
        axfr: bool = True,
        update: bool = True,
    ) -> None:
        self.binary = tool(self.program)
        self.dir = tmp / self.program
        self.key = key
        self.zone = zone
        self.reverse_zones = tuple(reverse_zones)
        self.records = tuple(records)
        self.axfr = axfr
        self.update = update
        self.address = "127.0.0.1"
        self.port = free_port()
        self.log = self.dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._written = False

    @property
    def zones(self) -> tuple[str, ...]:
        return (self.zone, *self.reverse_zones)

    def _zone_path(self, zone: str) -> Path:
        """Where the zone's file is (a subclass may name it as a conf example does)."""
        return self.dir / "zones" / f"{zone}.zone"

    def _write_zones(self) -> None:
        ns = f"ns.{self.zone}."
        for z in self.zones:
            extra = ["ns 300 IN A 127.0.0.1", *self.records] if z == self.zone else []
            self._zone_path(z).write_text(zone_file(z, [f"@ IN NS {ns}", *extra]))

    def _write_config(self) -> None:
        raise NotImplementedError

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        """Start; return when it answers the SOA of every zone, else raise with its log."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self.program} already runs as PID {self.proc.pid}")
        if not self._written:  # a restart keeps the zone files and journals as they are
            (self.dir / "zones").mkdir(parents=True, exist_ok=True)
            self._write_zones()
            self._write_config()
            self._written = True
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self._argv(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + self.start_timeout
        waiting = list(self.zones)
        while waiting:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.program} exited with {self.proc.returncode}; {self.log}:\n"
                    + self.log_tail()
                )
            try:
                if self.answer(waiting[0], "SOA")[0] == "NOERROR":
                    waiting.pop(0)
                    continue
            except (OSError, dns.exception.DNSException):
                pass
            if time.monotonic() > deadline:
                tail = self.log_tail()  # before stop() adds its shutdown lines
                self.stop()
                raise RuntimeError(
                    f"{self.program} on port {self.port} did not serve {waiting[0]} "
                    f"within {self.start_timeout:g} s; {self.log}:\n{tail}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM to the process started here, by its PID; SIGKILL if it lingers 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        """Stop and start again on the same port, the zones' data (updates too) kept."""
        self.stop()
        self.start()

    def lose_updates(self) -> None:
        """What a server that loses its dynamic data looks like: the zones as their files were
        first written (serial 1), every update gone. Stop, forget what the server keeps of the
        updates, write the original zone files again, start (PowerDNS: load them again)."""
        self.stop()
        self._forget_updates()
        self._write_zones()
        self.start()

    def _forget_updates(self) -> None:
        raise NotImplementedError

    def serial(self, zone: str | None = None) -> int:
        """The zone's SOA serial, as the server answers it."""
        r = self._query(zone or self.zone, "SOA")
        return int(r.answer[0][0].serial)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError as e:
            return f"(no log: {e})"

    def _query(self, name: str, rdtype: str) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype)
        return dns.query.tcp(q, self.address, timeout=3, port=self.port)

    def answer(self, name: str, rdtype: str) -> tuple[str, list[str]]:
        """One query over TCP, no TSIG: (rcode text, sorted rdata texts of the answer RRset)."""
        r = self._query(name, rdtype)
        try:
            rrset = r.find_rrset(
                r.answer,
                dns.name.from_text(name),
                dns.rdataclass.IN,
                dns.rdatatype.from_text(rdtype),
            )
        except KeyError:
            return dns.rcode.to_text(r.rcode()), []
        return dns.rcode.to_text(r.rcode()), sorted(rd.to_text() for rd in rrset)

    def ttl(self, name: str, rdtype: str) -> int | None:
        """The TTL of the RRset `name rdtype`, None when there is none."""
        r = self._query(name, rdtype)
        try:
            rrset = r.find_rrset(
                r.answer,
                dns.name.from_text(name),
                dns.rdataclass.IN,
                dns.rdatatype.from_text(rdtype),
            )
        except KeyError:
            return None
        return int(rrset.ttl)

    def names(self, zone: str | None = None) -> dict[str, list[str]]:
        """AXFR signed with the key: absolute name (no trailing dot) -> sorted "TYPE rdata"s,
        SOA and NS left out."""
        out: dict[str, list[str]] = {}
        for msg in dns.query.xfr(
            self.address,
            zone or self.zone,
            port=self.port,
            keyring={dns.name.from_text(self.key.name): self.key.tsig()},
            keyname=self.key.name,
            relativize=False,
            lifetime=10,
        ):
            for rrset in msg.answer:
                if rrset.rdtype in (dns.rdatatype.SOA, dns.rdatatype.NS):
                    continue
                owner = rrset.name.to_text(omit_final_dot=True)
                kind = dns.rdatatype.to_text(rrset.rdtype)
                out.setdefault(owner, []).extend(f"{kind} {rd.to_text()}" for rd in rrset)
        return {n: sorted(v) for n, v in sorted(out.items())}

    def nsupdate(self, script: str) -> None:
        """Send `script` (nsupdate commands, no server/send) with the real nsupdate, signed with
        the key; raise with nsupdate's output when it fails (e.g. "update failed: REFUSED").
        One update goes to one zone: put `send` between the lines of different zones."""
        body = script.strip()
        if body.splitlines()[-1:] != ["send"]:  # a script may `send` between zones itself
            body += "\nsend"
        text = f"server {self.address} {self.port}\n{body}\n"
        p = subprocess.run(
            [tool("nsupdate"), "-t", "10", "-k", str(self.key.path)],
            input=text,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if p.returncode != 0:
            raise RuntimeError(
                f"nsupdate to {self.program} on port {self.port} failed "
                f"({p.returncode}): {p.stderr.strip()} {p.stdout.strip()}\nscript:\n{text}"
            )


class Bind(_Server):
    """named on 127.0.0.1:<port>, primary for the zones; updates allowed to the key
    (update-policy grant KEY zonesub ANY), AXFR to the key when axfr=True."""

    program = "named"
    denied = "REFUSED"  # what named answers an update update-policy does not allow

    def server_conf(self) -> str:
        """The options block: only 127.0.0.1:port, authoritative only, everything in the dir,
        no rndc, no NOTIFY to anyone."""
        d = self.dir
        return (
            "options {\n"
            f'    directory "{d}";\n'
            f'    pid-file "{d / "named.pid"}";\n'
            f'    session-keyfile "{d / "session.key"}";\n'
            f'    managed-keys-directory "{d}";\n'
            f"    listen-on port {self.port} {{ 127.0.0.1; }};\n"
            "    listen-on-v6 { none; };\n"
            "    recursion no;\n"
            "    dnssec-validation no;\n"
            "    notify no;\n"
            "};\n"
            "controls { };\n"
        )

    def zones_conf(self) -> str:
        """The key (included from its file) and one primary zone statement per zone."""
        policy = (
            f"update-policy {{ grant {self.key.name} zonesub ANY; }};"
            if self.update
            else "allow-update { none; };"
        )
        transfer = f"key {self.key.name};" if self.axfr else "none;"
        return f'include "{self.key.path}";\n' + "".join(
            f'zone "{z}" {{\n    type primary;\n    file "{self._zone_path(z)}";\n'
            f"    {policy}\n    allow-transfer {{ {transfer} }};\n}};\n"
            for z in self.zones
        )

    def _write_config(self) -> None:
        (self.dir / "named.conf").write_text(self.server_conf() + self.zones_conf())

    def _forget_updates(self) -> None:
        # named keeps updates in a journal beside each zone file (and writes them into the
        # file now and then, and at shutdown): both go.
        for jnl in (self.dir / "zones").glob("*.jnl"):
            jnl.unlink()

    def _argv(self) -> list[str]:
        # -g: foreground, log to stderr; no -u: we run as root and all files are ours.
        return [self.binary, "-g", "-4", "-c", str(self.dir / "named.conf")]


class Knot(_Server):
    """knotd on 127.0.0.1:<port>, primary for the zones; updates (when update=True) and AXFR
    (when axfr=True) allowed to the key. Updates are written to the zone file at once
    (zonefile-sync: 0) and kept in the journal as changes, so a restart (which loads the zone
    file whole, then the journal's newer changes) serves them."""

    program = "knotd"
    # Knot answers a signed request its acl does not allow with NOTAUTH (BADKEY), not REFUSED.
    denied = "NOTAUTH"

    def server_conf(self) -> str:
        """server, log and database: only 127.0.0.1@port, everything in the dir, log to stderr,
        and how zones keep their updates."""
        d = self.dir
        for sub in ("run", "storage"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        return (
            "server:\n"
            f'    rundir: "{d / "run"}"\n'
            f"    listen: 127.0.0.1@{self.port}\n"
            "log:\n"
            "  - target: stderr\n    any: info\n"
            "database:\n"
            f'    storage: "{d / "storage"}"\n'
            "template:\n"
            "  - id: default\n"
            f'    storage: "{d / "zones"}"\n'
            '    file: "%s.zone"\n'
            "    zonefile-sync: 0\n"
            "    zonefile-load: whole\n"
            "    journal-content: changes\n"
        )

    def zones_conf(self) -> str:
        """The key, the acl that allows it what update/axfr ask, one zone entry per zone."""
        actions = [a for a, on in (("update", self.update), ("transfer", self.axfr)) if on]
        acl = (
            "acl:\n"
            f"  - id: {self.key.name}\n    key: {self.key.name}\n"
            f"    action: [{', '.join(actions)}]\n"
            if actions
            else ""
        )
        zone_acl = f"    acl: {self.key.name}\n" if actions else ""
        return (
            "key:\n"
            f"  - id: {self.key.name}\n"
            f"    algorithm: {self.key.algorithm}\n"
            f"    secret: {self.key.secret}\n"
            + acl
            + "zone:\n"
            + "".join(f"  - domain: {z}\n{zone_acl}" for z in self.zones)
        )

    def _write_config(self) -> None:
        (self.dir / "knot.conf").write_text(self.server_conf() + self.zones_conf())

    def _forget_updates(self) -> None:
        # knotd writes updates into the zone file (zonefile-sync: 0) and keeps them in its
        # journal in the storage directory: the journal (and timers) go, the file is rewritten.
        storage = self.dir / "storage"
        for item in storage.iterdir():
            if item.is_dir():
                shutil.rmtree(item)
            else:
                item.unlink()

    def _argv(self) -> list[str]:
        # No -d: foreground, logging to stderr (the log file); no `user:`, so it stays root.
        return [self.binary, "-c", str(self.dir / "knot.conf")]


# A line pdnsutil logs with a timestamp ("Dec 01 02:41:03 gsqlite3: connection ..."), not its
# answer.
_PDNS_LOG_LINE = re.compile(r"[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d ")


class PowerDNS(_Server):
    """pdns_server (PowerDNS Authoritative) on 127.0.0.1:<port>, primary for the zones, kept in
    a SQLite database (gsqlite3 backend) under its dir. The zone files are loaded with the
    real pdnsutil, which also imports the key and sets the zones' metadata: updates allowed
    from 127.0.0.0/8 signed with the key (ALLOW-DNSUPDATE-FROM and TSIG-ALLOW-DNSUPDATE, when
    update=True), AXFR to the key (TSIG-ALLOW-AXFR, when axfr=True). Updates are committed to
    the database at once, so a restart serves them."""

    program = "pdns_server"
    # PowerDNS refuses an update its metadata does not allow (and, as RFC 3007 asks, one whose
    # signature does not verify) with REFUSED.
    denied = "REFUSED"
    load_errors: tuple[str, ...] = ()  # the zone files pdnsutil could not load, and why
    SCHEMAS = (
        Path("/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql"),
        Path("/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql"),
    )

    @property
    def database(self) -> Path:
        return self.dir / "pdns.sqlite3"

    def server_conf(self) -> str:
        """pdns.conf: only 127.0.0.1:port, foreground, everything in the dir, no caches (the
        tests read right after each update), no webserver/API, no security poll (a DNS query
        to the Internet), no updates or unsigned AXFR from anyone but what the zones' metadata
        allows. allow-dnsupdate-from stays empty: 127.0.0.0/8 there would let anyone on this
        host update a zone without TSIG-ALLOW-DNSUPDATE (update=False) unsigned; the range is
        each updatable zone's ALLOW-DNSUPDATE-FROM instead."""
        d = self.dir
        return (
            "launch=gsqlite3\n"
            f"gsqlite3-database={self.database}\n"
            "gsqlite3-pragma-synchronous=0\n"
            "local-address=127.0.0.1\n"
            f"local-port={self.port}\n"
            f"socket-dir={d}\n"
            "guardian=no\n"
            "daemon=no\n"
            "disable-syslog=yes\n"
            "write-pid=no\n"
            "webserver=no\n"
            "api=no\n"
            "security-poll-suffix=\n"
            "dnsupdate=yes\n"
            "allow-dnsupdate-from=\n"
            "allow-axfr-ips=\n"
            "disable-axfr=no\n"
            "cache-ttl=0\n"
            "negquery-cache-ttl=0\n"
            "query-cache-ttl=0\n"
            "loglevel=6\n"
        )

    def _pdnsutil(self, *args: str) -> tuple[bool, str]:
        """Run `pdnsutil --config-dir=DIR ARGS`, its output appended to the log: (succeeded,
        its output)."""
        p = subprocess.run(
            [tool("pdnsutil"), f"--config-dir={self.dir}", *args],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=30,
        )
        out = p.stdout + p.stderr
        with self.log.open("a") as log:
            log.write(f"+ pdnsutil {' '.join(args)}\n{out}")
        return p.returncode == 0, out

    def _must(self, *args: str) -> None:
        ok, out = self._pdnsutil(*args)
        if not ok:
            raise RuntimeError(f"pdnsutil {' '.join(args)} failed: {out.strip()}")

    def _write_config(self) -> None:
        """pdns.conf, the database from the package's schema, the zones, key and metadata.
        A zone file pdnsutil cannot load is left out (start() then says it is not served, and
        why); any other pdnsutil failure raises at once."""
        (self.dir / "pdns.conf").write_text(self.server_conf())
        schema = next((s for s in self.SCHEMAS if s.exists()), None)
        if schema is None:
            raise RuntimeError(
                f"no gsqlite3 schema at {' or '.join(map(str, self.SCHEMAS))}: "
                "install pdns-backend-sqlite3"
            )
        db = sqlite3.connect(self.database)
        try:
            db.executescript(schema.read_text())
        finally:
            db.close()
        errors = []
        for z in self.zones:
            ok, out = self._pdnsutil("load-zone", z, str(self._zone_path(z)))
            if not ok:
                why = [line for line in out.splitlines() if not _PDNS_LOG_LINE.match(line)]
                errors.append(f"pdnsutil load-zone {z} {self._zone_path(z)}: {' '.join(why)}")
        self.load_errors = tuple(errors)
        k = self.key
        self._must("import-tsig-key", k.name, k.algorithm, k.secret)
        for z in self.zones:
            meta = []
            if self.update:
                meta += [("ALLOW-DNSUPDATE-FROM", "127.0.0.0/8"), ("TSIG-ALLOW-DNSUPDATE", k.name)]
            if self.axfr:
                meta.append(("TSIG-ALLOW-AXFR", k.name))
            for kind, value in meta:
                self._must("set-meta", z, kind, value)

    def start(self) -> None:
        """As for every server; when it does not serve a zone pdnsutil could not load, the
        error also says which file and why (pdns_server's own log does not)."""
        try:
            super().start()
        except RuntimeError as e:
            if not self.load_errors:
                raise
            raise RuntimeError(f"{e}\n" + "\n".join(self.load_errors)) from e

    def lose_updates(self) -> None:
        """PowerDNS keeps updates in its database only: its loss is the zones loaded again
        from their files (as from a backup), while it runs."""
        self._write_zones()
        for z in self.zones:
            self._must("load-zone", z, str(self._zone_path(z)))

    def _argv(self) -> list[str]:
        # daemon=no and guardian=no in pdns.conf: one process in the foreground, logging to
        # stderr (the log file); no setuid, so it stays root and owns its files.
        return [self.binary, f"--config-dir={self.dir}"]


# What unbound.conf itself defines in Unbound's tests (a name leasedns must never touch).
UNBOUND_CONF_DATA = (
    '"www.lab.example. 300 IN A 192.0.2.80"',
    '"192.0.2.80 www.lab.example."',
)


class Unbound:
    """Unbound on 127.0.0.1:<free port>, no upstream: the zones are local (static), so a name
    it holds no data for is NXDOMAIN; `local_data` (A lines) and `local_data_ptr` come from its
    own unbound.conf. Remote control on a unix socket in its dir (`control` is the
    unbound-control command line leasedns is configured with). Stopped by its PID."""

    def __init__(
        self,
        tmp: Path,
        zones: Sequence[str] = ("lab.example", "2.0.192.in-addr.arpa"),
        local_data: Sequence[str] = (UNBOUND_CONF_DATA[0],),
        local_data_ptr: Sequence[str] = (UNBOUND_CONF_DATA[1],),
    ) -> None:
        self.binary, self.ctl = tool("unbound"), tool("unbound-control")
        self.dir = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = tmp / "unbound.conf"
        self.log = tmp / "unbound.log"
        self.socket = tmp / "unbound.ctl"
        self.conf.write_text(
            "server:\n"
            f"  interface: 127.0.0.1\n  port: {self.port}\n  do-ip6: no\n"
            '  username: ""\n  chroot: ""\n'
            f'  directory: "{tmp}"\n  pidfile: "{tmp}/unbound.pid"\n'
            f'  logfile: "{self.log}"\n  use-syslog: no\n  verbosity: 1\n'
            + "".join(f'  local-zone: "{z}." static\n' for z in zones)
            + "".join(f"  local-data: {d}\n" for d in local_data)
            + "".join(f"  local-data-ptr: {d}\n" for d in local_data_ptr)
            + "remote-control:\n  control-enable: yes\n"
            f'  control-interface: "{self.socket}"\n  control-use-cert: no\n'
        )
        self.control = (self.ctl, "-c", str(self.conf))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10) -> None:
        """Start; return once `unbound-control status` answers, else raise with its log."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"unbound already runs as PID {self.proc.pid}")
        self.proc = subprocess.Popen(
            [self.binary, "-d", "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"unbound exited ({self.proc.returncode}): {err}")
            ok = subprocess.run([*self.control, "status"], capture_output=True, timeout=10)
            if ok.returncode == 0:
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"unbound did not answer unbound-control status within {timeout:g} s")

    def stop(self) -> None:
        """SIGTERM to the process started here, by its PID; SIGKILL if it lingers 5 s."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _resolver(self) -> dns.resolver.Resolver:
        r = dns.resolver.Resolver(configure=False)
        r.nameservers, r.port, r.lifetime, r.cache = ["127.0.0.1"], self.port, 3, None
        return r

    def answer(self, qname: str, qtype: str = "A") -> str:
        """The answer's first record, or NXDOMAIN / NODATA."""
        try:
            return str(self._resolver().resolve(qname, qtype)[0].to_text())
        except dns.resolver.NXDOMAIN:
            return "NXDOMAIN"
        except dns.resolver.NoAnswer:
            return "NODATA"

    def answers(self, qname: str, qtype: str = "A") -> set[str] | None:
        """Every record of the answer (a set), None for NXDOMAIN, empty for NODATA."""
        try:
            return {rd.to_text() for rd in self._resolver().resolve(qname, qtype)}
        except dns.resolver.NXDOMAIN:
            return None
        except dns.resolver.NoAnswer:
            return set()

    def ttl(self, qname: str) -> int:
        rrset = self._resolver().resolve(qname, "A").rrset
        assert rrset is not None
        return int(rrset.ttl)


__all__ = [
    "DEFAULT_RECORDS",
    "UNBOUND_CONF_DATA",
    "Bind",
    "Key",
    "Knot",
    "PowerDNS",
    "Unbound",
    "free_port",
    "parse_key_file",
    "tsig_key",
    "zone_file",
]
