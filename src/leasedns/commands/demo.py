"""`make demo`: two peers' example events -> hook -> apply -> tinydns-data -> tinydns -> answers;
and a second output, a hosts file (as dnsmasq reads one), that `leasedns check` asks too."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

DOMAIN = "demo.example"
QUERIES = [
    "alice-laptop",
    "bobs-pc",
    "build-server",
    "roaming",
    "gone-home",
    "evil1",
    "www",
    "printer",
]


def _events() -> list[tuple[str, int, list[bytes]]]:
    text = resources.files("leasedns").joinpath("templates/demo-events.tsv").read_text()
    out = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            peer, ago, *args = line.split("\t")
            args = (args + [""] * 6)[:6]
            raw = [a.replace("\\n", "\n").encode() for a in args]
            out.append((peer, int(ago), raw))
    return out


def _config(base: Path, peer: str, tool: str) -> Path:
    (base / peer / "root").mkdir(parents=True)
    path = base / peer / "leasedns.yaml"
    path.write_text(
        f"peer: {peer}\nstate_dir: {base / peer / 'state'}\n"
        f"journal_dir: {base / 'shared-journal'}   # shared storage for both peers\n"
        f"domain: {DOMAIN}\nsubnets: [192.0.2.0/24]\n"
        f"names:\n  protected: [www]\n"
        f"tinydns:\n  root: {base / peer / 'root'}\n  data_program: {tool}\n"
        f"  static: [{base / 'static.data'}]\n"
        f"dhcpd:\n  conf: {base / 'dhcpd.conf'}\n"
        f"outputs:\n  - type: hosts\n    path: {base / peer / 'hosts'}\n"
    )
    return path


def _free_ip() -> str:
    for n in range(2, 250):
        ip = f"127.53.{os.getpid() % 200 + 1}.{n}"
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((ip, 53))
            return ip
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free 127.53.x.y address")


def main() -> int:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    tool = shutil.which("tinydns-data", path=path)
    tinydns = shutil.which("tinydns", path=path)
    if not tool:
        print("demo: tinydns-data is missing; run `make demo` as root or `apt install tinydns`")
        return 1
    hook = Path(sys.executable).with_name("dhcpd-event")
    leasedns = Path(sys.executable).with_name("leasedns")
    base = Path(tempfile.mkdtemp(prefix="leasedns-demo-"))
    ip = _free_ip()
    (base / "static.data").write_text(
        f".{DOMAIN}:{ip}:ns.{DOMAIN}:300\n.2.0.192.in-addr.arpa::ns.{DOMAIN}:300\n"
    )
    (base / "dhcpd.conf").write_text(
        "host printer { hardware ethernet 02:00:00:00:00:50; fixed-address 192.0.2.50; }\n"
    )
    cfgs = {p: _config(base, p, tool) for p in ("peer-a", "peer-b")}
    print(f"demo: state in {base}")

    now = time.time()
    for peer, ago, args in _events():
        spool = base / peer / "state" / "spool"
        spool.mkdir(parents=True, exist_ok=True)
        env = {"PATH": path, "LEASEDNS_SPOOL": str(spool), "LEASEDNS_NO_APPLY": "1"}
        before = set(spool.iterdir())
        subprocess.run([str(hook), *args], env=env, check=True)
        (new,) = set(spool.iterdir()) - before
        os.utime(new, (now - ago, now - ago))  # replay the example's timeline
    for _ in range(2):  # each peer builds twice: the second build sees the other's journal too
        for cfg in cfgs.values():
            subprocess.run([str(leasedns), "-c", str(cfg), "apply"], check=True)
    a_data = (base / "peer-a" / "root" / "data").read_bytes()
    b_data = (base / "peer-b" / "root" / "data").read_bytes()
    print(
        f"demo: peer-a and peer-b data files are {'identical' if a_data == b_data else 'DIFFERENT'}"
    )
    print("\n--- leasedns show (peer-a) ---")
    subprocess.run([str(leasedns), "-c", str(cfgs["peer-a"]), "show"], check=True)
    hosts = (base / "peer-a" / "hosts").read_text().splitlines()
    entries = [line for line in hosts if line and not line.startswith("#")]
    print(f"\n--- the hosts output (peer-a), {len(entries)} names, the first ones ---")
    print("\n".join(entries[:5]))
    print("\n--- leasedns check (peer-a): every output asked what it holds ---")
    sys.stdout.flush()
    subprocess.run([str(leasedns), "-c", str(cfgs["peer-a"]), "check"], check=False)
    sys.stdout.flush()

    root = base / "peer-a" / "root"
    server = None
    if tinydns and os.geteuid() == 0:
        server = subprocess.Popen(
            [tinydns],
            env={"PATH": "/usr/sbin:/usr/bin", "ROOT": str(root), "IP": ip, "UID": "0", "GID": "0"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.2)
    try:
        print(
            f"\n--- answers from {'tinydns on ' + ip if server else 'tinydns-get (not root)'} ---"
        )
        for label in QUERIES:
            print(f"{label + '.' + DOMAIN:28} {_ask(server, ip, root, label + '.' + DOMAIN, path)}")
        print(f"{'PTR 192.0.2.150':28} {_ask(server, ip, root, '192.0.2.150', path, ptr=True)}")
    finally:
        if server:
            server.terminate()
            server.wait(5)
    shutil.rmtree(base)
    return 0


def _ask(server: object, ip: str, root: Path, name: str, path: str, ptr: bool = False) -> str:
    if server:
        import dns.resolver

        r = dns.resolver.Resolver(configure=False)
        r.nameservers = [ip]
        r.lifetime = 3
        try:
            ans = r.resolve_address(name) if ptr else r.resolve(name, "A")
            ttl = ans.rrset.ttl if ans.rrset is not None else 0
            return ", ".join(x.to_text() for x in ans) + f"  (ttl {ttl})"
        except dns.resolver.NXDOMAIN:
            return "NXDOMAIN"
        except dns.exception.DNSException as e:
            return f"error: {e}"
    q = ".".join(reversed(name.split("."))) + ".in-addr.arpa" if ptr else name
    out = subprocess.run(
        [shutil.which("tinydns-get", path=path) or "tinydns-get", "ptr" if ptr else "a", q],
        cwd=root,
        capture_output=True,
        text=True,
    ).stdout
    answers = [ln.split(" ", 1)[1] for ln in out.splitlines() if ln.startswith("answer:")]
    return "; ".join(answers) or "NXDOMAIN"


if __name__ == "__main__":
    sys.exit(main())
