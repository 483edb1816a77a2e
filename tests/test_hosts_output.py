"""The hosts output: the file it writes, what it says it serves, its reload command; and a real
dnsmasq answering from the file after `leasedns apply`."""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import hook, tool, write_config
from leasedns import config
from leasedns.commands import apply
from leasedns.errors import PublishError
from leasedns.model import Changes, Desired, Record
from leasedns.outputs import configured
from leasedns.outputs.hosts import HEADER, Hosts, memo_name, render, served_records
from leasedns.sources.statics import load as load_statics

STATIC = [Record("printer.lab.example", "192.0.2.5", None, True, True)]
DYNAMIC = [
    Record("pc2.lab.example", "192.0.2.101", 2_000_000_000, True, False),
    Record("pc1.lab.example", "192.0.2.100", 2_000_000_000, True, False),
]


def desired(dynamic: list[Record] = DYNAMIC) -> Desired:
    return Desired(STATIC, lambda: list(dynamic))


def touch_cmd(marker: Path) -> tuple[str, ...]:
    """A reload command that counts its runs in `marker`."""
    code = "import sys; open(sys.argv[1], 'a').write('x')"
    return (sys.executable, "-c", code, str(marker))


def test_the_file_lists_fixed_hosts_then_bindings_by_name_with_a_header(tmp_path: Path) -> None:
    out = Hosts(tmp_path / "hosts", (), tmp_path)
    assert out.serving().token == ""
    done = out.publish(desired(), Changes("", "t1"))
    assert (done.changed, done.compiled) == (True, False)
    text = (tmp_path / "hosts").read_text()
    assert text.startswith(HEADER)
    lines = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert lines == [
        "192.0.2.5 printer.lab.example",
        "192.0.2.100 pc1.lab.example",
        "192.0.2.101 pc2.lab.example",
    ]


def test_it_serves_the_outcome_it_wrote_and_reads_its_bindings_back(tmp_path: Path) -> None:
    out = Hosts(tmp_path / "hosts", (), tmp_path)
    out.serving()
    out.publish(desired(), Changes("", "t1"))
    again = Hosts(tmp_path / "hosts", (), tmp_path).serving()
    assert again.token == "t1"
    assert sorted(again.records(), key=repr) == sorted(
        (Record(r.name, r.ip, None, False, False) for r in DYNAMIC), key=repr
    )
    assert (tmp_path / memo_name(tmp_path / "hosts")).is_file()


def test_a_hand_edited_file_serves_no_known_outcome_and_is_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    out = Hosts(path, (), tmp_path)
    out.serving()
    out.publish(desired(), Changes("", "t1"))
    path.write_text(path.read_text() + "192.0.2.9 intruder.lab.example\n")
    out = Hosts(path, (), tmp_path)
    serving = out.serving()
    assert serving.token == ""
    assert "intruder.lab.example" in {r.name for r in serving.records()}
    assert out.publish(desired(), Changes("", "t2")).changed
    assert "intruder" not in path.read_text()


def test_unchanged_bytes_are_not_written_and_the_server_not_reloaded(tmp_path: Path) -> None:
    path, marker = tmp_path / "hosts", tmp_path / "reloads"
    out = Hosts(path, touch_cmd(marker), tmp_path)
    out.serving()
    first = out.publish(desired(), Changes("", "t1"))
    assert (first.changed, first.compiled) == (True, True)
    mtime = path.stat().st_mtime_ns
    out = Hosts(path, touch_cmd(marker), tmp_path)
    out.serving()
    second = out.publish(desired(), Changes("t1", "t2"))
    assert (second.changed, second.compiled) == (False, False)
    assert path.stat().st_mtime_ns == mtime and marker.read_text() == "x"
    assert Hosts(path, (), tmp_path).serving().token == "t2"
    # A binding gone: written again, reloaded again.
    out.serving()
    third = out.publish(desired(DYNAMIC[:1]), Changes("t2", "t3"))
    assert (third.changed, third.compiled) == (True, True)
    assert "pc1" not in path.read_text() and marker.read_text() == "xx"


@pytest.mark.parametrize(
    ("reload", "says"),
    [
        (("false",), "reload command `false` failed (exit 1)"),
        (("/nonexistent/reload-it",), "reload command `/nonexistent/reload-it`: "),
        (("sleep", "5"), "reload command `sleep 5` did not finish within 0.3 s"),
    ],
)
def test_a_failing_reload_names_the_output_and_command_and_keeps_the_file(
    tmp_path: Path, reload: tuple[str, ...], says: str
) -> None:
    path = tmp_path / "hosts"
    out = Hosts(path, reload, tmp_path, timeout=0.3)
    out.serving()
    with pytest.raises(PublishError) as info:
        out.publish(desired(), Changes("", "t1"))
    assert str(info.value).startswith(f"hosts {path}: {says}")
    assert "is written; the next apply runs the reload again" in str(info.value)
    assert "pc1.lab.example" in path.read_text()
    # The next publish of the same outcome tries the reload again, with a working command.
    marker = tmp_path / "reloads"
    out = Hosts(path, touch_cmd(marker), tmp_path)
    assert out.serving().token == "t1"
    done = out.publish(desired(), Changes("t1", "t1"))
    assert (done.changed, done.compiled) == (False, True) and marker.read_text() == "x"


def test_an_unwritable_file_is_a_publish_error_naming_the_output(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "hosts"
    out = Hosts(path, (), tmp_path)
    out.serving()
    with pytest.raises(PublishError, match=rf"^hosts {path}: cannot write: "):
        out.publish(desired(), Changes("", "t1"))


def test_served_records_ignores_the_fixed_hosts_and_comments() -> None:
    data = render(STATIC, DYNAMIC[:1]) + b"# a comment\n\n192.0.2.7 a.lab.example b.lab.example\n"
    assert [r.name for r in served_records(data)] == [
        "pc2.lab.example",
        "a.lab.example",
        "b.lab.example",
    ]
    assert served_records(b"192.0.2.1 x.lab.example\n") == []


def test_each_hosts_file_keeps_its_own_note(tmp_path: Path) -> None:
    assert memo_name(tmp_path / "a") != memo_name(tmp_path / "b")
    text = (
        f"peer: a\ndomain: lab.example\nstate_dir: {tmp_path}\noutputs:\n"
        f"  - type: hosts\n    path: {tmp_path / 'a'}\n"
        f"  - type: hosts\n    path: {tmp_path / 'b'}\n    reload: [true]\n"
    )
    cfg = config.parse(text, "x.yaml")
    outs = configured(cfg, load_statics(cfg))
    assert [o.name for o in outs] == [f"hosts {tmp_path / 'a'}", f"hosts {tmp_path / 'b'}"]


# --- a real dnsmasq answering from the file ---------------------------------------------------


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dnsmasq:
    """dnsmasq serving only `hosts` for lab.example (DHCP off, no /etc/hosts, no upstream)
    on 127.0.0.1."""

    def __init__(self, hosts: Path, tmp: Path) -> None:
        self.port = free_udp_port()
        self.pid_file = tmp / "dnsmasq.pid"
        self.log = tmp / "dnsmasq.log"
        self.proc = subprocess.Popen(
            [
                tool("dnsmasq"),
                "--conf-file=/dev/null",
                "--no-hosts",
                f"--addn-hosts={hosts}",
                f"--port={self.port}",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--no-resolv",
                "--local=/lab.example/",  # NXDOMAIN for names it does not hold
                "--keep-in-foreground",
                f"--pid-file={self.pid_file}",
                f"--user={pwd.getpwuid(os.getuid()).pw_name}",
                f"--log-facility={self.log}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def resolver(self):  # type: ignore[no-untyped-def]
        import dns.resolver

        r = dns.resolver.Resolver(configure=False)
        r.nameservers = ["127.0.0.1"]
        r.port = self.port
        r.lifetime = 2
        return r

    def answer(self, qname: str, qtype: str, want: str, wait: float = 5.0) -> str:
        """The first answer to (qname, qtype), once it is `want` (dnsmasq reloads on its own
        time after SIGHUP), else what it last answered."""
        import dns.exception
        import dns.resolver

        got, until = "", time.monotonic() + wait
        while time.monotonic() < until:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"dnsmasq exited ({self.proc.returncode}): {err}")
            try:
                got = self.resolver().resolve(qname, qtype)[0].to_text()
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                got = "NXDOMAIN"
            except dns.exception.DNSException as e:
                got = f"no answer ({e.__class__.__name__})"
            if got == want:
                return got
            time.sleep(0.05)
        return got

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.mark.integration
def test_dnsmasq_answers_names_from_the_hosts_file_after_apply(tmp_path: Path) -> None:
    hosts = tmp_path / "leasedns.hosts"
    hosts.write_text("")
    server = Dnsmasq(hosts, tmp_path)
    try:
        assert server.answer("pc1.lab.example", "A", "NXDOMAIN") == "NXDOMAIN"
        assert server.pid_file.read_text().strip() == str(server.proc.pid)
        path = write_config(
            tmp_path,
            outputs=[
                {
                    "type": "hosts",
                    "path": str(hosts),
                    "reload": ["kill", "-HUP", str(server.proc.pid)],
                }
            ],
        )
        text = path.read_text()
        assert [type(o).__name__ for o in config.parse(text).outputs] == [
            "TinydnsOutput",
            "HostsOutput",
        ]
        cfg = config.parse(_without_tinydns(text), str(path))  # the hosts output alone
        assert [type(o).__name__ for o in cfg.outputs] == ["HostsOutput"]
        apply.ensure_dirs(cfg)
        hook(cfg, "commit", "192.0.2.100", "2:0:0:0:0:1", "pc1", "", "600")
        hook(cfg, "commit", "192.0.2.101", "2:0:0:0:0:2", "pc2", "", "600")
        report = apply.run(cfg)
        assert (report.ok, report.changed, report.compiled) == (True, True, True), report.error
        assert server.answer("pc1.lab.example", "A", "192.0.2.100") == "192.0.2.100"
        assert server.answer("pc2.lab.example", "A", "192.0.2.101") == "192.0.2.101"
        want = "pc2.lab.example."
        assert server.answer("101.2.0.192.in-addr.arpa", "PTR", want) == want
        # A release takes the name out at the next apply.
        hook(cfg, "release", "192.0.2.100", "2:0:0:0:0:1", "pc1", "", "")
        assert apply.run(cfg).ok
        assert server.answer("pc1.lab.example", "A", "NXDOMAIN") == "NXDOMAIN"
        assert server.answer("pc2.lab.example", "A", "192.0.2.101") == "192.0.2.101"
    finally:
        server.stop()


def _without_tinydns(text: str) -> str:
    """The config text without its `tinydns:` section (yaml.safe_dump writes it unindented
    with its keys indented)."""
    out, skip = [], False
    for line in text.splitlines(True):
        if line.startswith("tinydns:"):
            skip = True
            continue
        if skip and line.startswith(" "):
            continue
        skip = False
        out.append(line)
    return "".join(out)
